"""Average photon count of an image, as defined in the DFCAN paper (Qiao et al. 2021).

Subtract the camera offset, low-pass (Gaussian, sigma 5 px), percentile-normalise (0.1 / 99.9),
keep the pixels above 0.2 (the structure, not the background), average the offset-subtracted
counts of those pixels and convert ADU to photons. The low-pass only chooses the pixels.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

LOWPASS_SIGMA_PX = 5.0
PERCENTILES = (0.1, 99.9)
FOREGROUND_THRESHOLD = 0.2


def foreground_mask(counts: np.ndarray) -> np.ndarray:
    """Boolean mask (same shape) of the structure pixels of each (..., Y, X) image."""
    if counts.ndim < 2:
        raise ValueError(f"image must be at least 2-D (Y, X), got shape {counts.shape}")
    sigma = (0.0,) * (counts.ndim - 2) + (LOWPASS_SIGMA_PX, LOWPASS_SIGMA_PX)
    smooth = gaussian_filter(counts.astype(np.float32, copy=False), sigma=sigma, mode="reflect")
    flat = smooth.reshape(*smooth.shape[:-2], -1)
    low, high = np.percentile(flat, PERCENTILES, axis=-1)
    span = np.maximum(high - low, np.finfo(np.float32).tiny)
    normalised = (smooth - low[..., None, None]) / span[..., None, None]
    return normalised > FOREGROUND_THRESHOLD


def average_photon_count(
    image_adu: np.ndarray,
    offset_adu: float | np.ndarray,
    photons_per_count: float | np.ndarray,
) -> float | np.ndarray:
    """Average photon count of a (Y, X) image (float) or of each image of a (..., Y, X) batch.

    ``offset_adu`` is a scalar or a map broadcastable to the image; ``photons_per_count`` a
    scalar (or a map, for per-pixel gain) converting offset-subtracted ADU to photons.
    """
    image = np.asarray(image_adu)
    if image.ndim < 2 or min(image.shape[-2:]) < 2:
        raise ValueError(f"image_adu must be (..., Y, X) with Y, X >= 2, got shape {image.shape}")
    factor = np.asarray(photons_per_count, dtype=np.float32)
    if np.any(factor <= 0):
        raise ValueError(f"photons_per_count must be > 0, got {photons_per_count}")
    counts = image.astype(np.float32) - np.asarray(offset_adu, dtype=np.float32)
    mask = foreground_mask(counts)
    photons = counts * factor
    summed = np.where(mask, photons, 0.0).sum(axis=(-2, -1))
    number = np.maximum(mask.sum(axis=(-2, -1)), 1)
    result = summed / number
    if np.ndim(result) == 0:
        return float(result)
    return result.astype(np.float64)
