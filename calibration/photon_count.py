"""Average photon count of an image: the DFCAN paper's definition (Qiao et al. 2021), in
detected photons, i.e. photo-electrons (e-).

Definition (the one photon-count definition of livesim): subtract the camera offset from the
image (ADU), convert to photo-electrons with the camera's conversion factor (e- per ADU =
1 / gain), low-pass the offset-subtracted image with a Gaussian of sigma 5 px, percentile-
normalise the low-pass (0.1 % -> 0, 99.9 % -> 1), keep the pixels whose normalised low-pass is
above 0.2 (the structure, not the background), and average the unfiltered photo-electrons of
those pixels. The low-pass only chooses the pixels. A camera's conversion factor is what a
photon-transfer calibration measures; quantum efficiency never enters (photons that were not
detected are not counted), so the emulator, the live path and a recorded run agree.
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
    electrons_per_adu: float | np.ndarray,
) -> float | np.ndarray:
    """Average photon count (e-) of a (Y, X) image (float) or of each image of a batch.

    ``offset_adu`` is a scalar or a map broadcastable to the image; ``electrons_per_adu`` the
    camera's conversion factor 1 / gain, a scalar or a per-pixel map.
    """
    image = np.asarray(image_adu)
    if image.ndim < 2 or min(image.shape[-2:]) < 2:
        raise ValueError(f"image_adu must be (..., Y, X) with Y, X >= 2, got shape {image.shape}")
    factor = np.asarray(electrons_per_adu, dtype=np.float32)
    if np.any(~(factor > 0)):
        raise ValueError(f"electrons_per_adu must be > 0, got {electrons_per_adu}")
    counts = image.astype(np.float32) - np.asarray(offset_adu, dtype=np.float32)
    mask = foreground_mask(counts)
    electrons = counts * factor
    summed = np.where(mask, electrons, 0.0).sum(axis=(-2, -1))
    number = np.maximum(mask.sum(axis=(-2, -1)), 1)
    result = summed / number
    if np.ndim(result) == 0:
        return float(result)
    return result.astype(np.float64)
