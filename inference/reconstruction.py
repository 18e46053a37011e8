"""Reconstructors: one raw SIM set (P, Y, X) uint16 in, one SR image with its provenance out.

`make_reconstructor(method)` is what the worker, `livesim predict` and the benchmarks call.
method: a bundled model name or a model path (DFCAN / DFGAN ...), 'wiener' (conventional SIM),
'none' (the wide-field mean) or 'passthrough' (cheapest result of the right shape, for
pipeline benchmarks).
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from inference.model_file import FRAMES_PER_MODE, LoadedModel, Normalisation, load_model
from inference.preprocessing import (
    FLAG_NON_FINITE_OUTPUT,
    CalibrationMaps,
    ElectronSet,
    PreparedSet,
    Preprocessor,
)

if TYPE_CHECKING:
    from calibration.sim_parameters import SimParameters
    from inference.wiener import TimePointFit, WienerConfig, WienerSeries, WienerSim

log = logging.getLogger(__name__)

# the network 'auto' uses when no 'auto:NAME' is given
DEFAULT_AUTO_NETWORK = "dfcan-sim"


@dataclass
class SrResult:
    """An SR image float32 (sY, sX) in [0, 1] with photon count (NaN if uncalibrated) and
    provenance; `flags` names anything that makes the image untrustworthy."""

    image: np.ndarray
    photon_count_e: float
    model_name: str
    model_sha256: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    # Wiener only: (n_orientations, 4) kx, ky (cycles/px), phase (rad), modulation used
    sim_parameters: np.ndarray | None = None


class Reconstructor(abc.ABC):
    """Turns raw SIM sets into SrResults; `scale` is the SR upsampling factor."""

    model_name: str = ""
    model_sha256: str = ""
    scale: int = 2
    mode: str = "sim"

    @abc.abstractmethod
    def reconstruct_batch(self, raws: Sequence[np.ndarray]) -> list[SrResult]:
        """Several raw sets (each (P, Y, X), one shape) -> one SrResult each, in order."""

    def reconstruct(self, raw: np.ndarray) -> SrResult:
        """One raw set (P, Y, X) -> SrResult."""
        return self.reconstruct_batch([raw])[0]


def _check_output(image: np.ndarray, flags: list[str]) -> np.ndarray:
    """Never pass NaN/inf on silently: zero them and flag the result."""
    if not np.isfinite(image).all():
        flags.append(FLAG_NON_FINITE_OUTPUT)
        log.warning("reconstruction produced non-finite values; zeroed and flagged")
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(image, dtype=np.float32)


class ModelReconstructor(Reconstructor):
    """A network (DFCAN / DFGAN / ...) behind an engine, with its preprocessing."""

    def __init__(
        self,
        model: LoadedModel,
        calibration: CalibrationMaps | None = None,
        device: str = "auto",
        backend: str = "auto",
        precision: str | None = None,
    ) -> None:
        from inference.engines import make_engine, resolve_device

        self.model = model
        self.model_name = model.name
        self.model_sha256 = model.sha256
        self.mode = model.info.mode
        self.scale = int(model.info.options.get("scale", 2))
        device = resolve_device(device)
        self.engine = make_engine(model, backend=backend, device=device, precision=precision)
        self.preprocessor = Preprocessor(
            self.mode, model.info.normalisation, calibration, device=device
        )

    def reconstruct_batch(
        self, raws: Sequence[np.ndarray], converted: Sequence[ElectronSet] | None = None
    ) -> list[SrResult]:
        """``converted``: the sets' `Preprocessor.electrons`, when the caller made them."""
        start = time.perf_counter()
        batch, prepared = self.preprocessor.prepare_batch(list(raws), converted)
        pre_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        images = self.engine.run(batch)
        infer_ms = (time.perf_counter() - start) * 1e3
        n = len(prepared)
        results = []
        for image, item in zip(images, prepared, strict=True):
            flags = list(item.flags)
            results.append(
                SrResult(
                    image=_check_output(image, flags),
                    photon_count_e=_as_float(item.photon_count_e),
                    model_name=self.model_name,
                    model_sha256=self.model_sha256,
                    timings_ms={
                        "preprocess": pre_ms / n,
                        "inference": infer_ms / n,
                        "total": (pre_ms + infer_ms) / n,
                    },
                    flags=flags,
                )
            )
        return results


def _as_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


class _SetBySetReconstructor(Reconstructor):
    """Reconstructs one set at a time from its preprocessed frames (`_image`)."""

    preprocessor: Preprocessor

    @abc.abstractmethod
    def _image(self, item: PreparedSet, flags: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """The image of one preprocessed set (flags appended to) and its /sim_params row."""

    def reconstruct_batch(self, raws: Sequence[np.ndarray]) -> list[SrResult]:
        results = []
        for raw in raws:
            start = time.perf_counter()
            item = self.preprocessor.prepare(raw)
            flags = list(item.flags)
            image, parameters = self._image(item, flags)
            image = _check_output(image, flags)
            elapsed = (time.perf_counter() - start) * 1e3
            results.append(SrResult(image, _as_float(item.photon_count_e), self.model_name, "",
                                    {"total": elapsed}, flags, sim_parameters=parameters))
        return results


class WideFieldReconstructor(_SetBySetReconstructor):
    """'none': the wide-field mean of the set, min-max normalised (no super-resolution)."""

    model_name = "none"
    scale = 1

    def __init__(self, calibration: CalibrationMaps | None = None, mode: str = "sim") -> None:
        self.mode = mode
        self.preprocessor = Preprocessor("sisr", Normalisation(), calibration)

    def _image(self, item: PreparedSet, flags: list[str]) -> tuple[np.ndarray, None]:
        return np.asarray(item.inputs)[0], None


class PassthroughReconstructor(Reconstructor):
    """'passthrough': zeros of the SR shape and no work, to benchmark the rest of the pipeline."""

    model_name = "passthrough"

    def __init__(self, scale: int = 2, mode: str = "sim") -> None:
        self.scale = scale
        self.mode = mode
        self._zeros: dict[tuple[int, int], np.ndarray] = {}

    def reconstruct_batch(self, raws: Sequence[np.ndarray]) -> list[SrResult]:
        results = []
        for raw in raws:
            y, x = np.asarray(raw).shape[-2:]
            shape = (y * self.scale, x * self.scale)
            image = self._zeros.get(shape)
            if image is None:  # one read-only image per shape: a fresh 4 MB array per set
                # cost the worker ~4 ms of page faults, which "no work" must not add
                image = self._zeros[shape] = np.zeros(shape, dtype=np.float32)
                image.flags.writeable = False
            results.append(SrResult(image, math.nan, "passthrough", "", {"total": 0.0}, []))
        return results


FLAG_PATTERN_FIT_UNRELIABLE = "pattern_fit_unreliable"


class WienerReconstructor(_SetBySetReconstructor):
    """'wiener': conventional SIM (inference.wiener.WienerSeries). The pattern geometry is
    estimated on the first set, or given (``parameters``: a ``SimParameters`` from a rig
    pattern calibration, or one estimate shipped to every batch-reprocessing task); phases are
    refined on every set, with re-estimation when they stop fitting. Each result carries the
    parameters it used (``sim_parameters``, for /sim_params) and the flag
    ``pattern_fit_unreliable`` when the fit was flagged. Output min-max normalised to [0, 1]."""

    model_name = "wiener"
    mode = "sim"

    def __init__(
        self,
        calibration: CalibrationMaps | None = None,
        pixel_size_nm: float = 62.6,
        na: float = 1.35,
        emission_nm: float = 525.0,
        wiener_config: WienerConfig | None = None,
        parameters: SimParameters | None = None,
    ) -> None:
        from calibration.otf import OtfModel

        self.otf = OtfModel(na=na, emission_nm=emission_nm)
        self.pixel_size_nm = pixel_size_nm
        self.wiener_config = wiener_config
        self._series: WienerSeries | None = None
        self._parameters = parameters  # SimParameters to start from instead of estimating
        self.last_fit: TimePointFit | None = None
        self.preprocessor = Preprocessor("sim", Normalisation(kind="none"), calibration)

    @property
    def _engine(self) -> WienerSim | None:
        """The current WienerSim (None before the first set)."""
        return self._series.sim if self._series is not None else None

    @property
    def parameters(self) -> SimParameters | None:
        """The pattern parameters in use (given, or estimated on the first set; None before)."""
        return self._engine.parameters if self._engine is not None else self._parameters

    def _image(self, item: PreparedSet, flags: list[str]) -> tuple[np.ndarray, np.ndarray]:
        frames = np.asarray(item.inputs, dtype=np.float32)
        if self._series is None:
            from inference.wiener import WienerSeries

            self._series = WienerSeries(
                frames.shape[-2:], self.pixel_size_nm, self.otf, self.wiener_config,
                self._parameters,
            )
        sr, fit = self._series.reconstruct(frames)
        self.last_fit = fit
        sr = np.asarray(sr, dtype=np.float32)
        if not fit.reliable:
            flags.append(FLAG_PATTERN_FIT_UNRELIABLE)
        finite = sr[np.isfinite(sr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        return np.clip((sr - lo) / (hi - lo + 1e-7), 0.0, 1.0), fit.table_row()


def make_reconstructor(
    method: str,
    *,
    mode: str | None = None,
    calibration: CalibrationMaps | None = None,
    device: str = "auto",
    backend: str = "auto",
    precision: str | None = None,
    pixel_size_nm: float = 62.6,
    na: float = 1.35,
    emission_nm: float = 525.0,
    wiener_config: WienerConfig | None = None,
    pattern: SimParameters | None = None,
) -> Reconstructor:
    """Build the reconstructor for `method` (bundled name | model path | wiener | none |
    passthrough). `mode` checks a model's mode (sisr / sim / nlsim) when given; the optics
    arguments (raw pixel size, NA, emission wavelength) are for Wiener only."""
    if mode is not None and mode not in FRAMES_PER_MODE:
        raise ValueError(f"mode must be one of {sorted(FRAMES_PER_MODE)}, got {mode!r}")
    if method == "none":
        return WideFieldReconstructor(calibration, mode or "sim")
    if method == "passthrough":
        return PassthroughReconstructor(3 if mode == "nlsim" else 2, mode or "sim")
    if method == "wiener":
        return WienerReconstructor(
            calibration, pixel_size_nm, na, emission_nm, wiener_config, parameters=pattern
        )
    if method == "auto" or method.startswith("auto:"):
        from inference.auto import AutoReconstructor

        network_name = method.partition(":")[2] or DEFAULT_AUTO_NETWORK
        if mode is not None and mode != "sim":
            raise ValueError(
                f"reconstruction {method!r} chooses per SIM set between a SIM network and "
                f"Wiener SIM; mode {mode!r} needs a {mode} model (e.g. dfcan-sisr for wf)"
            )
        network = make_reconstructor(
            network_name, mode="sim", calibration=calibration, device=device, backend=backend,
            precision=precision,
        )
        assert isinstance(network, ModelReconstructor)
        wiener = WienerReconstructor(
            calibration, pixel_size_nm, na, emission_nm, wiener_config, parameters=pattern
        )
        return AutoReconstructor(network, wiener, na, emission_nm, pixel_size_nm)
    model = load_model(method)
    if mode is not None and model.info.mode != mode:
        raise ValueError(
            f"model {method!r} is a {model.info.mode} model but mode {mode!r} was requested"
        )
    return ModelReconstructor(model, calibration, device, backend, precision)
