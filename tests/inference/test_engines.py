"""Engines: torch CPU, ONNX Runtime (vs torch within 1e-4), TensorRT/GPU skips and errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.engines import BackendUnavailableError, make_engine
from inference.engines.tensorrt_engine import engine_cache_key
from inference.engines.torch_engine import TorchEngine
from inference.model_file import LoadedModel, ModelInfo, weights_sha256
from inference.models import Dfcan, DfcanOptions
from inference.models.dfcan import cpu_fusion_available, set_cpu_fusion

TINY = {"width": 8, "groups": 1, "blocks": 2, "reduction": 4, "spectrum_size": 16}


def _tiny_model(seed: int = 0, **overrides: object) -> LoadedModel:
    torch.manual_seed(seed)
    module = Dfcan(DfcanOptions.model_validate({**TINY, **overrides})).eval()
    info = ModelInfo(
        name="tiny",
        architecture="dfcan",
        options=module.options.model_dump(),
        mode="sim",
        weights_sha256=weights_sha256(module.state_dict()),
    )
    return LoadedModel(info=info, module=module)


def _batch(n: int = 1, size: tuple[int, int] = (20, 24)) -> np.ndarray:
    return np.random.default_rng(3).random((n, 9, *size), dtype=np.float32)


def test_torch_cpu_engine_returns_float32_sr_batch() -> None:
    model = _tiny_model()
    engine = make_engine(model, backend="torch", device="cpu")
    x = _batch(2)
    y = engine.run(x)
    assert y.shape == (2, 40, 48) and y.dtype == np.float32
    set_cpu_fusion(model.module, False)
    with torch.no_grad():
        direct = model.module(torch.from_numpy(x))[:, 0].numpy()
    # channels-last, fused oneDNN convolutions: the same network to rounding
    assert np.abs(y - direct).max() < 1e-5
    fused = "+fused" if cpu_fusion_available() else ""
    assert engine.description == f"torch:cpu:fp32{fused}"
    plain = TorchEngine(model, "cpu", cpu_fusion=False)
    np.testing.assert_array_equal(plain.run(x), direct)
    assert plain.description == "torch:cpu:fp32"


@pytest.mark.parametrize("matmul", [False, True])
def test_onnxruntime_matches_torch(tmp_path: Path, matmul: bool) -> None:
    model = _tiny_model(seed=1)
    x = _batch(1, (20, 18))
    reference = make_engine(model, backend="torch", device="cpu").run(x)
    engine = make_engine(
        model, backend="onnxruntime", device="cpu", cache_dir=tmp_path, matmul_attention=matmul
    )
    y = engine.run(x)
    assert y.shape == reference.shape
    assert np.abs(y - reference).max() < 1e-4
    assert engine.description.endswith("matmul" if matmul else "fft")
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1 and model.sha256[:16] in exported[0].name
    # a second engine reuses the cached export for the same model and shape
    again = make_engine(
        model, backend="onnxruntime", device="cpu", cache_dir=tmp_path, matmul_attention=matmul
    )
    np.testing.assert_array_equal(again.run(x), y)
    assert len(list(tmp_path.glob("*.onnx"))) == 1


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT present")
def test_tensorrt_missing_is_reported_clearly() -> None:
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        make_engine(_tiny_model(), backend="tensorrt", device="cpu")


def test_bad_backend_and_device_are_named() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        make_engine(_tiny_model(), backend="openvino")
    with pytest.raises(ValueError, match="device must be"):
        make_engine(_tiny_model(), backend="torch", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
            make_engine(_tiny_model(), backend="torch", device="cuda")
        with pytest.raises(BackendUnavailableError, match="only offered on CUDA"):
            make_engine(_tiny_model(), backend="torch", device="cpu", precision="fp16")


def test_torch_cpu_bf16_is_close_to_fp32() -> None:
    x = _batch(1)
    reference = make_engine(_tiny_model(seed=5), backend="torch", device="cpu").run(x)
    engine = make_engine(_tiny_model(seed=5), backend="torch", device="cpu", precision="bf16")
    assert engine.description == "torch:cpu:bf16"
    y = engine.run(x)
    assert y.dtype == np.float32 and 0 < np.abs(y - reference).max() < 5e-2


def test_engine_cache_key_separates_gpu_version_model_and_shape() -> None:
    key = engine_cache_key("NVIDIA H100 80GB HBM3", "10.9.0", "ab" * 32, (1, 9, 512, 512), "fp16")
    assert key == "NVIDIA-H100-80GB-HBM3_trt10.9.0_abababababababab_1x9x512x512_fp16"
    assert key != engine_cache_key("NVIDIA H200", "10.9.0", "ab" * 32, (1, 9, 512, 512), "fp16")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_torch_cuda_matches_cpu(precision: str) -> None:
    model = _tiny_model(seed=2)
    x = _batch(2)
    reference = make_engine(model, backend="torch", device="cpu").run(x)
    gpu = make_engine(_tiny_model(seed=2), backend="torch", device="cuda", precision=precision)
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert np.abs(gpu.run(x) - reference).max() < tolerance
    np.testing.assert_array_equal(gpu.run(x), gpu.run(x))  # CUDA-graph replay is repeatable


@pytest.mark.gpu
def test_tensorrt_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    model = _tiny_model(seed=4)
    x = _batch(1, (32, 32))
    reference = make_engine(model, backend="torch", device="cpu").run(x)
    engine = make_engine(_tiny_model(seed=4), backend="tensorrt", device="cuda", cache_dir=tmp_path)
    assert np.abs(engine.run(x) - reference).max() < 2e-2


def test_benchmark_rows_for_available_and_missing_backends(tmp_path: Path) -> None:
    from acquisition.cli.bench.engines import run_inference_benchmark
    from inference.model_file import save_model

    model = _tiny_model()
    path = tmp_path / "tiny.pt"
    save_model(path, model.module, architecture="dfcan", mode="sim")
    rows = run_inference_benchmark(
        sizes=[16, 24],
        backends=["torch", "tensorrt"],
        models=[str(path)],
        device="cpu",
        iterations=2,
        budget_s=5.0,
    )
    torch_rows = [r for r in rows if r.engine.startswith("torch")]
    assert [r.size for r in torch_rows] == [16, 24]
    for row in torch_rows:
        assert row.runs >= 1 and row.latency_ms is not None and row.latency_ms > 0
        assert row.frames_per_s == pytest.approx(1000.0 / row.latency_ms)
    if importlib.util.find_spec("tensorrt") is None:
        missing = [r for r in rows if r.engine == "tensorrt"]
        assert len(missing) == 2 and all("not installed" in r.note for r in missing)
        assert all(r.latency_ms is None for r in missing)
