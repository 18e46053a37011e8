"""Realism that real SIM stacks show, on by default: aberrated OTF, illumination envelope,
laser flicker and drift, pattern drift and per-orientation modulation, dose-driven bleaching."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.otf import OtfModel
from sim_emulator.illumination import SimPatterns
from sim_emulator.microscope import EmulatorConfig, Microscope
from sim_emulator.optics import Optics, ideal_otf_of_rho, otf_of_frequency, strehl_ratio
from sim_emulator.samples import Dynamics

STILL = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0)


def test_rendering_otf_is_aberrated_not_the_ideal_one_reconstruction_uses() -> None:
    optics = Optics()
    rho = np.array([0.25, 0.5, 0.75])
    rendering = otf_of_frequency(rho * optics.cutoff_cycles_per_nm, optics)
    # what Wiener SIM assumes by default: the ideal pupil (calibration.otf)
    model = OtfModel(na=optics.na, emission_nm=optics.emission_nm, pixel_integration=False)
    ideal = model.value(rho * optics.cutoff_cycles_per_nm, 0.0 * rho, optics.pixel_size_nm)
    assert ideal == pytest.approx(ideal_otf_of_rho(rho), abs=1e-9)
    assert np.all(rendering < 0.92 * ideal)
    assert 0.7 < strehl_ratio(optics) < 0.9
    # the pupil route reproduces the analytic diffraction-limited OTF without aberrations
    clean = Optics(defocus_waves_rms=0.0, spherical_waves_rms=0.0)
    assert strehl_ratio(clean) == pytest.approx(1.0)
    flat = Optics(defocus_waves_rms=1e-9, spherical_waves_rms=0.0)  # forces the pupil route
    assert otf_of_frequency(rho * flat.cutoff_cycles_per_nm, flat) == pytest.approx(
        ideal_otf_of_rho(rho), abs=2e-3
    )


def test_illumination_envelope_dims_the_field_edges() -> None:
    microscope = Microscope(EmulatorConfig(structure="er", size_px=48, dynamics=STILL))
    height, width = microscope.sample.field_nm
    centre = microscope.envelope(np.array(height / 2), np.array(width / 2))
    corner = microscope.envelope(np.array(0.0), np.array(0.0))
    sigma = 0.8 * max(height, width)
    assert centre == pytest.approx(1.0)
    assert corner == pytest.approx(np.exp(-(height**2 + width**2) / 4 / (2 * sigma**2)))
    flat = Microscope(EmulatorConfig(structure="er", size_px=48, illumination_sigma_fraction=0))
    assert flat.envelope(np.array(0.0), np.array(0.0)) == pytest.approx(1.0)


def test_laser_flicker_and_drift_scale_frames() -> None:
    microscope = Microscope(EmulatorConfig(structure="er", size_px=32, dynamics=STILL))
    factors = np.array([microscope.laser_factor(0.1 * i, 0, 488.0) for i in range(400)])
    assert factors.std() == pytest.approx(0.01, rel=0.2)  # 1 % rms flicker
    assert microscope.laser_factor(0.3, 2, 488.0) == microscope.laser_factor(0.3, 2, 488.0)
    slow = np.array([microscope.laser_factor(t, None, 488.0) for t in (0.0, 150.0, 450.0)])
    assert np.ptp(slow) > 0.02  # 2 % drift over a 600 s period shows between 150 s and 450 s
    a, b = microscope.expected_photons(0.0, [0, 0], 488.0, 100.0, 10.0)
    assert np.array_equal(a, b)  # same exposure (time, pattern): same laser power
    frame_a = microscope.expected_photons(0.0, [0], 488.0, 100.0, 10.0)[0]
    frame_b = microscope.expected_photons(0.05, [0], 488.0, 100.0, 10.0)[0]
    ratio = frame_b.sum() / frame_a.sum()
    expected = microscope.laser_factor(0.05, 0, 488.0) / microscope.laser_factor(0.0, 0, 488.0)
    assert ratio == pytest.approx(expected, rel=1e-3)


def test_pattern_drifts_and_orientations_differ_in_modulation() -> None:
    patterns = SimPatterns(drift_nm_per_s=(1.0, 0.5))
    k = patterns.wave_vectors_cycles_per_nm()
    moved = patterns.phases_rad(10.0) - patterns.phases_rad(0.0)
    expected = 2 * np.pi * (k @ np.array([10.0, 5.0]))
    assert moved == pytest.approx(np.repeat(expected[:, None], 3, axis=1))
    m = patterns.modulations()
    assert m.shape == (3,) and np.all(m <= 1.0) and np.ptp(m) > 0.01
    assert np.array_equal(SimPatterns(error_seed=4).modulations(),
                          SimPatterns(error_seed=4).modulations())


def test_bleaching_follows_the_dose_per_structure_and_the_envelope() -> None:
    config = EmulatorConfig(
        structure="mix", mix_structures=("microtubules", "mitochondria", "er"),
        labels_nm={"microtubules": 488, "mitochondria": 560, "er": 640},
        size_px=32, dynamics=STILL.model_copy(update={"bleach_per_dose": 0.002}),
    )
    microscope = Microscope(config)
    before = {line: microscope.ground_truth(0.0, line).wf.sum() for line in (488, 560, 640)}
    for t in range(10):  # 90 frames at 488 nm and at 560 nm, none at 640 nm
        microscope.render_set(0.1 * t, laser_nm=488)
        microscope.render_set(0.1 * t, laser_nm=560)
    assert microscope.dose_before(488, 1.0) == pytest.approx(90.0)
    after = {line: microscope.ground_truth(1.0, line).wf.sum() for line in (488, 560, 640)}
    kept = {line: after[line] / before[line] for line in before}
    # 90 reference doses at 0.2 %/dose, x2 for mitochondria, less at the dimmer field edges
    assert 0.83 < kept[488] < 0.88 and 0.70 < kept[560] < 0.78
    assert kept[640] == pytest.approx(1.0, abs=1e-6)  # no light, no bleaching
    centre = microscope.ground_truth(1.0, 488).wf[12:20, 12:20].sum()
    first = Microscope(config).ground_truth(0.0, 488).wf[12:20, 12:20].sum()
    assert centre / first < kept[488]  # the envelope's peak bleaches fastest
