"""Trust checks: the true SR image explains its raw data to the noise; invented structure,
wrong pattern parameters and energy beyond the SIM support are caught."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.otf import OtfModel
from calibration.sim_parameters import estimate_sim_parameters
from inference.trust import (
    beyond_support_fraction,
    central_trust_record,
    fourier_downsample,
    raw_consistency,
    render_raw_frames,
    resolution_scaled_pearson,
    trust_record,
)
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.training_pairs import make_training_pair

OTF = OtfModel(na=1.35, emission_nm=525.0)


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, np.ndarray, object]:
    # the trust check's forward model is the ideal-pupil one: render with an emulator that
    # matches it (no aberrations, haze, envelope or flicker), so chi2 measures the check itself
    pair = make_training_pair("microtubules", photon_count_e=300.0, size_px=128, seed=3,
                              base=EmulatorConfig().without_realism())
    raw = pair.raw_electrons().astype(np.float64)
    parameters = estimate_sim_parameters(raw, 62.6, otf=OTF, offset_adu=0.0)
    return raw, pair.sr_gt.astype(np.float64), parameters


def test_true_sr_image_explains_raw_frames_to_the_noise(field) -> None:
    raw, truth, parameters = field
    result = raw_consistency(truth, raw, parameters, OTF)
    assert 0.7 < result.chi2 < 1.8
    assert result.shift_raw_px == (0.0, 0.0)
    assert result.chi2_map.shape == (16, 16)


def test_invented_texture_raises_the_residual(field) -> None:
    raw, truth, parameters = field
    y, x = np.mgrid[: truth.shape[0], : truth.shape[1]]
    texture = 0.5 * truth.mean() * (1.0 + np.cos(0.9 * y) * np.cos(0.7 * x))
    clean = raw_consistency(truth, raw, parameters, OTF).chi2
    invented = raw_consistency(truth + texture, raw, parameters, OTF).chi2
    assert invented > 2.0 * clean


def test_wrong_pattern_phases_raise_the_residual(field) -> None:
    raw, truth, parameters = field
    wrong = parameters.model_copy(deep=True)
    for orientation in wrong.orientations:
        orientation.phases_rad = [phase + 1.0 for phase in orientation.phases_rad]
    assert raw_consistency(truth, raw, wrong, OTF).chi2 > 5.0 * raw_consistency(
        truth, raw, parameters, OTF
    ).chi2


def test_global_shift_is_measured_and_removed(field) -> None:
    raw, truth, parameters = field
    shifted = np.roll(truth, (2, -4), axis=(0, 1))  # (1, -2) raw pixels
    result = raw_consistency(shifted, raw, parameters, OTF)
    assert result.shift_raw_px == pytest.approx((-1.0, 2.0), abs=0.1)
    assert result.chi2 < 1.8


def test_rendering_is_linear_and_keeps_the_mean(field) -> None:
    _, truth, parameters = field
    frames = render_raw_frames(truth, parameters, OTF)
    assert frames.shape == (9, 128, 128)
    # the mean of the patterns is 1, the OTF is 1 at DC: the mean photon count is kept
    assert frames.mean() == pytest.approx(truth.mean(), rel=1e-3)
    doubled = render_raw_frames(2.0 * truth, parameters, OTF)
    assert np.allclose(doubled, 2.0 * frames)


def test_resolution_scaled_pearson_separates_faithful_from_wrong(field) -> None:
    raw, truth, _ = field
    wide_field = raw.mean(axis=0)
    faithful = resolution_scaled_pearson(truth, wide_field)
    assert faithful.pearson > 0.97
    assert faithful.error_map.shape == wide_field.shape
    flipped = resolution_scaled_pearson(truth[::-1], wide_field)
    assert flipped.pearson < 0.5


def test_energy_beyond_the_support_is_reported(field) -> None:
    _, truth, parameters = field
    assert beyond_support_fraction(truth, parameters, OTF) < 1e-3
    y, x = np.mgrid[: truth.shape[0], : truth.shape[1]]
    checkerboard = truth.mean() * ((y + x) % 2)  # Nyquist of the SR grid: beyond any support
    assert beyond_support_fraction(truth + checkerboard, parameters, OTF) > 0.05


def test_fourier_downsample_keeps_pixel_origin() -> None:
    fine = np.zeros((32, 32))
    fine[10, 6] = 1.0
    coarse = fourier_downsample(fine)
    assert np.unravel_index(np.argmax(coarse), coarse.shape) == (5, 3)


def test_trust_record_and_shape_errors(field) -> None:
    raw, truth, parameters = field
    record = trust_record(truth, raw, parameters, OTF)
    assert record.raw_chi2 < 1.8 and record.resolution_scaled_pearson > 0.97
    with pytest.raises(ValueError, match="not 2x the raw frame"):
        raw_consistency(truth[:-2], raw, parameters, OTF)
    with pytest.raises(ValueError, match=r"raw must be \(9, Y, X\)"):
        raw_consistency(truth, raw[:8], parameters, OTF)


def test_central_crop_keeps_the_pattern_phases(field) -> None:
    raw, truth, parameters = field
    record, chi2_map = central_trust_record(truth, raw, parameters, OTF, max_size_px=64)
    assert record.raw_chi2 < 1.8
    assert chi2_map.shape == (8, 8)
    wrong, _ = central_trust_record(np.roll(truth, 1, axis=0), raw, parameters, OTF, 64)
    assert wrong.shift_raw_px != (0.0, 0.0) or wrong.raw_chi2 > 2.0
