"""`livesim convert-weights` and `livesim predict` end to end through the real CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from acquisition.cli import build_app
from inference.model_file import load_model, save_model
from inference.models import Dfcan, DfcanOptions

TINY = {"width": 8, "groups": 1, "blocks": 1, "reduction": 4, "spectrum_size": 16}
runner = CliRunner()


def _invoke(*args: str) -> str:
    result = runner.invoke(build_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


# The CPU engine runs channels-last with fused oneDNN convolutions: the plain layers' result
# to rounding, so outputs are compared with this tolerance (SR values lie in (0, 1)).
ENGINE_ATOL = 1e-5


def _forward(model_path: Path, x: np.ndarray) -> np.ndarray:
    module = load_model(model_path).module
    with torch.no_grad():
        return module(torch.from_numpy(x.astype(np.float32))[None])[0, 0].numpy()


def _norm(stack: np.ndarray) -> np.ndarray:
    s = stack.astype(np.float64)
    return (s - s.min()) / (s.max() - s.min() + 1e-7)


@pytest.fixture()
def sim_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny_sim.pt"
    save_model(path, Dfcan(DfcanOptions(**TINY)), architecture="dfcan", mode="sim")
    return path


def test_predict_sim_single_set_to_tif(tmp_path: Path, sim_model: Path) -> None:
    raw = (np.random.default_rng(0).poisson(300, (9, 16, 16)) + 100).astype(np.uint16)
    np.save(tmp_path / "raw.npy", raw)
    _invoke("predict", tmp_path / "raw.npy", "--model", sim_model, "--output", tmp_path / "o.tif")
    out = tifffile.imread(tmp_path / "o.tif")
    assert out.shape == (32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, _forward(sim_model, _norm(raw)), atol=ENGINE_ATOL, rtol=0)


def test_predict_time_series_gives_t_by_2h_by_2w(tmp_path: Path, sim_model: Path) -> None:
    raw = (np.random.default_rng(1).poisson(300, (3, 9, 12, 16)) + 100).astype(np.uint16)
    np.save(tmp_path / "raw.npy", raw)
    _invoke("predict", tmp_path / "raw.npy", "-m", sim_model, "-o", tmp_path / "o.npy")
    out = np.load(tmp_path / "o.npy")
    assert out.shape == (3, 24, 32) and out.dtype == np.float32
    for t in range(3):  # each time point normalised on its own
        np.testing.assert_allclose(out[t], _forward(sim_model, _norm(raw[t])), atol=ENGINE_ATOL,
                                   rtol=0)


def test_predict_reports_bad_input_clearly(tmp_path: Path, sim_model: Path) -> None:
    np.save(tmp_path / "raw.npy", np.zeros((4, 8, 8), dtype=np.uint16))
    result = runner.invoke(
        build_app(), ["predict", str(tmp_path / "raw.npy"), "-m", str(sim_model), "-o", "x.npy"]
    )
    assert result.exit_code == 2
    assert "not a whole number of 9-pattern sets" in result.output


def test_convert_then_predict_sisr_crop_from_mrc(tmp_path: Path, dlsr_assets: Path) -> None:
    out = _invoke(
        "convert-weights",
        dlsr_assets / "dfcan_sisr_random_weights.h5",
        "--arch",
        "dfcan",
        "--input-channels",
        "1",
        "--output",
        tmp_path / "sisr.pt",
    )
    assert "1,930,753 parameters" in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(dlsr_assets / "rDL-SIM_Microtubules_MT_raw9.mrc", permissive=True) as f:
            crop = np.asarray(f.data)[:, 64:96, 96:128].copy()
    tifffile.imwrite(tmp_path / "crop.tif", crop)
    _invoke("predict", tmp_path / "crop.tif", "-m", tmp_path / "sisr.pt", "-o", tmp_path / "o.npy")
    got = np.load(tmp_path / "o.npy")
    wf = crop.astype(np.float64).mean(axis=0, keepdims=True)
    np.testing.assert_allclose(got, _forward(tmp_path / "sisr.pt", _norm(wf)), atol=1e-6)
    assert got.shape == (64, 64)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_predict_full_mrc_with_converted_dfcan_sim(tmp_path: Path, dlsr_assets: Path) -> None:
    _invoke(
        "convert-weights",
        dlsr_assets / "dfcan_sim_random_weights.h5",
        "--arch",
        "dfcan",
        "--input-channels",
        "9",
        "--output",
        tmp_path / "sim.pt",
    )
    mrc = dlsr_assets / "rDL-SIM_Microtubules_MT_raw9.mrc"
    _invoke("predict", mrc, "-m", tmp_path / "sim.pt", "-o", tmp_path / "o.npy")
    got = np.load(tmp_path / "o.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(mrc, permissive=True) as f:
            frames = np.asarray(f.data)
    assert got.shape == (512, 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, _forward(tmp_path / "sim.pt", _norm(frames)),
                               atol=ENGINE_ATOL, rtol=0)
