"""Filament FWHM metric on synthetic filaments of known width."""

from __future__ import annotations

import numpy as np
import pytest

from inference.filament_width import FWHM_PER_SIGMA, filament_fwhm_nm, find_filament_profiles


def _lines(sigma_px: float, size: int = 160, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """Straight Gaussian-profile lines at several angles, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    image = np.zeros((size, size))
    for angle, offset in ((0.3, 40.0), (1.2, 90.0), (2.4, 130.0)):
        normal = np.array([np.cos(angle), np.sin(angle)])
        centre = offset * size / 160.0  # the same physical place at any sampling
        distance = (yy - size / 2) * normal[0] + (xx - size / 2) * normal[1] - (centre - size / 2)
        image += np.exp(-0.5 * (distance / sigma_px) ** 2)
    return image + 0.1 + noise * rng.standard_normal(image.shape)


@pytest.mark.parametrize("sigma_px", [1.5, 3.0])
def test_median_fwhm_recovers_the_true_width(sigma_px: float) -> None:
    pixel_nm = 30.0
    image = _lines(sigma_px)
    profiles = find_filament_profiles(image, pixel_nm, spacing_nm=150.0, border_nm=300.0)
    assert len(profiles) >= 20
    widths = filament_fwhm_nm(image, pixel_nm, profiles, half_length_nm=400.0)
    assert widths.n_valid >= 0.7 * len(profiles)
    assert widths.median_nm == pytest.approx(FWHM_PER_SIGMA * sigma_px * pixel_nm, rel=0.05)


def test_same_profiles_measure_a_finer_grid_in_physical_units() -> None:
    """Profiles found on a coarse image measure the 2x-sampled image of the same lines."""
    coarse = _lines(2.0, size=80, noise=0.0)
    fine = _lines(4.0, size=160, noise=0.0)  # same lines, half the pixel size
    profiles = find_filament_profiles(coarse, 60.0, spacing_nm=200.0, border_nm=300.0)
    wide = filament_fwhm_nm(coarse, 60.0, profiles)
    sharp = filament_fwhm_nm(fine, 30.0, profiles)
    assert wide.median_nm == pytest.approx(sharp.median_nm, rel=0.05)


def test_noise_alone_gives_no_accepted_widths() -> None:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((96, 96))
    profiles = find_filament_profiles(noise, 60.0)
    widths = filament_fwhm_nm(noise, 60.0, profiles)
    assert widths.n_valid <= 0.2 * max(len(profiles), 1)
