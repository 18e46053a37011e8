"""Optics (OTF) and illumination patterns against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim_emulator.illumination import SimPatterns
from sim_emulator.optics import Optics, frequency_grid_cycles_per_nm, otf


def test_otf_is_one_at_zero_and_zero_beyond_cutoff() -> None:
    optics = Optics()
    transfer = otf((64, 64), optics.pixel_size_nm, optics)
    ky, kx = frequency_grid_cycles_per_nm((64, 64), optics.pixel_size_nm)
    k = np.hypot(ky, kx)
    assert transfer[0, 0] == pytest.approx(1.0)
    assert np.all(transfer[k >= optics.cutoff_cycles_per_nm] == 0.0)
    inside = k < 0.98 * optics.cutoff_cycles_per_nm
    assert np.all(transfer[inside] > 0.0)
    # half the cutoff: (2/pi)(acos(.5) - .5 sqrt(.75)) = 0.391
    order = np.argsort(k.ravel())
    assert np.all(np.diff(transfer.ravel()[order]) <= 1e-7)  # monotonic in |k|
    assert optics.cutoff_cycles_per_nm == pytest.approx(2 * 1.35 / 525)


def test_otf_attenuation_damps_high_frequencies() -> None:
    plain = otf((32, 32), 62.6, Optics())
    damped = otf((32, 32), 62.6, Optics(otf_attenuation=1.0))
    assert damped[0, 0] == pytest.approx(1.0)
    assert damped[0, 5] < plain[0, 5]


def test_optics_validation_names_field_and_value() -> None:
    with pytest.raises(ValidationError, match="immersion_index"):
        Optics(na=1.6, immersion_index=1.518)
    with pytest.raises(ValidationError, match="bogus"):
        Optics.model_validate({"bogus": 1})


@pytest.mark.parametrize(("mode", "count"), [("wf", 1), ("sim", 9), ("nlsim", 25)])
def test_pattern_counts_and_order(mode: str, count: int) -> None:
    patterns = SimPatterns(mode=mode)  # type: ignore[arg-type]
    assert patterns.n_patterns == count
    if mode != "wf":
        assert patterns.orientation_phase(patterns.phases + 1) == (1, 1)


def test_orientations_are_evenly_spaced_and_period_follows_optics() -> None:
    optics = Optics()
    patterns = SimPatterns.for_optics(optics, "sim", angle_error_rad=0.0)  # nominal geometry
    k = patterns.wave_vectors_cycles_per_nm()
    assert np.hypot(k[:, 0], k[:, 1]) == pytest.approx(0.9 * optics.cutoff_cycles_per_nm)
    angles = np.degrees(np.arctan2(k[:, 1], k[:, 0]))
    assert np.diff(angles) == pytest.approx([60.0, 60.0])


def test_linear_pattern_is_one_plus_m_cos() -> None:
    patterns = SimPatterns(mode="sim", modulation=0.8, period_nm=250.0, angle_offset_rad=0.0,
                           modulation_spread=0.0, phase_error_rad=0.0, angle_error_rad=0.0)
    line = patterns.intensity(1, (1, 200), 25.0)[0]
    x = np.arange(200) * 25.0
    expected = 1 + 0.8 * np.cos(2 * np.pi * x / 250.0 + 2 * np.pi / 3)
    assert line == pytest.approx(expected, abs=1e-5)


def test_saturation_creates_second_harmonic() -> None:
    weak = SimPatterns(mode="nlsim", saturation=0.05).harmonic_coefficients()
    strong = SimPatterns(mode="nlsim", saturation=5.0).harmonic_coefficients()
    assert abs(weak[2]) < 0.01 * abs(weak[1])
    assert abs(strong[2]) > 0.2 * abs(strong[1])
    pattern = SimPatterns(mode="nlsim", saturation=5.0).intensity(0, (64, 64), 30.0)
    assert pattern.min() >= -1e-4
    assert pattern.mean() == pytest.approx(1.0, abs=0.05)


def test_too_few_phases_rejected() -> None:
    with pytest.raises(ValidationError, match="n_phases=3"):
        SimPatterns(mode="nlsim", n_phases=3)
