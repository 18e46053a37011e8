"""The torch engine: CPU float32 (fused oneDNN convolutions) or bf16 (AMX where the CPU has
it; about 1e-2 from float32), or CUDA with bf16/fp16 autocast (FFT, abs, pow stay fp32),
optional CUDA-graph replay for fixed batch shapes, and optional `torch.compile`."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch

from inference.engines.base import BackendUnavailableError, Engine, as_numpy, as_torch
from inference.model_file import LoadedModel
from inference.models.dfcan import cpu_fusion_available, set_cpu_fusion

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine(Engine):
    """Eager PyTorch on CPU or CUDA."""

    backend = "torch"

    def __init__(
        self,
        model: LoadedModel,
        device: str = "cpu",
        precision: Precision = "fp32",
        cuda_graphs: bool = False,
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
        cpu_fusion: bool = True,
    ) -> None:
        """``compile_mode`` ('default', 'reduce-overhead', 'max-autotune-no-cudagraphs', ...)
        wraps the module in ``torch.compile`` (first call per shape compiles); with
        'reduce-overhead' inductor replays its own CUDA graphs, so ``cuda_graphs`` is dropped.
        On the CPU (float32) ``cpu_fusion`` runs channels-last with each convolution and its
        activation as one oneDNN call (same result to rounding; False: the plain layers)."""
        super().__init__(model, device)
        self.torch_device = torch.device(device)
        if self.torch_device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                "torch CUDA engine requested but no CUDA GPU is available"
            )
        if precision == "fp16" and self.torch_device.type != "cuda":
            raise BackendUnavailableError(
                f"precision {precision} is only offered on CUDA; use fp32 or bf16"
            )
        self.precision = precision
        self.module = model.module.to(self.torch_device).eval()
        self.cpu_fusion = (
            cpu_fusion and self.torch_device.type == "cpu" and compile_mode is None
            and precision == "fp32" and cpu_fusion_available()
        )
        set_cpu_fusion(self.module, self.cpu_fusion)
        self.channels_last = self.torch_device.type == "cuda" or self.cpu_fusion or (
            precision != "fp32"
        )
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.compile_mode = compile_mode
        self._forward_module: Any = self.module
        if compile_mode is not None:
            mode = compile_mode if compile_backend == "inductor" else None  # others take none
            self._forward_module = torch.compile(
                self.module, mode=mode, backend=compile_backend, dynamic=False
            )
            cuda_graphs = cuda_graphs and compile_mode != "reduce-overhead"
        self.cuda_graphs = cuda_graphs and self.torch_device.type == "cuda"
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    @property
    def description(self) -> str:
        graphs = "+graphs" if self.cuda_graphs else ""
        compiled = f"+compile({self.compile_mode})" if self.compile_mode is not None else ""
        fused = "+fused" if self.cpu_fusion else ""
        return f"torch:{self.device}:{self.precision}{graphs}{compiled}{fused}"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp32":
            return self._forward_module(x)  # type: ignore[no-any-return]
        with torch.autocast(device_type=self.torch_device.type, dtype=_AUTOCAST[self.precision]):
            return self._forward_module(x)  # type: ignore[no-any-return]

    def _graph_run(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - needs a GPU
        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            entry = (graph, static_in, static_out)
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out

    def run(self, batch: Any) -> np.ndarray:
        # torch.compile's guards fail on tensors made under inference_mode: no_grad there
        no_autograd = torch.no_grad() if self.compile_mode is not None else torch.inference_mode()
        with no_autograd:
            x = as_torch(batch, self.torch_device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._graph_run(x) if self.cuda_graphs else self._forward(x)
            return as_numpy(y.float()[:, 0])
