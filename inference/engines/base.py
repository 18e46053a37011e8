"""The one Engine interface: a batch of normalised inputs in, SR images out (NumPy float32)."""

from __future__ import annotations

import abc
import logging
from typing import Any

import numpy as np
import torch

from inference.model_file import LoadedModel

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (not installed, or no GPU); the message says why."""


class Engine(abc.ABC):
    """Runs one model on (N, C, H, W) float32 batches and returns (N, sH, sW) float32."""

    backend: str = "?"

    def __init__(self, model: LoadedModel, device: str) -> None:
        self.model = model
        self.device = device

    @property
    def description(self) -> str:
        """Backend, device and precision, for logs and benchmark tables."""
        return f"{self.backend}:{self.device}"

    @abc.abstractmethod
    def run(self, batch: Any) -> np.ndarray:
        """(N, C, H, W) float32 (NumPy, CuPy or torch) -> (N, sH, sW) float32 NumPy array."""


def as_torch(batch: Any, device: torch.device) -> torch.Tensor:
    """NumPy / CuPy / torch array -> float32 torch tensor on `device` (DLPack for CuPy)."""
    if isinstance(batch, torch.Tensor):
        tensor = batch
    elif isinstance(batch, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    else:
        tensor = torch.from_dlpack(batch)
    if tensor.ndim != 4:
        raise ValueError(f"engine input must be (N, C, H, W), got shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float32, non_blocking=True)


def as_numpy(batch: Any) -> np.ndarray:
    """NumPy / CuPy / torch array -> contiguous float32 NumPy array (on the host)."""
    if isinstance(batch, torch.Tensor):
        return batch.detach().cpu().numpy().astype(np.float32, copy=False)
    if isinstance(batch, np.ndarray):
        return np.ascontiguousarray(batch, dtype=np.float32)
    get = getattr(batch, "get", None)
    if get is not None:
        return np.ascontiguousarray(get(), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(batch), dtype=np.float32)


def set_matmul_attention(module: torch.nn.Module, enabled: bool) -> None:
    """Switch every Fourier channel attention between torch.fft and DFT-as-matmul."""
    from inference.models.dfcan import FourierChannelAttention

    for sub in module.modules():
        if isinstance(sub, FourierChannelAttention):
            sub.use_matmul = enabled
