"""Inference engines behind one interface: torch (CPU/CUDA), ONNX Runtime, TensorRT."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from inference.engines.base import BackendUnavailableError, Engine, set_matmul_attention
from inference.model_file import LoadedModel

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a CUDA GPU is present, else 'cpu'; others pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(f"device {device!r} requested but no CUDA GPU is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


def make_engine(
    model: LoadedModel,
    backend: str = "auto",
    device: str = "auto",
    precision: str | None = None,
    cache_dir: Path | None = None,
    matmul_attention: bool = False,
) -> Engine:
    """Build an engine; 'auto' prefers TensorRT, then torch, on CUDA, and torch on the CPU.

    Raises BackendUnavailableError (naming what is missing) for an explicit backend that cannot run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = resolve_device(device)
    on_gpu = device.startswith("cuda")
    if backend == "auto":
        if on_gpu:
            try:
                return make_engine(model, "tensorrt", device, precision, cache_dir)
            except BackendUnavailableError as exc:
                log.info("TensorRT not used: %s; using torch CUDA", exc)
        backend = "torch"
    if backend == "torch":
        from inference.engines.torch_engine import TorchEngine

        set_matmul_attention(model.module, matmul_attention)
        chosen = precision or ("bf16" if on_gpu else "fp32")
        if chosen not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {chosen!r}")
        return TorchEngine(model, device, chosen, cuda_graphs=on_gpu)  # type: ignore[arg-type]
    if backend == "onnxruntime":
        from inference.engines.onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model, device, cache_dir, matmul_attention)
    from inference.engines.tensorrt_engine import TensorRtEngine

    return TensorRtEngine(model, device, precision or "fp16", cache_dir)


__all__ = ["BACKENDS", "BackendUnavailableError", "Engine", "make_engine", "resolve_device"]
