"""Reconstructors: model files, Wiener, wide-field, passthrough; provenance and NaN flagging."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.model_file import ModelFileError, save_model
from inference.models import Dfcan, DfcanOptions
from inference.preprocessing import FLAG_NON_FINITE_OUTPUT
from inference.reconstruction import SrResult, make_reconstructor

TINY = {"width": 8, "groups": 1, "blocks": 1, "reduction": 4, "spectrum_size": 16}


@dataclass
class Calibration:
    offset_adu: np.ndarray
    gain_adu_per_e: np.ndarray
    defect_mask: np.ndarray | None = None


def _model_file(tmp_path: Path, channels: int = 9, mode: str = "sim", nan: bool = False) -> Path:
    torch.manual_seed(0)
    module = Dfcan(DfcanOptions(**TINY, input_channels=channels))
    if nan:
        with torch.no_grad():
            module.tail.bias.fill_(float("nan"))
    path = tmp_path / f"tiny_{mode}.pt"
    save_model(path, module, architecture="dfcan", mode=mode)  # type: ignore[arg-type]
    return path


def _raw(seed: int = 0, shape: tuple[int, ...] = (9, 16, 20)) -> np.ndarray:
    return (100 + np.random.default_rng(seed).poisson(80, shape)).astype(np.uint16)


def test_model_reconstructor_result_and_provenance(tmp_path: Path) -> None:
    path = _model_file(tmp_path)
    recon = make_reconstructor(str(path), device="cpu")
    raw = _raw()
    result = recon.reconstruct(raw)
    assert isinstance(result, SrResult)
    assert result.image.shape == (32, 40) and result.image.dtype == np.float32
    assert result.model_name == "tiny_sim" and len(result.model_sha256) == 64
    assert set(result.timings_ms) == {"preprocess", "inference", "total"}
    assert math.isnan(result.photon_count_e) and result.flags == []
    x = (raw - raw.min()) / (raw.max() - raw.min() + 1e-7)
    torch.manual_seed(0)
    module = Dfcan(DfcanOptions(**TINY)).eval()
    with torch.no_grad():
        direct = module(torch.from_numpy(x.astype(np.float32))[None])[0, 0].numpy()
    np.testing.assert_allclose(result.image, direct, atol=1e-6)


def test_batch_equals_one_by_one(tmp_path: Path) -> None:
    recon = make_reconstructor(str(_model_file(tmp_path)), device="cpu")
    raws = [_raw(1), _raw(2) * 3]
    batch = recon.reconstruct_batch(raws)
    for raw, result in zip(raws, batch, strict=True):
        np.testing.assert_allclose(result.image, recon.reconstruct(raw).image, atol=1e-6)


def test_non_finite_output_is_flagged_never_silent(tmp_path: Path) -> None:
    recon = make_reconstructor(str(_model_file(tmp_path, nan=True)), device="cpu")
    result = recon.reconstruct(_raw())
    assert FLAG_NON_FINITE_OUTPUT in result.flags
    assert np.isfinite(result.image).all()


def test_calibrated_photon_count_reaches_the_result(tmp_path: Path) -> None:
    shape = (9, 32, 32)
    cal = Calibration(np.full(shape[1:], 100.0), np.full(shape[1:], 2.0))
    recon = make_reconstructor(str(_model_file(tmp_path)), calibration=cal, device="cpu")
    result = recon.reconstruct(_raw(3, shape))
    assert 30 < result.photon_count_e < 50  # ~80 ADU above offset at 2 ADU/e


def test_mode_checks_and_missing_models(tmp_path: Path) -> None:
    path = _model_file(tmp_path, channels=1, mode="sisr")
    with pytest.raises(ValueError, match="is a sisr model but mode 'sim'"):
        make_reconstructor(str(path), mode="sim")
    sisr = make_reconstructor(str(path), mode="sisr", device="cpu")
    assert sisr.reconstruct(_raw()).image.shape == (32, 40)  # wide-field mean of 9 frames
    with pytest.raises(ModelFileError, match="neither a bundled name"):
        make_reconstructor(str(tmp_path / "nope.pt"))


def test_wide_field_and_passthrough() -> None:
    raw = _raw(4)
    wf = make_reconstructor("none").reconstruct(raw)
    mean = raw.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(wf.image, (mean - mean.min()) / np.ptp(mean), atol=1e-6)
    assert wf.model_name == "none"
    passthrough = make_reconstructor("passthrough").reconstruct(raw)
    assert passthrough.image.shape == (32, 40) and not passthrough.image.any()
    nl = make_reconstructor("passthrough", mode="nlsim").reconstruct(_raw(shape=(25, 8, 8)))
    assert nl.image.shape == (24, 24)


def test_wiener_estimates_once_and_reuses_parameters() -> None:
    from sim_emulator.microscope import EmulatorConfig, Microscope

    microscope = Microscope(EmulatorConfig(size_px=64, seed=1))
    recon = make_reconstructor("wiener", pixel_size_nm=62.6)
    first = recon.reconstruct(microscope.render_set(0.0))
    engine = recon._engine  # type: ignore[attr-defined]
    second = recon.reconstruct(microscope.render_set(0.1))
    assert recon._engine is engine  # type: ignore[attr-defined]
    assert first.image.shape == second.image.shape == (128, 128)
    assert first.model_name == "wiener" and first.image.max() == pytest.approx(1.0, abs=1e-6)


def test_wiener_results_carry_the_pattern_they_used() -> None:
    """Every Wiener result has its (n_orientations, 4) sim parameters (for /sim_params) and
    travels on the wire with them; an unreliable fit is flagged."""
    from inference.reconstruction import FLAG_PATTERN_FIT_UNRELIABLE, make_reconstructor
    from inference.worker import result_info
    from sim_emulator.microscope import EmulatorConfig, Microscope

    scope = Microscope(EmulatorConfig(size_px=64, photon_count_e=300.0, seed=3))
    wiener = make_reconstructor("wiener")
    first, second = wiener.reconstruct_batch([scope.render_set(0.0), scope.render_set(0.1)])
    for result in (first, second):
        assert result.sim_parameters is not None and result.sim_parameters.shape == (3, 4)
        assert np.isfinite(result.sim_parameters).all()
    # geometry fixed after the first set, phases refined on the second
    np.testing.assert_array_equal(first.sim_parameters[:, [0, 1, 3]],
                                  second.sim_parameters[:, [0, 1, 3]])
    info = result_info(second)
    np.testing.assert_allclose(info["sim_params"], second.sim_parameters)
    from pydantic import ValidationError

    from acquisition.wire import ResultInfo

    ResultInfo.model_validate(info)  # the wire's strict schema accepts it
    with pytest.raises(ValidationError):
        ResultInfo.model_validate({**info, "sim_params": [[0.1, 0.2, 0.3]]})
    dark = make_reconstructor("wiener").reconstruct(np.full((9, 64, 64), 100, np.uint16))
    assert FLAG_PATTERN_FIT_UNRELIABLE in dark.flags
