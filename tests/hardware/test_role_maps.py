"""Role maps: shipped adapter profiles, merging, and the frame-counter contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hardware.errors import ConfigError, SequenceMismatch
from hardware.rig import Rig
from hardware.roles import RoleMap, profile_names
from hardware.sequencing import ChannelSpec, SequencePlan

PLAN = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20, exposure_ms=2),))


def test_every_shipped_profile_loads_and_names_its_adapter() -> None:
    assert {"hamamatsu-dcam", "pvcam", "andor-sdk3", "triggerscope", "arduino",
            "nidaq"} <= set(profile_names())
    hamamatsu = RoleMap.load("hamamatsu-dcam")
    assert (hamamatsu.camera_trigger_mode_property, hamamatsu.camera_trigger_external) == (
        "TRIGGER SOURCE", "EXTERNAL")
    assert hamamatsu.camera_frame_counter_key is None  # "" in TOML: the adapter has none
    pvcam = RoleMap.load("pvcam")
    assert (pvcam.camera_frame_counter_key, pvcam.camera_frame_counter_base) == (
        "PVCAM-FrameNr", 1)


def test_profiles_merge_left_to_right_and_a_file_overrides(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[roles]\ncamera = "Orca"\nlaser_lines_nm = [488, 561]\n'
                   'aotf_line_values = { 488 = "1", 561 = "2" }\n')
    roles = RoleMap.load(f"hamamatsu-dcam+triggerscope+{lab}")
    assert roles.camera == "Orca"  # the file wins
    assert roles.camera_trigger_mode_property == "TRIGGER SOURCE"  # from the camera profile
    assert roles.aotf == "TS_TTL1-8" and roles.timing == "camera-master"  # from the controller
    assert roles.laser_lines_nm == (488, 561) and roles.aotf_line_values == {488: "1", 561: "2"}


def test_bad_role_map_names_the_file_field_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a file nor a shipped profile"):
        RoleMap.load("hamamatsu")
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles]\nlaser_lines_nm = [488, 488]\n')
    with pytest.raises(ConfigError, match=r"bad.toml.*laser_lines_nm.*distinct"):
        RoleMap.load(str(bad))
    with pytest.raises(ConfigError, match=r"daq-master.*trigger_fire_property"):
        RoleMap.load(str(_write(tmp_path, 'timing = "daq-master"\ntrigger = ""\n')))


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "roles.toml"
    path.write_text("[roles]\n" + body)
    return path


def test_a_missing_frame_counter_key_is_an_error_not_a_skip(
        make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(size_px=32, roles=RoleMap(camera_frame_counter_key="PVCAM-FrameNr"))
    with pytest.raises(ConfigError, match=r"no frame counter 'PVCAM-FrameNr'.*FrameCounter"):
        rig.acquire_time_point(PLAN, 0, timeout_s=2.0)


def test_the_counter_base_is_checked_on_the_first_frame(
        make_emulator: Callable[..., Rig]) -> None:
    one_based = make_emulator(size_px=32, roles=RoleMap(camera_frame_counter_base=1))
    with pytest.raises(SequenceMismatch, match=r"expected camera frame 1 .*frame 0 arrived"):
        one_based.acquire_time_point(PLAN, 0, timeout_s=2.0)
    any_base = make_emulator(size_px=32, roles=RoleMap(camera_frame_counter_base=None))
    frames = any_base.acquire_time_point(PLAN, 0, timeout_s=2.0)
    assert [f.tag.pattern_index for f in frames] == list(range(9))


def test_a_plan_line_outside_the_running_order_is_refused_naming_the_lines(
        make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(size_px=32, roles=RoleMap(laser_lines_nm=(488, 640)))
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=560, power_pct=20, exposure_ms=2),))
    with pytest.raises(Exception, match=r"560 nm.*grating sets for \(488, 640\)"):
        rig.check_plan(plan)


def test_camera_timestamps_come_from_the_named_metadata_key(
        make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(size_px=32, roles=RoleMap(camera_timestamp_key="ElapsedTime-ms"))
    stamps = [f.tag.timestamp_s for f in rig.acquire_time_point(PLAN, 0, timeout_s=2.0)]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    missing = make_emulator(size_px=32, roles=RoleMap(camera_timestamp_key="TimeStampBOF"))
    with pytest.raises(ConfigError, match="no timestamp 'TimeStampBOF'"):
        missing.acquire_time_point(PLAN, 0, timeout_s=2.0)


@pytest.mark.parametrize("spelled", ["2", "2.0", "2x2"])
def test_binning_spellings_are_read_tolerantly(spelled: str) -> None:
    from hardware.roles import _binning_factor

    assert _binning_factor(spelled) == 2


def test_dark_snaps_keep_the_shutter_closed(make_emulator: Callable[..., Rig]) -> None:
    from sim_emulator.rig import optical_bench

    rig = make_emulator(size_px=32)
    rig.snap(2, timeout_s=5.0, shutter_open=False)
    rig.snap(1, timeout_s=5.0)
    shown = [r.shutter_open for r in optical_bench(rig).display_log if r.delivered]
    assert shown == [False, False, True]


def test_calibration_above_the_power_cap_asks_first() -> None:
    from typer.testing import CliRunner

    from acquisition.cli import build_app

    cfg = Path(__file__).resolve().parents[2] / "sim_emulator/configs/emulator.cfg"
    result = CliRunner().invoke(build_app(), ["calibrate", "camera", "--config", str(cfg),
                                              "--output", "never.h5", "--power-pct", "50"],
                                input="n\n")
    assert result.exit_code == 2
    assert "above the 20 % cap" in result.output and "not confirmed" in result.output
