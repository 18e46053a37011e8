"""The rig on shim devices with real adapters' names, values and sequencing limits
(Hamamatsu DCAM camera, TriggerScope TTL/DAC, an SLM stepping on a TTL), in camera-master and
daq-master timing, with a 561 nm line. Every frame encodes what the devices showed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hardware.errors import CapabilityError, SequenceMismatch
from hardware.pattern_layout import slm_index
from hardware.rig import Rig
from hardware.roles import RoleMap
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.shim_devices import TS_SEQUENCE_MAX, UNSETTLED_ADU, ShimTiming

CONFIGS = Path(__file__).resolve().parents[2] / "sim_emulator" / "configs"
CFG = CONFIGS / "shim_hamamatsu_triggerscope.cfg"
CAMERA_MASTER = ["hamamatsu-dcam", "triggerscope", CONFIGS / "shim_roles.toml"]
DAQ_MASTER = [*CAMERA_MASTER, CONFIGS / "shim_daq_master.toml"]
PLAN = SequencePlan(channels=(ChannelSpec(laser_nm=561, power_pct=10, exposure_ms=1),
                              ChannelSpec(laser_nm=488, power_pct=5, exposure_ms=1)))
TTL_BIT = {405: 1, 488: 2, 561: 4, 640: 8}


@pytest.fixture
def open_rig() -> Iterator[object]:
    made: list[Rig] = []

    def make(specs: list[object], **update: object) -> Rig:
        roles = RoleMap.load([str(s) for s in specs])
        if update:
            roles = RoleMap.model_validate({**roles.model_dump(), **update})
        rig = Rig.from_config(CFG, roles, find_adapters=False)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def timing(rig: Rig) -> ShimTiming:
    device = rig.backend.python_device("Timing")  # type: ignore[attr-defined]
    assert isinstance(device, ShimTiming)
    return device


def check_frames(rig: Rig, time_points: int) -> int:
    """Stream, and assert every frame shows the line and pattern its tag names; frames seen."""
    lines = rig.roles.laser_lines_nm
    seen = 0
    for frame in rig.stream(PLAN, list(range(time_points)), timeout_s=2.0):
        value = int(frame.image[0, 0])
        assert value < UNSETTLED_ADU, f"frame {frame.tag} exposed while a device settled"
        ttl, slm = divmod(value, 1000)
        assert ttl == TTL_BIT[frame.tag.laser_nm]
        assert slm == slm_index(frame.tag.laser_nm, "sim", frame.tag.pattern_index, lines)
        seen += 1
    return seen


@pytest.mark.parametrize("mode", ["camera-master", "daq-master"])
def test_a_561_nm_protocol_runs_with_hamamatsu_and_triggerscope_names(
        open_rig: object, mode: str) -> None:
    rig = open_rig(CAMERA_MASTER if mode == "camera-master" else DAQ_MASTER)  # type: ignore[operator]
    assert rig.roles.timing == mode
    assert check_frames(rig, 3) == 3 * PLAN.n_frames
    # powers went to the DACs, scaled to 0-10 V; lasers switched by TTL bit masks
    assert float(rig.backend.get_property("TS_DAC03", "Volts")) == pytest.approx(1.0)  # 561
    assert float(rig.backend.get_property("TS_DAC02", "Volts")) == pytest.approx(0.5)  # 488
    camera = rig.camera.label
    expected = "INTERNAL" if mode == "camera-master" else "EXTERNAL"
    assert rig.backend.get_property(camera, "TRIGGER SOURCE") == expected


def test_the_triggerscope_sequence_limit_is_named(open_rig: object) -> None:
    rig = open_rig(CAMERA_MASTER)  # type: ignore[operator]
    lines = (405, 488, 561)
    plan = SequencePlan(mode="nlsim", channels=tuple(
        ChannelSpec(laser_nm=nm, power_pct=5, exposure_ms=1) for nm in lines))
    limit = rf"sequence of 75 exceeds .*maximum {TS_SEQUENCE_MAX}"
    with pytest.raises(CapabilityError, match=limit):
        rig.check_plan(plan)


def test_a_missed_trigger_without_readbacks_is_never_accepted(open_rig: object) -> None:
    rig = open_rig(DAQ_MASTER)  # type: ignore[operator]
    assert rig.trigger is not None and rig.trigger.triggers_fired is None
    timing(rig).miss_at = PLAN.n_frames + 4  # time point 1, pattern 4 of the first colour
    frames = []
    with pytest.raises(SequenceMismatch, match="cannot be verified"):
        for frame in rig.stream(PLAN, [0, 1], timeout_s=0.5):
            frames.append(frame)
    # time point 0 whole; time point 1's frames came before the error, which tells the engine
    # to drop them (tests/reliability/test_rig_without_readbacks.py checks the stored file)
    assert [f.tag.time_point for f in frames].count(0) == PLAN.n_frames


def test_an_extra_trigger_is_caught_before_the_next_burst(open_rig: object) -> None:
    # the rig waits two pulse periods after a burst's last frame, one period beyond the surplus
    # frame's due time: a 20 ms settle makes that slack outlast a stall of the shim's pulse
    # thread on a loaded machine (with ~2 ms it was absorbed into the next burst once in CI)
    rig = open_rig(DAQ_MASTER, device_settle_ms=20.0)  # type: ignore[operator]
    timing(rig).extra_at = 5
    with pytest.raises(SequenceMismatch, match=r"time point 1: 1 frame\(s\) arrived after"):
        for _ in rig.stream(PLAN, [0, 1], timeout_s=1.0):
            pass


def test_settle_time_sets_the_pulse_period(open_rig: object) -> None:
    unsettled = open_rig(DAQ_MASTER)  # type: ignore[operator]
    unsettled.backend.set_property("SLM", "Settle-ms", 4.0)
    images = [f.image[0, 0] for f in unsettled.stream(PLAN, [0], timeout_s=2.0)]
    assert np.any(np.array(images) >= UNSETTLED_ADU)  # period 2 ms < 1 ms exposure + 4 ms
    unsettled.close()
    settled = open_rig(DAQ_MASTER, device_settle_ms=4.0)  # type: ignore[operator]
    settled.backend.set_property("SLM", "Settle-ms", 4.0)
    assert settled.pulse_period_ms(PLAN) == pytest.approx(6.0)
    assert check_frames(settled, 2) == 2 * PLAN.n_frames


def test_camera_master_on_the_emulator_steps_devices_on_exposures(
        make_emulator: object) -> None:
    from hardware.pattern_layout import rotator_state
    from sim_emulator.rig import optical_bench

    rig = make_emulator(size_px=32, roles=RoleMap(timing="camera-master"))  # type: ignore[operator]
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20, exposure_ms=1),
                                  ChannelSpec(laser_nm=560, power_pct=20, exposure_ms=1)))
    frames = list(rig.stream(plan, [0, 1], timeout_s=5.0))
    log = [r for r in optical_bench(rig).display_log if r.delivered]
    assert len(frames) == len(log) == 2 * plan.n_frames
    for frame, shown in zip(frames, log, strict=True):
        assert shown.trigger == -1  # no pulse: the camera ran on its own clock
        assert (shown.laser_nm, shown.pattern) == (frame.tag.laser_nm, frame.tag.pattern_index)
        assert shown.rotator_state == rotator_state("sim", frame.tag.orientation)


def test_conformance_says_when_no_readback_can_confirm_frame_order(open_rig: object) -> None:
    from hardware.conformance import NotApplicable, triggered_sim_sequence

    rig = open_rig(DAQ_MASTER)  # type: ignore[operator]
    with pytest.raises(NotApplicable, match="no frame counter, trigger count or SLM position"):
        triggered_sim_sequence(rig)


def test_pulse_width_covers_exposure_and_rolling_shutter_readout(open_rig: object) -> None:
    camera = "HamamatsuHam_DCAM"
    for readout_ms, spoiled in ((0.0, True), (10.0, False)):
        rig = open_rig(DAQ_MASTER, camera_readout_ms=readout_ms)  # type: ignore[operator]
        rig.backend.set_property(camera, "TIMING READOUT TIME", 0.010)  # last row +10 ms
        assert rig.pulse_width_ms(PLAN) == pytest.approx(1.0 + readout_ms)
        images = np.array([f.image[0, 0] for f in rig.stream(PLAN, [0], timeout_s=2.0)])
        # devices stepping before the last row is exposed spoil the frame (mixed patterns)
        assert bool(np.any(images >= UNSETTLED_ADU)) is spoiled
        rig.close()


def test_a_short_pulse_steps_devices_inside_the_exposure(open_rig: object) -> None:
    short = [*CAMERA_MASTER, CONFIGS / "shim_daq_master.toml"]
    rig = open_rig(short, trigger_pulse_width_property=None)  # type: ignore[operator]
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=561, power_pct=5, exposure_ms=20),))
    images = np.array([f.image[0, 0] for f in rig.stream(plan, [0], timeout_s=2.0)])
    assert np.all(images >= UNSETTLED_ADU)  # 0.5 ms pulses: every step lands mid-exposure
