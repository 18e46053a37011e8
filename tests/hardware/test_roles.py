"""Role validation and capability errors: each names the device, property and value."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hardware.errors import CapabilityError, InvalidSettingError
from hardware.rig import Rig
from hardware.roles import TriggerActivation, TriggerMode
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.devices import EmulatedCamera
from sim_emulator.rig import optical_bench


@pytest.fixture
def rig(make_emulator: Callable[..., Rig]) -> Rig:
    """Always the emulator here (these expectations name its devices), even with --rig-config."""
    return make_emulator()


def test_level_trigger_is_a_capability_error(rig: Rig) -> None:
    with pytest.raises(CapabilityError, match=r"no Level trigger activation .*Edge"):
        rig.camera.set_trigger(TriggerMode.EXTERNAL, TriggerActivation.LEVEL)


def test_plan_with_a_missing_line_is_refused_before_arming(rig: Rig) -> None:
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=532, power_pct=5, exposure_ms=5),))
    with pytest.raises(CapabilityError, match=r"532 nm; AOTF 'AOTF' has \(405, 488, 560, 640\)"):
        rig.acquire_time_point(plan, 0, timeout_s=5.0)


def test_one_line_at_two_powers_is_refused(rig: Rig) -> None:
    plan = SequencePlan(
        channels=(
            ChannelSpec(laser_nm=488, power_pct=5, exposure_ms=5),
            ChannelSpec(laser_nm=488, power_pct=50, exposure_ms=5),
        )
    )
    with pytest.raises(CapabilityError, match=r"488 nm to several powers \[5.0, 50.0\]"):
        rig.check_plan(plan)


def test_sequencing_a_plain_property_is_a_capability_error(rig: Rig) -> None:
    with pytest.raises(CapabilityError, match="'Blanking' is not sequenceable"):
        rig.aotf.load_sequence("Blanking", ["On", "Off"])
    with pytest.raises(CapabilityError, match="sequence of 5000 exceeds the device's maximum 4096"):
        rig.slm.load_sequence(rig.slm.pattern_property, ["0"] * 5000)
    with pytest.raises(InvalidSettingError, match=r"'Line': value '532' not in"):
        rig.aotf.load_sequence(rig.aotf.line_property, ["488", "532"])


def test_out_of_range_settings_name_device_and_value(rig: Rig) -> None:
    with pytest.raises(InvalidSettingError, match=r"AOTF 'AOTF': 488 nm power 101.0% not 0-100"):
        rig.aotf.set_power(488, 101.0)
    with pytest.raises(InvalidSettingError, match=r"rotator 'Rotator' property 'State': value 9"):
        rig.rotator.set_state(9)  # type: ignore[union-attr]
    with pytest.raises(InvalidSettingError, match=r"'Binning': value 3 not in"):
        rig.camera.set_binning(3)


def test_emulated_device_outside_a_hub_says_how_to_load_it() -> None:
    with pytest.raises(RuntimeError, match="not attached to an EmulatorHub"):
        EmulatedCamera().sensor_shape()


def test_binning_sums_pixels_and_dark_frames_sit_at_offset(
    make_emulator: Callable[..., Rig],
) -> None:
    rig = make_emulator()
    rig.aotf.set_line(488)
    rig.aotf.set_power(488, 0.0)
    dark = rig.snap(2, timeout_s=10.0)
    offset = optical_bench(rig).config.sensor.offset_adu
    assert all(abs(float(f.mean()) - offset) < 5.0 for f in dark)
    rig.aotf.set_power(488, 100.0)
    full = np.mean([f.mean() for f in rig.snap(2, timeout_s=10.0)])
    rig.camera.set_binning(2)
    raw_px_nm = optical_bench(rig).config.optics.pixel_size_nm
    assert rig.camera.pixel_size_nm == pytest.approx(2 * raw_px_nm)
    binned = rig.snap(2, timeout_s=10.0)
    assert binned[0].shape == (32, 32)
    assert float(np.mean([f.mean() for f in binned])) == pytest.approx(4 * full, rel=0.05)


def test_slm_keeps_showing_a_grating_until_blanked(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator()
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=100, exposure_ms=10),))
    rig.acquire_time_point(plan, 0, timeout_s=20.0)
    rig.aotf.set_line(488)
    rig.snap(1, timeout_s=10.0)
    # the running order stepped past its end and wrapped to its first grating
    last = optical_bench(rig).display_log[-1]
    assert (last.mode, last.pattern) == ("sim", 0)
    rig.slm.show_blank(488)
    rig.snap(1, timeout_s=10.0)
    shown = optical_bench(rig).display_log[-1]
    assert (shown.mode, shown.grating_nm, shown.trigger) == ("blank", 488, -1)
