"""Model files: a `.pt` holding only tensors and plain types (safe `weights_only` loading).

A model file carries the architecture name and options, the acquisition mode it expects
(sisr: one wide-field image; sim: 9 raw frames; nlsim: 25 raw frames; imc: an SR image), the
input normalisation, and a SHA-256 of the weights that is checked on every load.
Bundled models live in `inference/bundled/<name>.pt`.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from inference.domain import ModelDomain, Range
from inference.models import build_model, validate_options
from settings_file import StrictModel

log = logging.getLogger(__name__)

FORMAT_NAME = "livesim-model"
FORMAT_VERSION = 1
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_NAMES = ("dfcan-sim", "dfcan-sisr", "dfgan-sim", "imcsr")
Mode = Literal["sisr", "sim", "nlsim", "imc"]
FRAMES_PER_MODE = {"sisr": 1, "sim": 9, "nlsim": 25, "imc": 1}


class ModelFileError(ValueError):
    """A model file that cannot be used (names the file and what is wrong)."""


class Normalisation(StrictModel):
    """Input normalisation: percentile min-max over the whole input stack, clipped to [0, 1].

    The authors' `prctile_norm`: (x - p_low) / (p_high - p_low + 1e-7) with p = 0 and 100 (the
    default, kept for their converted weights). With p = 0 and 100 one outlier pixel sets the
    scale of the whole set; `ROBUST_NORMALISATION` is what livesim trains and bundles with.
    """

    kind: Literal["min_max", "none"] = "min_max"
    low_pct: float = Field(default=0.0, ge=0, le=100)
    high_pct: float = Field(default=100.0, ge=0, le=100)
    epsilon: float = Field(default=1e-7, ge=0)
    clip: bool = True


ROBUST_NORMALISATION = Normalisation(low_pct=0.1, high_pct=99.99)
"""Bundled and newly trained SR networks: a single cold or hot pixel (read-noise tail, defect)
no longer compresses the contrast of the whole set (docs/assessment.md: on the real microtubule
stack one -40 e- pixel widened the network's filaments from 121 to 139 nm)."""


class ModelInfo(StrictModel):
    """Everything about a model except its weights."""

    name: str
    architecture: str
    options: dict[str, Any]
    mode: Mode
    normalisation: Normalisation = Normalisation()
    weights_sha256: str
    source: str = ""
    domain: ModelDomain | None = None
    imc_unexplained_limit: float | None = Field(
        default=None, gt=0, description="IMC-SR: unexplained fraction above which the live "
        "separator flags a frame, measured for this model (inference.imc.domain_limit)")
    imc_channel_shares: list[Range] | None = Field(
        default=None, description="IMC-SR: range of each output channel's share of the "
        "separated signal on in-domain input; a frame outside is flagged")

    @property
    def input_frames(self) -> int:
        """Raw frames per SIM set this model consumes (1 for SISR: the wide-field mean)."""
        return FRAMES_PER_MODE[self.mode]


@dataclass
class LoadedModel:
    """A ready network (eval mode) and its description."""

    info: ModelInfo
    module: nn.Module

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sha256(self) -> str:
        return self.info.weights_sha256


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, dtypes, shapes and raw bytes, in sorted name order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode("utf-8"))
        digest.update(str(tensor.dtype).encode("ascii"))
        digest.update(str(tuple(tensor.shape)).encode("ascii"))
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _plain_options(module: nn.Module, options: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    if options is None:
        options = getattr(module, "options", None)
    if options is None:
        raise ModelFileError("save_model needs options (the module has no .options attribute)")
    raw = options.model_dump(mode="json") if isinstance(options, BaseModel) else dict(options)
    return raw


def save_model(
    path: str | Path,
    module: nn.Module,
    *,
    architecture: str,
    mode: Mode,
    name: str | None = None,
    options: BaseModel | dict[str, Any] | None = None,
    normalisation: Normalisation | None = None,
    source: str = "",
    domain: ModelDomain | None = None,
    imc_unexplained_limit: float | None = None,
    imc_channel_shares: list[Range] | None = None,
) -> ModelInfo:
    """Write `module`'s weights with its description to `path`; return the description."""
    path = Path(path)
    plain = _plain_options(module, options)
    validate_options(architecture, plain)
    info = ModelInfo(
        name=name or path.stem,
        architecture=architecture,
        options=plain,
        mode=mode,
        normalisation=normalisation or Normalisation(),
        weights_sha256="",  # set from the weights written
        source=source,
        domain=domain,
        imc_unexplained_limit=imc_unexplained_limit,
        imc_channel_shares=imc_channel_shares,
    )
    return write_model_file(path, module, info)


def write_model_file(path: str | Path, module: nn.Module, info: ModelInfo) -> ModelInfo:
    """Write `module`'s weights with the description `info` (its weights SHA-256 replaced by
    that of the weights written) to `path`; return the description written. A model file
    re-written with one field changed: `write_model_file(out, loaded.module,
    loaded.info.model_copy(update={...}))`."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    # validated again: a description changed with model_copy(update=...) is not
    info = ModelInfo.model_validate({**info.model_dump(), "weights_sha256": weights_sha256(state)})
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "info": info.model_dump(mode="json"),
        "state_dict": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    log.info("saved model %s (%s, %s) sha256 %s", path, info.architecture, info.mode,
             info.weights_sha256)
    return info


def bundled_models() -> list[str]:
    """Bundled model names that are present in inference/bundled."""
    return [name for name in BUNDLED_NAMES if (BUNDLED_DIR / f"{name}.pt").is_file()]


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A bundled name -> its file; otherwise the path itself (which must exist)."""
    text = str(name_or_path)
    if text in BUNDLED_NAMES:
        path = BUNDLED_DIR / f"{text}.pt"
        if not path.is_file():
            raise ModelFileError(
                f"bundled model {text!r} is not installed ({path} is missing); "
                f"present: {bundled_models() or 'none'}"
            )
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise ModelFileError(
            f"model {text!r} is neither a bundled name ({', '.join(BUNDLED_NAMES)}) nor a file"
        )
    return path


def load_torch_payload(path: Path, format_name: str, version: int, what: str,
                       error: type[Exception]) -> dict[str, Any]:
    """The dict a livesim `.pt` file holds (model or checkpoint), loaded with
    ``weights_only=True``; `error` names the file when it is unsafe, foreign or of another
    format version."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise error(f"{path}: not a {what} loadable with weights_only=True (only tensors and "
                    f"plain types are allowed): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != format_name:
        raise error(f"{path}: not a {what} (missing format={format_name!r})")
    if payload.get("format_version") != version:
        raise error(f"{path}: {what} format_version {payload.get('format_version')!r} is not "
                    f"{version}")
    return payload


def read_model_file(path: str | Path) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    """Load and validate a model file's description and weights (safe loading only)."""
    path = Path(path)
    payload = load_torch_payload(path, FORMAT_NAME, FORMAT_VERSION, "livesim model file",
                                 ModelFileError)
    try:
        info = ModelInfo.model_validate(payload.get("info"))
    except ValidationError as exc:
        raise ModelFileError(f"{path}: invalid model description: {exc}") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: 'state_dict' must map names to tensors")
    actual = weights_sha256(state)
    if actual != info.weights_sha256:
        raise ModelFileError(
            f"{path}: weights SHA-256 {actual} does not match the recorded {info.weights_sha256}"
        )
    return info, state


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a bundled model by name or a model file by path, ready for inference (eval mode)."""
    path = resolve_model_path(name_or_path)
    info, state = read_model_file(path)
    try:
        module = build_model(info.architecture, info.options)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit {info.architecture}: {exc}") from exc
    module.eval().to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(info=info, module=module)
