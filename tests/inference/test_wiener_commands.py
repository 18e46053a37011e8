"""`livesim reconstruct --method wiener` (acquisition/cli/wiener_commands.py), real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from acquisition.cli import build_app
from sim_emulator.microscope import EmulatorConfig, Microscope

runner = CliRunner()


def test_reconstruct_wiener_writes_normalised_sr(tmp_path: Path) -> None:
    raw = Microscope(EmulatorConfig(size_px=64, photons=200.0, seed=2)).render_set(0.0)
    stack = tmp_path / "raw.npy"
    np.save(stack, np.stack([raw, raw]))  # two time points
    out = tmp_path / "sr.npy"
    params = tmp_path / "params.json"
    result = runner.invoke(
        build_app(),
        [
            "reconstruct",
            "--method",
            "wiener",
            str(stack),
            "--output",
            str(out),
            "--pixel-size-nm",
            "62.6",
            "--parameters",
            str(params),
        ],
    )
    assert result.exit_code == 0, result.output
    sr = np.load(out)
    assert sr.shape == (2, 128, 128) and sr.dtype == np.float32
    assert sr.max() == 1.0 and sr.min() >= 0.0
    np.testing.assert_array_equal(sr[0], sr[1])
    assert '"wave_vector_cycles_per_px"' in params.read_text()


def test_reconstruct_rejects_other_methods_and_bad_files(tmp_path: Path) -> None:
    result = runner.invoke(
        build_app(), ["reconstruct", "--method", "dfcan", "x.npy", "--output", "y.npy"]
    )
    assert result.exit_code == 2 and "livesim predict" in result.output
    bad = tmp_path / "raw.png"
    bad.write_bytes(b"x")
    result = runner.invoke(build_app(), ["reconstruct", str(bad), "--output", "y.npy"])
    assert result.exit_code == 2 and "raw.png" in result.output
