"""`livesim reconstruct --method wiener` (acquisition/cli/wiener_commands.py), real CLI."""

from __future__ import annotations

import json
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
            "--na",
            "1.35",
            "--wavelength-nm",
            "525",
            "--parameters",
            str(params),
        ],
    )
    assert result.exit_code == 0, result.output
    sr = np.load(out)
    assert sr.shape == (2, 128, 128) and sr.dtype == np.float32
    assert sr.max() == 1.0 and sr.min() >= 0.0
    # same set twice: the phases refined on time point 1 reproduce time point 0
    np.testing.assert_allclose(sr[0], sr[1], atol=1e-3)
    used = json.loads(params.read_text())
    assert [t["source"] for t in used] == ["estimated", "refined"]
    assert len(used[1]["parameters"]["orientations"]) == 3


def test_unknown_detection_na_is_an_error_naming_the_file(tmp_path: Path) -> None:
    raw = Microscope(EmulatorConfig(size_px=64, photon_count_e=200.0, seed=2)).render_set(0.0)
    stack = tmp_path / "raw.npy"
    np.save(stack, raw)
    result = runner.invoke(
        build_app(), ["reconstruct", str(stack), "-o", str(tmp_path / "sr.npy"),
                      "--pixel-size-nm", "62.6"]
    )
    assert result.exit_code == 2
    assert "raw.npy" in result.output and "detection NA" in result.output
    assert not (tmp_path / "sr.npy").exists()
    # stated optics whose cutoff is far below the signal in the data are refused too
    result = runner.invoke(
        build_app(), ["reconstruct", str(stack), "-o", str(tmp_path / "sr.npy"),
                      "--pixel-size-nm", "62.6", "--na", "0.3", "--wavelength-nm", "525"]
    )
    assert result.exit_code == 2 and "cycles/px" in result.output, result.output


def test_calibrate_pattern_then_reconstruct_with_it(tmp_path: Path) -> None:
    """A calibration fitted on a bright set is reused on a dim one of the same pattern."""
    bright = Microscope(EmulatorConfig(size_px=128, photon_count_e=300.0, seed=4)).render_set(0.0)
    dim = Microscope(EmulatorConfig(size_px=128, photon_count_e=3.0, seed=4)).render_set(0.0)
    np.save(tmp_path / "bright.npy", bright)
    np.save(tmp_path / "dim.npy", dim)
    optics = ["--pixel-size-nm", "62.6", "--na", "1.35", "--wavelength-nm", "525"]
    calibration = tmp_path / "pattern.json"
    result = runner.invoke(
        build_app(),
        ["calibrate", "pattern", str(tmp_path / "bright.npy"), "-o", str(calibration), *optics],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(calibration.read_text())
    assert saved["format"] == "livesim-pattern-calibration"
    assert all(0.1 <= o["modulation"] <= 1.0 for o in saved["parameters"]["orientations"])
    params = tmp_path / "used.json"
    result = runner.invoke(
        build_app(),
        ["reconstruct", str(tmp_path / "dim.npy"), "-o", str(tmp_path / "sr.npy"), *optics,
         "--pattern-parameters", str(calibration), "--parameters", str(params)],
    )
    assert result.exit_code == 0, result.output
    used = json.loads(params.read_text())[0]["parameters"]["orientations"]
    for got, want in zip(used, saved["parameters"]["orientations"], strict=True):
        assert got["wave_vector_cycles_per_px"] == want["wave_vector_cycles_per_px"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "livesim-pattern-calibration", "parameters": {}}')
    result = runner.invoke(
        build_app(),
        ["reconstruct", str(tmp_path / "dim.npy"), "-o", str(tmp_path / "sr2.npy"), *optics,
         "--pattern-parameters", str(bad)],
    )
    assert result.exit_code == 2 and "bad.json" in result.output


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
                                         str(out), "--pixel-size-nm", "62.6", "--na", "1.35",
                                         "--wavelength-nm", "525"])
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (2, 128, 128)
        x_res = tif.pages[0].tags["XResolution"].value
    assert x_res[0] / x_res[1] == pytest.approx(1 / 0.0313, rel=1e-5)  # pixels per micron
    assert tiff_pixel_size_nm(out) == pytest.approx(31.3, rel=1e-5)
