"""`livesim rig check --dry-run`: reads names, values and limits; sets nothing, moves nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from hardware.conformance import run_checks
from hardware.rig import Rig
from hardware.roles import RoleMap

CONFIGS = Path(__file__).resolve().parents[2] / "sim_emulator" / "configs"


def snapshot(rig: Rig) -> dict[tuple[str, str], str]:
    core = rig.backend.core  # type: ignore[attr-defined]
    return {(d, p): str(core.getProperty(d, p)) for d in core.getLoadedDevices()
            for p in core.getDevicePropertyNames(d) if p != "SequencePosition"}


def test_dry_run_passes_and_changes_no_property(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(size_px=32)
    rig.backend.set_property(rig.aotf.label, "Blanking", "On")
    before = snapshot(rig)
    results = run_checks(rig, dry_run=True)
    assert [v for _, v, _ in results] == ["ok"] * len(results) and len(results) == 3
    assert snapshot(rig) == before
    assert not rig.shutter.is_open  # type: ignore[union-attr]


def test_dry_run_names_a_value_the_adapter_does_not_have(
        make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(size_px=32, roles=RoleMap(camera_trigger_external="Edge Trigger"))
    before = snapshot(rig)
    failed = [m for c, v, m in run_checks(rig, dry_run=True) if v == "FAIL"]
    assert len(failed) == 1 and "no value 'Edge Trigger'" in failed[0]
    assert snapshot(rig) == before


def test_dry_run_on_the_shim_rig_with_profiles() -> None:
    roles = RoleMap.load(["hamamatsu-dcam", "triggerscope", str(CONFIGS / "shim_roles.toml"),
                          str(CONFIGS / "shim_daq_master.toml")])
    with Rig.from_config(CONFIGS / "shim_hamamatsu_triggerscope.cfg", roles,
                         find_adapters=False) as rig:
        before = snapshot(rig)
        results = run_checks(rig, dry_run=True)
        assert all(v == "ok" for _, v, _ in results), results
        assert snapshot(rig) == before


def test_rig_check_dry_run_command() -> None:
    from acquisition.cli import build_app

    result = CliRunner().invoke(build_app(), ["rig", "check", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3/3 checks passed" in result.output and "(dry)" in result.output
