"""The `livesim rig check` and `livesim bench camera` commands, on a small emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from acquisition.cli import build_app
from acquisition.cli.bench.camera import measure_camera_throughput
from sim_emulator.rig import EMULATOR_CFG


def _app() -> typer.Typer:
    return build_app()


def test_rig_check_passes_on_the_emulator_cfg() -> None:
    result = CliRunner().invoke(_app(), ["rig", "check", "--config", str(EMULATOR_CFG)])
    assert result.exit_code == 0, result.output
    assert "11/11 checks passed, 0 skipped (no such device), 0 failed" in result.output


def test_rig_check_skips_a_role_the_rig_lacks(tmp_path: Path) -> None:
    roles = tmp_path / "roles.toml"
    roles.write_text('[roles]\nrotator = ""\n')
    result = CliRunner().invoke(_app(), ["rig", "check", "--roles", str(roles)])
    assert result.exit_code == 0, result.output
    assert "skip rotator  states: this rig has no polarization rotator" in result.output
    assert "10/11 checks passed, 1 skipped (no such device), 0 failed" in result.output


def test_rig_check_reports_a_bad_cfg_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(EMULATOR_CFG.read_text() + "#py Property,SLM,PatternIndex,9999\n")
    result = CliRunner().invoke(_app(), ["rig", "check", "--config", str(cfg)])
    assert result.exit_code == 2
    n_lines = len(EMULATOR_CFG.read_text().splitlines()) + 1
    assert f"line {n_lines}: Property,SLM,PatternIndex,9999" in result.output


@pytest.mark.parametrize("render_mode", ["fast", "replay"])
def test_camera_throughput_counts_every_streamed_frame(render_mode: str) -> None:
    result = measure_camera_throughput(n_frames=45, size_px=64, render_mode=render_mode)
    assert result.frames == 45
    assert result.frames_per_s > 0
    assert result.megabytes_per_s == result.frames_per_s * 64 * 64 * 2 / 1e6


def test_camera_throughput_is_not_paced_by_the_emulated_exposure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench measures the core path's ceiling: the emulated camera must not hold each
    readout for its 10 ms exposure (that capped the figure at ~97 frames/s)."""
    import contextlib
    from collections.abc import Iterator

    from acquisition.cli.bench import camera as bench_camera

    real = bench_camera.emulated_rig
    held: list[str] = []

    @contextlib.contextmanager
    def watched(**kwargs: object) -> Iterator[object]:
        with real(**kwargs) as rig:  # type: ignore[arg-type]
            yield rig
            held.append(str(rig.backend.get_property(rig.camera.label, "HoldExposure")))

    monkeypatch.setattr(bench_camera, "emulated_rig", watched)
    result = measure_camera_throughput(n_frames=18, size_px=32, render_mode="replay")
    assert result.frames == 18
    assert held == ["No"]
