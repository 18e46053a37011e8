"""The calibration package's CLI: calibrate camera."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from acquisition.cli import build_app
from calibration.camera_calibration import CameraCalibration

runner = CliRunner()


def test_calibrate_camera_on_the_emulator(tmp_path: Path) -> None:
    out = tmp_path / "cal.h5"
    result = runner.invoke(
        build_app(),
        [
            "calibrate",
            "camera",
            "--emulator",
            "--output",
            str(out),
            "--size-px",
            "16",
            "--frames",
            "30",
        ],
    )
    assert result.exit_code == 0, result.output
    calibration = CameraCalibration.load(out)
    assert calibration.shape == (16, 16)
    assert abs(calibration.median_gain_adu_per_e - 2.0) < 0.1
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_camera_needs_exactly_one_rig(tmp_path: Path) -> None:
    out = str(tmp_path / "cal.h5")
    for extra in ([], ["--emulator", "--config", "rig.cfg"]):
        result = runner.invoke(build_app(), ["calibrate", "camera", "--output", out, *extra])
        assert result.exit_code == 2 and "exactly one" in result.output
