"""ONNX export (dynamo exporter; DFT-as-matmul attention as the fallback) and ONNX Runtime.

Exports are fixed-shape (the TF1 spectrum resize taps depend on the image size) and cached
by the model's full SHA-256, the exporter (torch, onnx, onnxscript versions and opset), input
shape and attention variant. Beside each cached ``.onnx`` a ``.json`` manifest records that
key and the export's own SHA-256; a cached file is used only when its manifest matches and
its bytes hash to the recorded value, otherwise it is exported again (written to a temporary
name and renamed, so an interrupted export never leaves a file that looks complete).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.engines.base import (
    BackendUnavailableError,
    Engine,
    as_numpy,
    set_matmul_attention,
)
from inference.file_hash import file_sha256
from inference.model_file import LoadedModel
from inference.models.dfcan import set_cpu_fusion

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "livesim" / "onnx"


OPSET = 20


def exporter_version() -> str:
    """The versions that decide what an export contains: torch, onnx, onnxscript, opset."""
    parts = [f"torch-{torch.__version__}"]
    for package in ("onnx", "onnxscript"):
        try:
            parts.append(f"{package}-{importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package}-none")
    return "_".join(parts) + f"_opset{OPSET}"


def onnx_path_for(
    model: LoadedModel, shape: tuple[int, ...], matmul: bool, cache_dir: Path
) -> Path:
    """Cache file name: full model hash, exporter version, input shape, attention variant."""
    dims = "x".join(str(d) for d in shape)
    variant = "matmul" if matmul else "fft"
    exporter = hashlib.sha256(exporter_version().encode()).hexdigest()[:12]
    return cache_dir / f"{model.sha256}_{exporter}_{dims}_{variant}.onnx"


def _manifest(model: LoadedModel, shape: tuple[int, ...], matmul: bool) -> dict[str, Any]:
    return {"model_sha256": model.sha256, "exporter": exporter_version(),
            "shape": list(shape), "variant": "matmul" if matmul else "fft"}


def verified_cached_export(
    model: LoadedModel, shape: tuple[int, ...], matmul: bool, cache_dir: Path
) -> Path | None:
    """The cached export if its manifest matches this model and exporter and its bytes are
    intact; None (after logging why) when it must be exported again."""
    path = onnx_path_for(model, shape, matmul, cache_dir)
    if not path.is_file():
        return None
    manifest_path = path.with_suffix(".json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        recorded = manifest.pop("onnx_sha256")
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        log.warning("ONNX cache %s has no valid manifest (%s); exporting again", path, exc)
        return None
    if manifest != _manifest(model, shape, matmul):
        log.warning("ONNX cache %s was made for %s; exporting again", path, manifest)
        return None
    actual = file_sha256(path)
    if actual != recorded:
        log.warning("ONNX cache %s is corrupt (sha256 %s, manifest %s); exporting again",
                    path, actual[:16], str(recorded)[:16])
        return None
    return path


def export_onnx(
    model: LoadedModel,
    shape: tuple[int, int, int, int],
    path: Path,
    matmul_attention: bool = False,
) -> Path:
    """Export the model for one input shape with the dynamo exporter (opset 20)."""
    module = model.module.cpu().eval()
    set_matmul_attention(module, matmul_attention)
    set_cpu_fusion(module, False)  # the exporter traces plain layers, not oneDNN calls
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    example = torch.zeros(shape, dtype=torch.float32)
    for noisy in ("onnx_ir", "onnxscript"):  # one INFO line per folded initializer otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        torch.onnx.export(
            module,
            (example,),
            str(partial),
            dynamo=True,
            opset_version=OPSET,
            input_names=["raw"],
            output_names=["sr"],
            verbose=False,
        )
        manifest = {**_manifest(model, shape, matmul_attention),
                    "onnx_sha256": file_sha256(partial)}
        path.with_suffix(".json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        partial.replace(path)  # atomic: a reader sees the whole export or none
    finally:
        set_matmul_attention(module, False)
        partial.unlink(missing_ok=True)
    log.info(
        "exported %s for input %s (%s attention) to %s",
        model.name,
        shape,
        "matmul" if matmul_attention else "fft",
        path,
    )
    return path


def export_with_fallback(
    model: LoadedModel, shape: tuple[int, int, int, int], cache_dir: Path, prefer_matmul: bool
) -> tuple[Path, bool]:
    """Export (or reuse a cached export); on failure with fft2, retry with DFT-as-matmul."""
    variants = [True] if prefer_matmul else [False, True]
    errors = []
    for matmul in variants:
        cached = verified_cached_export(model, shape, matmul, cache_dir)
        if cached is not None:
            return cached, matmul
        path = onnx_path_for(model, shape, matmul, cache_dir)
        try:
            return export_onnx(model, shape, path, matmul), matmul
        except Exception as exc:  # the exporter raises many types; all are reported
            errors.append(f"{'matmul' if matmul else 'fft'}: {type(exc).__name__}: {exc}")
            log.warning("ONNX export failed (%s); trying the next variant", errors[-1])
    raise RuntimeError(f"ONNX export of {model.name} failed: {'; '.join(errors)}")


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime with the CUDA provider when present, else the CPU provider."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: LoadedModel,
        device: str = "cpu",
        cache_dir: Path | None = None,
        matmul_attention: bool = False,
        threads: int | None = None,
    ) -> None:
        super().__init__(model, device)
        try:
            import onnxruntime
        except ImportError as exc:
            raise BackendUnavailableError(
                "ONNX Runtime is not installed (pip install 'livesim[onnx]')"
            ) from exc
        self._ort = onnxruntime
        available = onnxruntime.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise BackendUnavailableError(
                    f"ONNX Runtime has no CUDA provider here (available: {available})"
                )
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            self.providers = ["CPUExecutionProvider"]
        self.cache_dir = cache_dir or DEFAULT_CACHE
        self.prefer_matmul = matmul_attention
        self.threads = threads if threads is not None else torch.get_num_threads()
        self._sessions: dict[tuple[int, ...], Any] = {}
        self.variant = "matmul" if matmul_attention else "fft"

    @property
    def description(self) -> str:
        return f"onnxruntime:{self.device}:{self.variant}"

    def session_for(self, shape: tuple[int, int, int, int]) -> Any:
        """The (cached) inference session for one input shape."""
        session = self._sessions.get(shape)
        if session is None:
            path, matmul = export_with_fallback(
                self.model, shape, self.cache_dir, self.prefer_matmul
            )
            self.variant = "matmul" if matmul else "fft"
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            session = self._ort.InferenceSession(
                str(path), sess_options=options, providers=self.providers
            )
            self._sessions[shape] = session
        return session

    def run(self, batch: Any) -> np.ndarray:
        x = as_numpy(batch)
        if x.ndim != 4:
            raise ValueError(f"engine input must be (N, C, H, W), got shape {x.shape}")
        shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        session = self.session_for(shape)
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        return np.ascontiguousarray(y[:, 0], dtype=np.float32)
