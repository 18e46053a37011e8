"""Pattern check: the raw frames' power spectrum, the detected carrier peaks, modulation depths.

The numbers come from :func:`calibration.sim_parameters.estimate_sim_parameters` (the same
estimator the Wiener reconstruction trusts), on the central 128 x 128 crop. It takes about a
second on one CPU core, so the window runs it on a background thread, throttled to at most a
tenth of one core, never per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

MIN_PERIOD_S = 2.0  # at most one estimate every this many seconds
MAX_BUSY_FRACTION = 0.05  # and never more than this fraction of one core (FFT workers included)
CROP_PX = 128  # the estimate runs on the central crop: cost bounded whatever the frame size


@dataclass(frozen=True)
class PatternCheck:
    """One pattern check: log power spectrum (fftshifted), carrier peaks, modulation depths."""

    log_power: np.ndarray  # (Y, X) float32, log10 of the power, zero frequency at the centre
    peaks_xy_px: list[tuple[float, float]]  # carrier peaks in log_power pixel coordinates
    modulations: list[float] = field(default_factory=list)  # per orientation
    periods_nm: list[float] = field(default_factory=list)  # per orientation
    angles_deg: list[float] = field(default_factory=list)  # per orientation
    error: str = ""


def log_power_spectrum(raw: np.ndarray, n_phases: int, offset_adu: float) -> np.ndarray:
    """Sum over orientations of the first phase frame's windowed power spectrum, log10."""
    frames = np.asarray(raw, dtype=np.float32)[::n_phases] - np.float32(offset_adu)
    ny, nx = frames.shape[-2:]
    window = np.outer(np.hanning(ny), np.hanning(nx)).astype(np.float32)
    spectra = np.abs(np.fft.fft2(frames * window)) ** 2
    power = np.fft.fftshift(spectra.sum(axis=0))
    return np.ascontiguousarray(np.log10(power + 1.0).astype(np.float32))


def central_crop(raw: np.ndarray, size_px: int) -> np.ndarray:
    """The central ``size_px`` square of (..., Y, X) frames (the whole frame when smaller)."""
    ny, nx = raw.shape[-2:]
    y0, x0 = max(0, (ny - size_px) // 2), max(0, (nx - size_px) // 2)
    return raw[..., y0:y0 + min(ny, size_px), x0:x0 + min(nx, size_px)]


def check_patterns(raw: np.ndarray, pixel_size_nm: float, offset_adu: float,
                   n_phases: int = 3) -> PatternCheck:
    """Spectrum of a (P, Y, X) raw set with its estimated carriers; errors are reported."""
    from calibration.sim_parameters import estimate_sim_parameters

    raw = central_crop(np.asarray(raw), CROP_PX)
    if raw.ndim != 3 or raw.shape[0] < 3:
        return PatternCheck(np.zeros((8, 8), np.float32), [],
                            error=f"pattern check needs a SIM raw set, got shape {raw.shape}")
    spectrum = log_power_spectrum(raw, n_phases, offset_adu)
    try:
        params = estimate_sim_parameters(raw, pixel_size_nm, n_phases=n_phases,
                                         offset_adu=offset_adu)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return PatternCheck(spectrum, [], error=f"no carrier found: {exc}")
    ny, nx = raw.shape[-2:]
    peaks, periods, angles = [], [], []
    for kx, ky in params.wave_vectors_cycles_per_px():
        for sign in (1.0, -1.0):
            peaks.append((nx // 2 + sign * kx * nx, ny // 2 + sign * ky * ny))
        k = float(np.hypot(kx, ky))
        periods.append(pixel_size_nm / k if k > 0 else float("inf"))
        angles.append(float(np.degrees(np.arctan2(ky, kx))))
    return PatternCheck(spectrum, peaks, [float(m) for m in params.modulations()], periods,
                        angles)


class PatternChecker:
    """Runs :func:`check_patterns` on a background thread on the newest offered raw set."""

    def __init__(self, min_period_s: float = MIN_PERIOD_S) -> None:
        self.min_period_s = min_period_s
        self.result: PatternCheck | None = None
        self.results = 0
        self._lock = threading.Lock()
        self._busy = False
        self._last_start_s = -1e9
        self._last_cost_s = 0.0
        self.cpu_s = 0.0  # CPU seconds of this checker's threads so far (bench figures)

    def offer(self, raw: np.ndarray, pixel_size_nm: float, offset_adu: float,
              n_phases: int = 3) -> bool:
        """Start a check on ``raw`` unless one runs or one started too recently."""
        now = time.monotonic()
        with self._lock:
            wait_s = max(self.min_period_s, self._last_cost_s / MAX_BUSY_FRACTION)
            if self._busy or now - self._last_start_s < wait_s:
                return False
            self._busy = True
            self._last_start_s = now
        data = np.array(central_crop(raw, CROP_PX), copy=True)
        thread = threading.Thread(target=self._run, args=(data, pixel_size_nm, offset_adu,
                                                          n_phases), name="pattern-check",
                                  daemon=True)
        thread.start()
        return True

    def take(self) -> PatternCheck | None:
        """The newest finished result, once (None when there is nothing new)."""
        with self._lock:
            result, self.result = self.result, None
        return result

    def _run(self, raw: np.ndarray, pixel_size_nm: float, offset_adu: float,
             n_phases: int) -> None:
        # process CPU, not wall time (inflates under load) nor this thread's (the estimate's
        # scipy FFTs run on worker threads: a third of its cost); other threads' CPU meanwhile
        # makes the figure conservative
        started = time.process_time()
        thread_started = time.thread_time()
        try:
            result = check_patterns(raw, pixel_size_nm, offset_adu, n_phases)
        except (ValueError, RuntimeError, MemoryError) as exc:
            logger.warning("pattern check failed: %s", exc)
            result = PatternCheck(np.zeros((8, 8), np.float32), [], error=str(exc))
        with self._lock:
            self.result = result
            self.results += 1
            self._busy = False
            self._last_cost_s = time.process_time() - started
            self.cpu_s += time.thread_time() - thread_started
