"""calibration.stack_statistics: physical statistics of a raw SIM set from the data alone,
checked against the emulator's known camera and against the real TIRF-SIM stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.stack_statistics import (
    StackStatisticsError,
    comparison_table,
    estimate_gain_and_offset,
    measure_stack,
)
from sim_emulator.microscope import EmulatorConfig, Microscope
from sim_emulator.presets import preset_config
from sim_emulator.sensor import SensorModel

REAL_STACK = Path(__file__).resolve().parents[2] / ".." / "shared" / "dlsr_assets" / (
    "rDL-SIM_Microtubules_MT_raw9.mrc"
)


def test_gain_and_offset_come_out_of_the_noise_beyond_the_cutoff() -> None:
    sensor = SensorModel(gain_adu_per_e=3.0, offset_adu=400.0, read_noise_e=0.5)
    config = EmulatorConfig(
        structure="microtubules", size_px=128, photon_count_e=80.0, sensor=sensor
    )
    raw = Microscope(config).render_set(0.0)
    cutoff_px = config.optics.cutoff_cycles_per_nm * config.optics.pixel_size_nm
    # one 128 px frame: 64 blocks, about +-10 % per frame; the median of nine is within 5 %
    per_frame = np.array([estimate_gain_and_offset(frame, cutoff_px) for frame in raw])
    assert np.median(per_frame[:, 0]) == pytest.approx(3.0, rel=0.05)
    assert np.all(np.abs(per_frame[:, 0] / 3.0 - 1) < 0.15)
    gain, offset = estimate_gain_and_offset(raw, cutoff_px)  # all frames in one fit
    assert gain == pytest.approx(3.0, rel=0.05)
    # read noise folds into the offset: offset - gain x read variance = 400 - 0.75
    # (the x-intercept moves by the gain's error times the mean level: a few ADU)
    assert offset == pytest.approx(400.0 - 3.0 * 0.25, abs=8.0)
    with pytest.raises(StackStatisticsError, match="noise band"):
        estimate_gain_and_offset(raw[0], 0.62)  # cutoff beyond Nyquist: nothing left


def test_measured_electrons_follow_the_emulated_photon_count() -> None:
    config = EmulatorConfig(structure="microtubules", size_px=128, photon_count_e=60.0, seed=2)
    raw = Microscope(config).render_set(0.0)
    low = measure_stack(raw, config.optics.pixel_size_nm, config.optics.na,
                        config.optics.emission_nm)
    brighter = config.model_copy(update={"photon_count_e": 240.0})
    high = measure_stack(Microscope(brighter).render_set(0.0), config.optics.pixel_size_nm,
                         config.optics.na, config.optics.emission_nm)
    assert low.gain_adu_per_e == pytest.approx(2.0, rel=0.06)
    # the count includes the read-noise variance folded into the offset (~2 e-)
    assert low.photon_count_e == pytest.approx(60.0 + 1.4**2, rel=0.08)
    # electrons carry the read-noise variance (1.4 e- rms) that the offset fit folds in
    read = 1.4**2
    ratio = (high.background_e - read) / (low.background_e - read)
    assert ratio == pytest.approx(4.0, rel=0.15)
    assert high.signal_e / low.signal_e == pytest.approx(4.0, rel=0.15)
    assert low.noise_to_mean == pytest.approx(1.0, abs=0.08)  # shot noise is white
    assert low.noise_flatness == pytest.approx(1.0, abs=0.1)
    true_period = config.patterns.period_nm
    assert low.period_nm == pytest.approx([true_period] * 3, rel=0.01)
    assert "| background (e-) |" in comparison_table({"a": low, "b": high})


@pytest.mark.skipif(not REAL_STACK.is_file(), reason=f"real stack not present: {REAL_STACK}")
def test_tirf_preset_matches_the_real_microtubule_stack() -> None:
    """Done-when of issue 16: background and signal e- within 30 %, modulation within 0.15."""
    from inference.stack_io import load_raw_stack

    real = measure_stack(load_raw_stack(REAL_STACK).time_point(0), 62.6, 1.49, 525.0)
    config = preset_config("tirf-microtubules")
    emulated = measure_stack(Microscope(config).render_set(0.0), 62.6, 1.49, 525.0)
    assert emulated.background_e == pytest.approx(real.background_e, rel=0.3)
    assert emulated.signal_e == pytest.approx(real.signal_e, rel=0.3)
    assert np.abs(np.subtract(emulated.modulation, real.modulation)).max() < 0.15
    assert emulated.period_nm == pytest.approx(real.period_nm, rel=0.02)


def test_electrons_per_orientation_undo_a_per_orientation_stretch() -> None:
    """A set whose orientations were stretched with their own gain and offset (as published
    test stacks are) comes back to one electron scale: every orientation's mean agrees."""
    from calibration.stack_statistics import electrons_per_orientation

    config = EmulatorConfig(structure="microtubules", size_px=128, photon_count_e=60.0,
                            sensor=SensorModel(gain_adu_per_e=1.0, offset_adu=100.0))
    microscope = Microscope(config)
    raw = microscope.render_set(0.0).astype(np.float64) - 100.0
    stretch = [(700.0, 18000.0), (600.0, 27000.0), (800.0, 22000.0)]
    stretched = np.concatenate(
        [raw[3 * o : 3 * o + 3] * g + off for o, (g, off) in enumerate(stretch)]
    )
    cutoff_px = config.optics.cutoff_cycles_per_nm * config.optics.pixel_size_nm
    electrons, gains, _ = electrons_per_orientation(stretched, cutoff_px)
    np.testing.assert_allclose(gains, [g for g, _ in stretch], rtol=0.06)
    means = electrons.reshape(3, -1).mean(axis=1)
    assert np.ptp(means) < 0.08 * means.mean(), means  # stretched: 600-800x apart
    # the offset's x-intercept carries the gain's error times the mean level: ~20 % here
    np.testing.assert_allclose(means, raw.reshape(3, -1).mean(axis=1), rtol=0.25)
    with pytest.raises(StackStatisticsError, match="orientations"):
        electrons_per_orientation(stretched[:8], cutoff_px)
