"""SIM pattern parameter estimation against the emulator's known patterns."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.otf import OtfModel
from calibration.sim_parameters import SimParameters, estimate_sim_parameters
from sim_emulator.illumination import SimPatterns
from sim_emulator.microscope import EmulatorConfig, Microscope


def _emulated_set(structure: str, photons: float, seed: int, size_px: int = 256):
    patterns = SimPatterns(phase_error_rad=0.1, angle_error_rad=0.01, error_seed=seed)
    # the estimator's precision against a forward model that matches its ideal-pupil OTF: the
    # default emulator's aberrations, haze and envelope are switched off (the pattern errors
    # set here stay)
    config = EmulatorConfig(
        size_px=size_px, photon_count_e=photons, seed=seed, structure=structure, patterns=patterns
    ).without_realism()
    microscope = Microscope(config)
    otf = OtfModel(
        na=config.optics.na, emission_nm=config.optics.emission_nm, pixel_integration=True
    )
    return microscope.render_set(0.0), microscope.patterns, config.optics.pixel_size_nm, otf


def _compare(estimate: SimParameters, truth: SimPatterns, pixel_size_nm: float):
    """Relative wave-vector errors, worst phase errors and modulation errors per orientation."""
    true_k = truth.wave_vectors_cycles_per_nm() * pixel_size_nm
    true_phases = truth.phases_rad()
    k_errors, phase_errors, modulation_errors = [], [], []
    for o, k in enumerate(estimate.wave_vectors_cycles_per_px()):
        # p and -p with negated phases describe the same pattern
        sign = 1.0 if np.dot(k, true_k[o]) > 0 else -1.0
        k_errors.append(np.linalg.norm(sign * k - true_k[o]) / np.linalg.norm(true_k[o]))
        delta = np.angle(np.exp(1j * (sign * estimate.phases_rad()[o] - true_phases[o])))
        phase_errors.append(np.abs(delta).max())
        modulation_errors.append(abs(estimate.modulations()[o] - truth.modulations()[o]))
    return np.array(k_errors), np.array(phase_errors), np.array(modulation_errors)


@pytest.mark.parametrize(
    ("structure", "photons", "seed"),
    [("microtubules", 50.0, 0), ("f-actin", 50.0, 1), ("ccps", 1000.0, 2)],
)
def test_recovers_emulator_patterns(structure: str, photons: float, seed: int) -> None:
    raw, truth, pixel_size_nm, otf = _emulated_set(structure, photons, seed)
    estimate = estimate_sim_parameters(raw, pixel_size_nm, otf=otf)
    k_errors, phase_errors, modulation_errors = _compare(estimate, truth, pixel_size_nm)
    assert estimate.n_orientations == 3 and estimate.n_phases == 3
    assert k_errors.max() < 0.005, k_errors  # done-when: 0.5 %
    assert phase_errors.max() < 0.1, phase_errors
    assert modulation_errors.max() < 0.05, modulation_errors
    assert all(o.correlation > 0.5 for o in estimate.orientations)


def test_modulation_follows_the_pattern_contrast() -> None:
    raw_high, _, pixel_size_nm, otf = _emulated_set("microtubules", 200.0, 3, size_px=128)
    low = SimPatterns(modulation=0.5, phase_error_rad=0.1, angle_error_rad=0.01, error_seed=3)
    config = EmulatorConfig(size_px=128, photon_count_e=200.0, seed=3, patterns=low)
    raw_low = Microscope(config.without_realism()).render_set(0.0)
    high = estimate_sim_parameters(raw_high, pixel_size_nm, otf=otf).modulations()
    weak = estimate_sim_parameters(raw_low, pixel_size_nm, otf=otf).modulations()
    np.testing.assert_allclose(high, SimPatterns().modulation, atol=0.06)
    np.testing.assert_allclose(weak, 0.5, atol=0.06)


def test_parameters_round_trip_as_json() -> None:
    raw, _, pixel_size_nm, otf = _emulated_set("ccps", 300.0, 4, size_px=64)
    estimate = estimate_sim_parameters(raw, pixel_size_nm, otf=otf)
    again = SimParameters.model_validate_json(estimate.model_dump_json())
    np.testing.assert_array_equal(
        again.wave_vectors_cycles_per_px(), estimate.wave_vectors_cycles_per_px()
    )
    np.testing.assert_allclose(
        again.wave_vectors_cycles_per_nm(), estimate.wave_vectors_cycles_per_px() / pixel_size_nm
    )


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"\(P, Y, X\)"):
        estimate_sim_parameters(np.zeros((9, 16)), 62.6)
    with pytest.raises(ValueError, match="n_phases=4"):
        estimate_sim_parameters(np.zeros((9, 16, 16)), 62.6, n_phases=4)
    with pytest.raises(ValueError, match="pixel_size_nm=0"):
        estimate_sim_parameters(np.zeros((9, 16, 16)), 0)


def test_large_frames_are_analysed_on_a_centre_crop_with_phases_at_the_full_origin() -> None:
    raw, truth, pixel_size_nm, otf = _emulated_set("microtubules", 100.0, 6, size_px=320)
    estimate = estimate_sim_parameters(raw, pixel_size_nm, otf=otf, max_size_px=192)
    k_errors, phase_errors, modulation_errors = _compare(estimate, truth, pixel_size_nm)
    assert k_errors.max() < 0.005 and phase_errors.max() < 0.1 and modulation_errors.max() < 0.05


def test_pure_noise_reports_no_modulation() -> None:
    """Without a pattern there is nothing to measure: m must not come out of the noise."""
    for seed in range(3):
        noise = np.random.default_rng(seed).poisson(100.0, (9, 64, 64)).astype(np.uint16)
        estimate = estimate_sim_parameters(noise, 62.6)
        assert np.all(np.abs(estimate.modulations()) < 0.2), estimate.modulations()


def test_refine_phases_follows_a_pattern_shift_and_keeps_geometry() -> None:
    """Frames moved by 3 px: each pattern's phase changes by -2 pi k_x 3, which
    refine_phases finds with the wave vectors and modulations kept."""
    from calibration.sim_parameters import refine_phases

    raw, _, pixel, otf = _emulated_set("microtubules", 300.0, 2, size_px=128)
    reference = estimate_sim_parameters(raw, pixel, otf=otf)
    shift_px = 3
    moved = np.roll(raw, shift_px, axis=2)  # new(x) = old(x - 3)
    fit = refine_phases(moved, reference, otf)
    assert fit.reliable, fit.agreement
    expected = -2 * np.pi * reference.wave_vectors_cycles_per_px()[:, 0] * shift_px
    got = fit.parameters.phases_rad() - reference.phases_rad()
    np.testing.assert_allclose(np.angle(np.exp(1j * (got - expected[:, None]))), 0.0, atol=0.15)
    np.testing.assert_array_equal(fit.parameters.modulations(), reference.modulations())
    np.testing.assert_array_equal(
        fit.parameters.wave_vectors_cycles_per_px(), reference.wave_vectors_cycles_per_px()
    )
    # a dark set does not move the phases: the reference is kept and the fit is not reliable
    dark = refine_phases(np.full_like(raw, 100), reference, otf)
    assert not dark.reliable
    kept = dark.parameters.phases_rad() - reference.phases_rad()
    np.testing.assert_allclose(np.angle(np.exp(1j * kept)), 0.0, atol=1e-9)


def test_checks_flag_impossible_and_missing_patterns() -> None:
    from calibration.sim_parameters import check_sim_parameters, usable_parameters

    raw, _, pixel, otf = _emulated_set("microtubules", 300.0, 3, size_px=128)
    good = estimate_sim_parameters(raw, pixel, otf=otf)
    assert check_sim_parameters(good) == []
    orientations = [o.model_copy() for o in good.orientations]
    orientations[0] = orientations[0].model_copy(update={"modulation": 1.12})
    orientations[1] = orientations[1].model_copy(update={"modulation": 0.0})
    bad = good.model_copy(update={"orientations": orientations})
    problems = " ".join(check_sim_parameters(bad))
    assert "1.12 > 1 is impossible" in problems and "0.00 < 0.1" in problems
    used, changes = usable_parameters(bad)
    assert used.modulations()[0] == 1.0
    assert used.modulations()[1] == pytest.approx(np.median([1.0, min(good.modulations()[2], 1)]))
    assert len(changes) == 2
    period = pixel / np.hypot(*good.wave_vectors_cycles_per_px()[0])
    assert check_sim_parameters(good, expected_period_nm=period * 1.2)


def test_pattern_calibration_file_round_trip_and_errors(tmp_path) -> None:
    from calibration.sim_parameters import PatternCalibration, calibrate_pattern

    raw, _, pixel, otf = _emulated_set("microtubules", 300.0, 4, size_px=128)
    calibration = calibrate_pattern([raw, raw], pixel, otf, otf_description="NA 1.35")
    path = calibration.save(tmp_path / "pattern.json")
    assert PatternCalibration.load(path) == calibration
    assert calibration.n_time_points == 2
    (tmp_path / "bad.json").write_text('{"parameters": {"pixel_size_nm": -1}}')
    with pytest.raises(ValueError, match=r"bad\.json.*parameters"):
        PatternCalibration.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        PatternCalibration.load(tmp_path / "missing.json")
