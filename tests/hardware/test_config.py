"""Rig configuration: .cfg errors name the line; role maps and plans load from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware.errors import ConfigError
from hardware.rig import Rig
from hardware.roles import RoleMap
from hardware.sequencing import SequencePlan
from sim_emulator.rig import EMULATOR_CFG


def _cfg_with(tmp_path: Path, bad_line: str, at: int) -> Path:
    lines = EMULATOR_CFG.read_text().splitlines()
    lines.insert(at - 1, bad_line)
    path = tmp_path / "rig.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "bad_line",
    [
        "#py pyDevice,Laser,sim_emulator.devices,NoSuchDevice",
        "#py Property,Camera,Exposure,-5",
        "#py Property,AOTF,Line,999",
        "Frobnicate,Camera,1",
        "Device,RealCamera,DemoCamera,DCam",  # a C++ adapter this machine does not have
    ],
)
def test_bad_cfg_line_names_line_number_and_text(tmp_path: Path, bad_line: str) -> None:
    lines = EMULATOR_CFG.read_text().splitlines()
    at = len(lines) - 2  # after the devices are loaded and initialised
    path = _cfg_with(tmp_path, bad_line, at)
    with pytest.raises(ConfigError) as info:
        Rig.from_config(path)
    message = str(info.value)
    assert f"line {at}:" in message
    assert bad_line.removeprefix("#py ").strip() in message
    assert str(path) in message


def test_missing_cfg_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Rig.from_config(tmp_path / "absent.cfg")


def test_role_map_naming_a_missing_device_fails_on_construction() -> None:
    with pytest.raises(ConfigError, match="'Laser' is not loaded"):
        Rig.from_config(EMULATOR_CFG, RoleMap(aotf="Laser"))


def test_role_map_from_toml_names_unknown_field(tmp_path: Path) -> None:
    good = tmp_path / "roles.toml"
    good.write_text('[roles]\ncamera = "Cam"\nrotator = "LCR"\n')
    roles = RoleMap.from_toml(good)
    assert (roles.camera, roles.rotator, roles.slm) == ("Cam", "LCR", "SLM")
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles]\ncamra = "Cam"\n')
    with pytest.raises(ConfigError, match="camra"):
        RoleMap.from_toml(bad)


def test_plan_from_toml_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(
        'mode = "nlsim"\n[[channels]]\nlaser_nm = 488\npower_pct = 20\nexposure_ms = 8\n'
    )
    plan = SequencePlan.from_toml(path)
    assert plan.n_frames == 25
    path.write_text(
        'mode = "sim"\n[[channels]]\nlaser_nm = 488\npower_pct = 120\nexposure_ms = 8\n'
    )
    with pytest.raises(ConfigError, match=r"power_pct[\s\S]*120"):
        SequencePlan.from_toml(path)
