"""Border handling before FFTs: a cosine fade (taper) or the periodic + smooth decomposition."""

from __future__ import annotations

import numpy as np


def edge_taper(shape: tuple[int, int], width_px: int) -> np.ndarray:
    """(Y, X) float64 window: 1 inside, cosine ramp to 0 over ``width_px`` at each border."""
    ny, nx = shape
    return np.outer(_ramp(ny, width_px), _ramp(nx, width_px))


def _ramp(n: int, width_px: int) -> np.ndarray:
    width = max(0, min(int(width_px), n // 2))
    ramp = np.ones(n)
    if width == 0:
        return ramp
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    ramp[:width] = rise
    ramp[n - width :] = rise[::-1]
    return ramp


def smooth_component(image: np.ndarray) -> np.ndarray:
    """Smooth part s of Moisan's periodic + smooth decomposition u = p + s (last two axes).

    p has the same content as u but no jump at the wrap-around border, so its FFT has no
    edge cross; s is the smooth (harmonic inside, zero mean) image that carries the border
    jumps. Linear in ``image``; works on real and complex arrays (L. Moisan, "Periodic plus
    smooth image decomposition", J. Math. Imaging Vis. 39, 2011).
    """
    u = np.asarray(image)
    boundary = np.zeros_like(u, dtype=np.result_type(u.dtype, np.float32))
    rows = u[..., -1, :] - u[..., 0, :]
    cols = u[..., :, -1] - u[..., :, 0]
    boundary[..., 0, :] += rows
    boundary[..., -1, :] -= rows
    boundary[..., :, 0] += cols
    boundary[..., :, -1] -= cols
    ny, nx = u.shape[-2:]
    denominator = (
        2.0 * np.cos(2.0 * np.pi * np.arange(ny) / ny)[:, None]
        + 2.0 * np.cos(2.0 * np.pi * np.arange(nx) / nx)[None, :]
        - 4.0
    )
    denominator[0, 0] = 1.0
    spectrum = np.fft.fft2(boundary) / denominator
    spectrum[..., 0, 0] = 0.0
    smooth = np.fft.ifft2(spectrum)
    if not np.iscomplexobj(u):
        return smooth.real.astype(boundary.dtype, copy=False)
    return smooth.astype(boundary.dtype, copy=False)


def periodic_component(image: np.ndarray) -> np.ndarray:
    """``image`` minus its :func:`smooth_component`: the same image without border jumps."""
    u = np.asarray(image)
    return u - smooth_component(u)
