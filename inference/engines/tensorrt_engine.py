"""TensorRT engine built from the ONNX export (strongly typed networks, TensorRT >= 10).

Serialized engines are cached by GPU name, TensorRT version, model SHA-256, input shape and
precision. Not installed on the development machine: `make_engine` reports that clearly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.engines.base import BackendUnavailableError, Engine, as_numpy, as_torch
from inference.engines.onnx_engine import export_with_fallback
from inference.model_file import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "livesim" / "tensorrt"


def import_tensorrt() -> Any:
    """The tensorrt module, or BackendUnavailableError saying why not."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed (pip install 'livesim[gpu]' on a CUDA machine)"
        ) from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT needs a CUDA GPU; none is available")
    return tensorrt


def engine_cache_key(
    gpu_name: str, trt_version: str, model_sha256: str, shape: tuple[int, ...], precision: str
) -> str:
    """File-name-safe cache key: GPU, TensorRT version, model hash, shape, precision."""
    gpu = "".join(c if c.isalnum() else "-" for c in gpu_name)
    dims = "x".join(str(d) for d in shape)
    return f"{gpu}_trt{trt_version}_{model_sha256[:16]}_{dims}_{precision}"


class TensorRtEngine(Engine):  # pragma: no cover - needs TensorRT and a GPU
    """TensorRT execution of the ONNX export, one engine per input shape."""

    backend = "tensorrt"

    def __init__(
        self,
        model: LoadedModel,
        device: str = "cuda",
        precision: str = "fp16",
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(model, device)
        self.trt = import_tensorrt()
        self.precision = precision
        self.cache_dir = cache_dir or DEFAULT_CACHE
        self.torch_device = torch.device(device)
        self._contexts: dict[tuple[int, ...], tuple[Any, Any]] = {}
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)

    @property
    def description(self) -> str:
        return f"tensorrt:{self.device}:{self.precision}"

    def _build(self, shape: tuple[int, int, int, int]) -> bytes:
        trt = self.trt
        onnx_path, _ = export_with_fallback(self.model, shape, self.cache_dir, prefer_matmul=False)
        builder = trt.Builder(self._logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {self.model.name} {shape}")
        return bytes(serialized)

    def _context(self, shape: tuple[int, int, int, int]) -> tuple[Any, Any]:
        entry = self._contexts.get(shape)
        if entry is not None:
            return entry
        key = engine_cache_key(
            torch.cuda.get_device_name(self.torch_device),
            self.trt.__version__,
            self.model.sha256,
            shape,
            self.precision,
        )
        path = self.cache_dir / f"{key}.engine"
        if path.is_file():
            blob = path.read_bytes()
        else:
            blob = self._build(shape)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            log.info("cached TensorRT engine %s", path)
        engine = self.trt.Runtime(self._logger).deserialize_cuda_engine(blob)
        entry = (engine, engine.create_execution_context())
        self._contexts[shape] = entry
        return entry

    def run(self, batch: Any) -> np.ndarray:
        x = as_torch(batch, self.torch_device).contiguous()
        shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        engine, context = self._context(shape)
        scale = int(self.model.info.options.get("scale", 2))
        out = torch.empty(
            (shape[0], 1, shape[2] * scale, shape[3] * scale),
            device=self.torch_device,
            dtype=torch.float32,
        )
        context.set_tensor_address(engine.get_tensor_name(0), x.data_ptr())
        context.set_tensor_address(engine.get_tensor_name(1), out.data_ptr())
        stream = torch.cuda.current_stream(self.torch_device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return as_numpy(out[:, 0])
