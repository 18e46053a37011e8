"""Cosine fade of the image borders, so FFTs do not see the wrap-around edge as structure."""

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
