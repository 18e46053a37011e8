"""Border handling before FFTs: a cosine fade (taper) or the periodic + smooth decomposition."""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft as sfft


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


def smooth_spectrum(image: np.ndarray) -> np.ndarray:
    """FFT of the smooth part s of Moisan's periodic + smooth decomposition u = p + s.

    p has the same content as u but no jump at the wrap-around border, so its FFT has no
    edge cross; s is the smooth (harmonic inside, zero mean) image that carries the border
    jumps. The border image is non-zero on the four edges only, so its 2-D FFT is built from
    two 1-D FFTs (no full-size FFT here). Linear in ``image``; real or complex; leading axes
    are batch axes (L. Moisan, "Periodic plus smooth image decomposition", J. Math. Imaging
    Vis. 39, 2011).
    """
    u = np.asarray(image)
    ny, nx = u.shape[-2:]
    single = u.dtype in (np.float32, np.complex64)
    wy, wx, inverse = _smooth_weights(ny, nx, single)
    rows = u[..., -1, :] - u[..., 0, :]  # jump across the top/bottom border, per column
    cols = u[..., :, -1] - u[..., :, 0]  # jump across the left/right border, per row
    spectrum = wy[:, None] * sfft.fft(rows, axis=-1)[..., None, :]
    spectrum += sfft.fft(cols, axis=-1)[..., :, None] * wx[None, :]
    spectrum *= inverse  # zero at (0, 0): s has zero mean
    return spectrum


@functools.lru_cache(maxsize=8)
def _smooth_weights(ny: int, nx: int, single: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Border-image FFT factors (1 - e^{2 pi i k / n}) and the inverse discrete Laplacian."""
    complex_type, real_type = (np.complex64, np.float32) if single else (np.complex128, np.float64)
    wy = (1.0 - np.exp(2j * np.pi * np.arange(ny) / ny)).astype(complex_type)
    wx = (1.0 - np.exp(2j * np.pi * np.arange(nx) / nx)).astype(complex_type)
    denominator = (
        2.0 * np.cos(2.0 * np.pi * np.arange(ny) / ny)[:, None]
        + 2.0 * np.cos(2.0 * np.pi * np.arange(nx) / nx)[None, :]
        - 4.0
    )
    denominator[0, 0] = np.inf
    inverse = (1.0 / denominator).astype(real_type)
    for array in (wy, wx, inverse):
        array.flags.writeable = False
    return wy, wx, inverse


def smooth_component(image: np.ndarray) -> np.ndarray:
    """The smooth part s itself (see :func:`smooth_spectrum`), same kind (real/complex)."""
    u = np.asarray(image)
    smooth = sfft.ifft2(smooth_spectrum(u), axes=(-2, -1))
    real_dtype = np.float32 if u.dtype in (np.float32, np.complex64) else np.float64
    if not np.iscomplexobj(u):
        return smooth.real.astype(real_dtype, copy=False)
    return smooth


def periodic_component(image: np.ndarray) -> np.ndarray:
    """``image`` minus its :func:`smooth_component`: the same image without border jumps."""
    u = np.asarray(image)
    return u - smooth_component(u)
