"""Trust records of live SR results: every Nth set of a channel is checked against its raw data.

The inference worker keeps one :class:`TrustMonitor` per channel. Every ``every``-th set it
reconstructs on that channel (the first included) it computes :func:`inference.trust.
central_trust_record` on the central 128 px square (0.2-1 s on one CPU core) with

- the pattern parameters the reconstruction used when it has them (Wiener SIM, also when
  ``--model auto`` chose Wiener), otherwise parameters estimated with
  :func:`calibration.sim_parameters.estimate_sim_parameters` on the frames in e-, cached and
  re-estimated once ``pattern_every_sets`` (10) sets have passed since the last estimate;
- the reconstructor's OTF and raw pixel size (``OtfModel()`` and 62.6 nm when it has none);
- the frames in photo-electrons from the reconstructor's preprocessor.

The result travels in the SR result's ``info["trust"]`` (:func:`trust_info`) and is written to
the run file's ``/qc`` group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol, TypeGuard, runtime_checkable

import numpy as np

from acquisition import run_file
from calibration.otf import OtfLike, OtfModel
from calibration.sim_parameters import SimParameters, estimate_sim_parameters
from inference.trust import TrustRecord, central_trust_record

logger = logging.getLogger(__name__)

DEFAULT_TRUST_EVERY = 10
DEFAULT_PIXEL_SIZE_NM = 62.6
TRUST_MAX_SIZE_PX = run_file.QC_MAX_SIZE_PX  # the central square checked (cost bound)
# networks: pattern parameters estimated on the frames, re-estimated once this many sets passed
# (as --model auto does for its domain check); an estimate costs about half a trust record
PATTERN_EVERY_SETS = 10


@runtime_checkable
class ElectronConverter(Protocol):
    """A reconstructor's preprocessor: camera units -> photo-electrons."""

    def frames_in_electrons(self, raw: np.ndarray) -> Any: ...


def _is_otf(value: object) -> TypeGuard[OtfLike]:
    """An OTF model or a measured OTF (anything with ``value`` and ``cutoff_cycles_per_nm``)."""
    return hasattr(value, "value") and hasattr(value, "cutoff_cycles_per_nm")


def _reconstructor_optics(reconstructor: object) -> tuple[OtfLike, float]:
    """The reconstructor's detection OTF and raw pixel size (nm), or the defaults."""
    otf = getattr(reconstructor, "otf", None)
    wiener = getattr(reconstructor, "wiener", None)  # AutoReconstructor
    if not _is_otf(otf) and wiener is not None:
        otf = getattr(wiener, "otf", None)
    if not _is_otf(otf):
        na = getattr(reconstructor, "na", None)
        emission_nm = getattr(reconstructor, "emission_nm", None)
        otf = (OtfModel(na=float(na), emission_nm=float(emission_nm))
               if isinstance(na, float) and isinstance(emission_nm, float) else OtfModel())
    pixel = getattr(reconstructor, "pixel_size_nm", None)
    pixel_size_nm = float(pixel) if isinstance(pixel, (int, float)) and pixel > 0 else (
        DEFAULT_PIXEL_SIZE_NM)
    return otf, pixel_size_nm


def _preprocessor(reconstructor: object) -> ElectronConverter | None:
    """The preprocessor that turns camera units into photo-electrons (None: frames as given)."""
    preprocessor = getattr(reconstructor, "preprocessor", None)
    if preprocessor is None:
        network = getattr(reconstructor, "network", None)  # AutoReconstructor
        preprocessor = getattr(network, "preprocessor", None)
    return preprocessor if isinstance(preprocessor, ElectronConverter) else None


def _used_parameters(reconstructor: object, model_name: str) -> SimParameters | None:
    """The pattern parameters the reconstruction of this result used, when it has them: Wiener
    SIM's fit of this set (also inside ``--model auto``), or the reconstructor's own estimate
    (``--model auto`` keeps one for its domain check)."""
    if model_name == "wiener":
        engine = reconstructor if hasattr(reconstructor, "last_fit") else getattr(
            reconstructor, "wiener", None)
        parameters = getattr(getattr(engine, "last_fit", None), "parameters", None)
    else:
        parameters = getattr(reconstructor, "parameters", None)
    return parameters if isinstance(parameters, SimParameters) else None


class TrustMonitor:
    """Trust records of one channel's results: every ``every``-th set (0: never)."""

    def __init__(self, reconstructor: object, every: int = DEFAULT_TRUST_EVERY,
                 pattern_every_sets: int = PATTERN_EVERY_SETS,
                 max_size_px: int = TRUST_MAX_SIZE_PX, otf: OtfLike | None = None,
                 pixel_size_nm: float | None = None) -> None:
        """``otf`` and ``pixel_size_nm`` replace the reconstructor's (a file's stated optics)."""
        if every < 0:
            raise ValueError(f"trust_every={every} must be >= 0 (0: off)")
        if pattern_every_sets < 1:
            raise ValueError(f"pattern_every_sets={pattern_every_sets} must be >= 1")
        self.pattern_every_sets = pattern_every_sets
        self.reconstructor = reconstructor
        self.every = every
        self.max_size_px = max_size_px
        own_otf, own_pixel_size_nm = _reconstructor_optics(reconstructor)
        self.otf: OtfLike = otf if otf is not None else own_otf
        self.pixel_size_nm = pixel_size_nm if pixel_size_nm is not None else own_pixel_size_nm
        self._preprocessor = _preprocessor(reconstructor)
        self._sets = 0
        self._estimated: SimParameters | None = None
        self._estimated_at = -1

    def due(self) -> bool:
        """Count one set; True when this set is to be checked."""
        index = self._sets
        self._sets += 1
        return self.every > 0 and index % self.every == 0

    def frames_e(self, raw: np.ndarray) -> np.ndarray:
        """The raw set in photo-electrons (camera units without a calibration)."""
        if self._preprocessor is None:
            return np.asarray(raw, dtype=np.float32)
        return np.asarray(self._preprocessor.frames_in_electrons(raw), dtype=np.float32)

    def parameters(self, frames_e: np.ndarray, model_name: str) -> SimParameters:
        """The reconstruction's own pattern parameters, or the cached estimate (re-estimated once
        ``pattern_every_sets`` sets have passed)."""
        used = _used_parameters(self.reconstructor, model_name)
        if used is not None:
            return used
        index = self._sets - 1
        if self._estimated is None or index - self._estimated_at >= self.pattern_every_sets:
            self._estimated = estimate_sim_parameters(
                frames_e, self.pixel_size_nm, self.otf, offset_adu=None
            )
            self._estimated_at = index
        return self._estimated

    def check(self, raw: np.ndarray, image: np.ndarray, model_name: str
              ) -> tuple[TrustRecord, np.ndarray]:
        """The trust record and raw-consistency block map of one SR image against its raw set."""
        frames = self.frames_e(raw)
        parameters = self.parameters(frames, model_name)
        return central_trust_record(image, frames, parameters, self.otf, self.max_size_px)


def trust_info(record: TrustRecord, chi2_map: np.ndarray) -> dict[str, Any] | None:
    """The wire's ``trust`` map: the three scalars and the block map as lists; None when any
    value is not finite (the wire carries finite numbers only; the worker then sends none)."""
    block_map = np.asarray(chi2_map, dtype=np.float64)
    scalars = {
        "raw_chi2": float(record.raw_chi2),
        # rounding can leave a correlation or a fraction a hair outside its range
        "resolution_scaled_pearson": float(np.clip(record.resolution_scaled_pearson, -1, 1)),
        "beyond_support_fraction": float(np.clip(record.beyond_support_fraction, 0, 1)),
    }
    if not (all(math.isfinite(v) for v in scalars.values()) and np.isfinite(block_map).all()):
        return None
    return {**scalars, "raw_chi2_map": block_map.tolist()}


def trust_summary(records: Sequence[TrustRecord], n_time_points: int) -> str:
    """One line for a command's summary: medians (and the worst) of the checked time points."""
    if not records:
        return "trust: not computed"
    chi2 = np.array([r.raw_chi2 for r in records])
    pearson = np.array([r.resolution_scaled_pearson for r in records])
    beyond = np.array([r.beyond_support_fraction for r in records])
    return (
        f"trust ({len(records)} of {n_time_points} time points, central "
        f"{TRUST_MAX_SIZE_PX} px; docs/trust.md): raw_chi2 median {np.median(chi2):.2f} "
        f"(max {chi2.max():.2f}), resolution-scaled Pearson median {np.median(pearson):.3f} "
        f"(min {pearson.min():.3f}), energy beyond the SIM support median "
        f"{np.median(beyond):.4f} (max {beyond.max():.4f})"
    )
