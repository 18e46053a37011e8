"""Raw SIM sets -> model inputs: ADU -> photo-electrons, hot-pixel repair, photon count (e-),
the model's normalisation, batching; and SR output -> the recorded dtype.

One implementation over an array module: CuPy arrays on a GPU (when CuPy is installed),
NumPy otherwise. Inputs that would give meaningless or non-finite results are flagged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from inference.model_file import FRAMES_PER_MODE, Normalisation
from settings_file import StrictModel

log = logging.getLogger(__name__)

FLAG_SATURATED = "saturated"
FLAG_ALL_ZERO = "all_zero"
FLAG_CONSTANT = "constant_input"
FLAG_NON_FINITE_INPUT = "non_finite_input"
FLAG_NON_FINITE_OUTPUT = "non_finite_output"


class CalibrationMaps(Protocol):
    """What preprocessing needs from `calibration.camera_calibration.CameraCalibration`
    (read-only: frozen calibration records satisfy it too)."""

    @property
    def offset_adu(self) -> np.ndarray: ...

    @property
    def gain_adu_per_e(self) -> np.ndarray: ...

    @property
    def defect_mask(self) -> np.ndarray | None: ...


class PreprocessOptions(StrictModel):
    """Preprocessing settings (TOML-loadable)."""

    saturation_adu: int = Field(default=65535, ge=1, le=65535)
    repair_defects: bool = True
    to_electrons: bool = True


def array_module(device: str = "cpu") -> ModuleType:
    """CuPy for a CUDA device when it is installed, NumPy otherwise."""
    if device.startswith("cuda"):
        try:
            import cupy  # type: ignore[import-not-found]
        except ImportError:
            log.info("CuPy is not installed: preprocessing runs with NumPy on the CPU")
            return np
        return cupy  # type: ignore[no-any-return]
    return np


@dataclass
class PreparedSet:
    """One SIM set ready for the network: (C, Y, X) float32 in [0, 1], photon count (e-),
    flags."""

    inputs: Any
    photon_count_e: float | None
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ElectronSet:
    """One raw set converted once: frames in photo-electrons (the preprocessor's array module,
    defects repaired) and the set's photon count (e-, None without calibration). A caller that
    needs the electrons before the network (``--model auto``'s domain check) hands them on."""

    frames_e: Any
    photon_count_e: float | None


PERCENTILE_SAMPLE_SIZE = 1 << 20
"""Percentiles are exact up to this many values (9 x 341 x 341); larger stacks use an even
stride through them (at 9 x 1024 x 1024: 24 ms instead of 260 ms on one CPU core)."""


def normalise(stack: Any, normalisation: Normalisation, xp: ModuleType = np) -> tuple[Any, bool]:
    """The authors' prctile_norm over the whole stack: (x - p_lo)/(p_hi - p_lo + eps), clipped.

    Computed in float64, returned as float32; also says whether the stack was constant.
    """
    x = xp.asarray(stack, dtype=xp.float64)
    if normalisation.kind == "none":
        return x.astype(xp.float32), False
    if normalisation.low_pct == 0 and normalisation.high_pct == 100:
        lo, hi = x.min(), x.max()
    else:
        flat = x.reshape(-1)
        sample = flat[:: -(-flat.size // PERCENTILE_SAMPLE_SIZE)]
        q = xp.asarray([normalisation.low_pct, normalisation.high_pct], dtype=x.dtype)
        lo, hi = xp.percentile(sample, q)  # an array q: CuPy takes no list
    constant = bool(hi - lo <= 0)
    y = (x - lo) / (hi - lo + normalisation.epsilon)
    if normalisation.clip:
        y = xp.clip(y, 0.0, 1.0)
    return y.astype(xp.float32), constant


def repair_defects(frames: Any, defect_mask: Any, xp: ModuleType = np) -> Any:
    """Replace defect (hot) pixels in every frame by the median of their good 3x3 neighbours."""
    mask = xp.asarray(defect_mask, dtype=bool)
    ys, xs = xp.nonzero(mask)
    if ys.size == 0:
        return frames
    height, width = mask.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    ny = xp.stack([xp.clip(ys + dy, 0, height - 1) for dy, _ in offsets], axis=1)
    nx = xp.stack([xp.clip(xs + dx, 0, width - 1) for _, dx in offsets], axis=1)
    good = ~mask[ny, nx]
    out = xp.array(frames, dtype=xp.float32, copy=True)
    neighbours = out[:, ny, nx]  # (P, n_defects, 8)
    neighbours = xp.where(good[None], neighbours, xp.nan)
    all_bad = ~good.any(axis=1)
    with np.errstate(all="ignore"):
        replacement = xp.nanmedian(neighbours, axis=2) if neighbours.size else neighbours
    replacement = xp.where(all_bad[None], out[:, ys, xs], replacement)
    out[:, ys, xs] = replacement
    return out


class Preprocessor:
    """Turns raw uint16 SIM sets into normalised model inputs for one model's mode."""

    def __init__(
        self,
        mode: str,
        normalisation: Normalisation | None = None,
        calibration: CalibrationMaps | None = None,
        options: PreprocessOptions | None = None,
        device: str = "cpu",
    ) -> None:
        if mode not in FRAMES_PER_MODE:
            raise ValueError(f"mode must be one of {sorted(FRAMES_PER_MODE)}, got {mode!r}")
        self.mode = mode
        self.normalisation = normalisation or Normalisation()
        self.calibration = calibration
        self.options = options or PreprocessOptions()
        self.xp = array_module(device)
        self._maps: tuple[Any, Any, Any] | None = None
        if calibration is not None:
            xp = self.xp
            self._maps = (
                xp.asarray(calibration.offset_adu, dtype=xp.float32),
                xp.asarray(calibration.gain_adu_per_e, dtype=xp.float32),
                None if calibration.defect_mask is None else xp.asarray(calibration.defect_mask),
            )

    def frames_in_electrons(self, raw: Any) -> Any:
        """ADU -> photo-electrons ((raw - offset) / gain) with defects repaired, float32."""
        xp = self.xp
        frames = xp.asarray(raw, dtype=xp.float32)
        if self._maps is None:
            return frames
        offset, gain, defects = self._maps
        if offset.shape != frames.shape[-2:]:
            raise ValueError(
                f"calibration maps are {tuple(offset.shape)} but frames are "
                f"{tuple(frames.shape[-2:])}: camera ROI/binning differs from the calibration"
            )
        if self.options.to_electrons:
            frames = (frames - offset) / gain
        if defects is not None and self.options.repair_defects:
            frames = repair_defects(frames, defects, xp)
        return frames

    def widefield_e(self, raw: np.ndarray) -> np.ndarray:
        """The set's wide-field image: the mean of its frames in photo-electrons (defects
        repaired), float32 (Y, X) (a CPU preprocessor's)."""
        return np.asarray(self.frames_in_electrons(raw), dtype=np.float32).mean(axis=0)

    def electrons(self, raw: np.ndarray) -> ElectronSet:
        """The raw set in photo-electrons and its photon count, for `prepare` to reuse."""
        return ElectronSet(self.frames_in_electrons(raw), self.photon_count_e(raw))

    def photon_count_e(self, raw: np.ndarray) -> float | None:
        """Mean over frames of the average photon count (e-, calibration.photon_count);
        None without calibration."""
        if self.calibration is None:
            return None
        from calibration.photon_count import average_photon_count

        raw_np = np.asarray(raw)
        offset = np.asarray(self.calibration.offset_adu, dtype=np.float64)
        electrons_per_adu = 1.0 / np.asarray(self.calibration.gain_adu_per_e, dtype=np.float64)
        per_frame = average_photon_count(raw_np, offset, electrons_per_adu)
        return float(np.mean(per_frame))

    def flags_for(self, raw: np.ndarray) -> list[str]:
        """Flags that say the raw set cannot give a trustworthy SR image."""
        flags = []
        if int(raw.max()) >= self.options.saturation_adu:
            flags.append(FLAG_SATURATED)
        if not raw.any():
            flags.append(FLAG_ALL_ZERO)
        return flags

    def prepare(self, raw: np.ndarray, converted: ElectronSet | None = None) -> PreparedSet:
        """One raw set (P, Y, X) -> model input (C, Y, X): SIM frames in order, or WF mean.
        ``converted``: this set's `electrons`, when the caller has them already."""
        raw = np.asarray(raw)
        if raw.ndim == 2:
            raw = raw[None]
        if raw.ndim != 3:
            raise ValueError(f"a raw set must be (P, Y, X), got shape {raw.shape}")
        expected = FRAMES_PER_MODE[self.mode]
        if self.mode != "sisr" and raw.shape[0] != expected:
            raise ValueError(
                f"{self.mode} model needs {expected} raw frames per set, got {raw.shape[0]}"
            )
        flags = self.flags_for(raw) if np.issubdtype(raw.dtype, np.integer) else []
        converted = converted or self.electrons(raw)
        frames = converted.frames_e
        xp = self.xp
        if not bool(xp.isfinite(frames).all()):
            flags.append(FLAG_NON_FINITE_INPUT)
            frames = xp.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0)
        stack = (
            frames.astype(xp.float64).mean(axis=0, keepdims=True) if self.mode == "sisr" else frames
        )
        inputs, constant = normalise(stack, self.normalisation, xp)
        if constant:
            flags.append(FLAG_CONSTANT)
        if flags:
            log.warning("raw set flagged: %s", ", ".join(flags))
        return PreparedSet(inputs=inputs, photon_count_e=converted.photon_count_e, flags=flags)

    def prepare_batch(
        self, raw_sets: list[np.ndarray], converted: Sequence[ElectronSet] | None = None
    ) -> tuple[Any, list[PreparedSet]]:
        """Several raw sets -> (N, C, Y, X) float32 batch (each set normalised on its own)."""
        sets = [None] * len(raw_sets) if converted is None else list(converted)
        prepared = [self.prepare(raw, e) for raw, e in zip(raw_sets, sets, strict=True)]
        shapes = {p.inputs.shape for p in prepared}
        if len(shapes) != 1:
            raise ValueError(f"a batch needs sets of one shape, got {sorted(shapes)}")
        return self.xp.stack([p.inputs for p in prepared]), prepared


def to_recorded(image: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """SR output in [0, 1] -> recorded dtype: float32 clipped, or uint16 scaled to 65535."""
    clipped = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if dtype == "float32":
        return clipped
    if dtype == "uint16":
        return np.round(clipped * 65535.0).astype(np.uint16)
    raise ValueError(f"recorded dtype must be 'float32' or 'uint16', got {dtype!r}")
