"""`livesim reconstruct --method wiener` (acquisition/cli/wiener_commands.py), real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition.cli import build_app
from sim_emulator.microscope import EmulatorConfig, Microscope

runner = CliRunner()


def test_reconstruct_wiener_writes_normalised_sr(tmp_path: Path) -> None:
    raw = Microscope(EmulatorConfig(size_px=64, photon_count_e=200.0, seed=2)).render_set(0.0)
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


def test_reconstruct_tiff_carries_the_sr_pixel_size(tmp_path: Path) -> None:
    import tifffile

    from inference.stack_io import tiff_pixel_size_nm

    raw = Microscope(EmulatorConfig(size_px=64, photon_count_e=200.0, seed=2)).render_set(0.0)
    np.save(tmp_path / "raw.npy", np.stack([raw, raw]))
    out = tmp_path / "sr.tif"
    result = runner.invoke(build_app(), ["reconstruct", str(tmp_path / "raw.npy"), "--output",
                                         str(out), "--pixel-size-nm", "62.6"])
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (2, 128, 128)
        x_res = tif.pages[0].tags["XResolution"].value
    assert x_res[0] / x_res[1] == pytest.approx(1 / 0.0313, rel=1e-5)  # pixels per micron
    assert tiff_pixel_size_nm(out) == pytest.approx(31.3, rel=1e-5)
