"""Fast frame source for throughput work: pre-rendered frames, fresh noise, stage jitter.

Noiseless frames of every pattern are rendered once (full physics, time 0) at a few sub-pixel
offsets. Each frame then costs a handful of in-place float32 operations: a slice of a bank
of standard-normal noise (random offset) times the per-pixel noise sigma (Gaussian
approximation of Poisson + read noise, in ADU), plus the expected ADU image (gain and offset
maps, dark current), clipped to 16 bits. The sample does not evolve here; the image jitters
by up to ``jitter_px`` on a circle as time passes. Use the full model for physics.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import scipy.ndimage

from sim_emulator.microscope import LASER_MATCH_NM, Microscope

logger = logging.getLogger(__name__)

_NOISE_BANK_FRAMES = 8


class FastFrameSource:
    """Frames like ``Microscope.render_frame`` at a small fraction of its cost."""

    def __init__(
        self,
        microscope: Microscope,
        n_offsets: int = 4,
        jitter_px: float = 0.5,
        jitter_period_s: float = 2.0,
        seed: int | None = None,
    ) -> None:
        if n_offsets < 1:
            raise ValueError(f"n_offsets={n_offsets} must be >= 1")
        if jitter_period_s <= 0:
            raise ValueError(f"jitter_period_s={jitter_period_s} must be > 0")
        self.microscope = microscope
        self.n_offsets = n_offsets
        self.jitter_px = jitter_px
        self.jitter_period_s = jitter_period_s
        config = microscope.config
        sensor = microscope.sensor
        if config.sensor.roi is not None or config.sensor.binning != 1:
            raise ValueError(
                "FastFrameSource renders the full unbinned sensor: needs sensor roi=None, binning=1"
            )
        self.shape = sensor.sensor_shape
        size = self.shape[0] * self.shape[1]
        rng = np.random.default_rng([config.seed if seed is None else seed, 0xFA57])
        self._noise = rng.standard_normal(size * _NOISE_BANK_FRAMES, dtype=np.float32)
        self._rng = rng
        self._gain = sensor.gain_map_adu_per_e
        self._offset_plus_half = sensor.offset_map_adu + np.float32(0.5)  # +0.5: floor rounds
        self._read_var_e2 = sensor.read_noise_map_e**2
        self._dark_e_per_s = sensor.dark_current_map_e_per_s
        self._qe = np.float32(config.sensor.qe)
        self._max_adu = np.float32(config.sensor.max_adu)
        self._patterns: list[int | None] = [None, *range(microscope.n_patterns)]
        self._photons: dict[int, np.ndarray] = {}  # laser key -> (len(patterns), K, Y, X)
        self._ready: dict[tuple[int | None, int, int, float, float], tuple[np.ndarray, ...]] = {}
        self._buffer = np.empty(self.shape, dtype=np.float32)
        self._lock = threading.Lock()  # the emulated camera renders from its own thread

    def _laser_key(self, laser_nm: float | None) -> int | None:
        if laser_nm is None:
            return None
        for line in self.microscope.laser_lines_nm:
            if abs(line - laser_nm) <= LASER_MATCH_NM:
                return round(line)
        return None

    def _bank(self, line: int) -> np.ndarray:
        """Reference-dose photon images per pattern and sub-pixel offset (rendered once)."""
        if line not in self._photons:
            config = self.microscope.config
            base = self.microscope.expected_photons(
                0.0, self._patterns, float(line),
                config.reference_power_pct, config.reference_exposure_ms,
            )
            angles = 2 * np.pi * np.arange(self.n_offsets) / self.n_offsets
            shifted = np.empty((len(self._patterns), self.n_offsets, *self.shape), np.float32)
            for k, angle in enumerate(angles):
                dy, dx = self.jitter_px * np.sin(angle), self.jitter_px * np.cos(angle)
                for i, image in enumerate(base):
                    spectrum = scipy.ndimage.fourier_shift(np.fft.rfft2(image), (dy, dx),
                                                           n=self.shape[1])
                    shifted[i, k] = np.maximum(np.fft.irfft2(spectrum, s=self.shape), 0.0)
            self._photons[line] = shifted
            logger.info("fast path: %d frames pre-rendered, %d nm", shifted[:, :, 0, 0].size, line)
        return self._photons[line]

    def _mean_sigma(
        self, line: int | None, index: int, k: int, power_pct: float, exposure_ms: float
    ) -> tuple[np.ndarray, ...]:
        """Expected ADU (+0.5, offset included) and noise sigma in ADU; cached per dose."""
        cache_key = (line, index, k, power_pct, exposure_ms)
        if cache_key in self._ready:
            return self._ready[cache_key]
        if len(self._ready) > 4 * len(self._patterns) * self.n_offsets:
            self._ready.clear()  # the dose changed: drop the old dose's arrays
        config = self.microscope.config
        electrons = self._dark_e_per_s * np.float32(exposure_ms / 1000.0)
        if line is not None and power_pct > 0 and exposure_ms > 0:
            dose = (power_pct / config.reference_power_pct) * (
                exposure_ms / config.reference_exposure_ms
            )
            electrons = electrons + self._bank(line)[index, k] * (self._qe * np.float32(dose))
        mean = electrons * self._gain + self._offset_plus_half
        sigma = np.sqrt(electrons + self._read_var_e2) * self._gain
        self._ready[cache_key] = (mean.astype(np.float32), sigma.astype(np.float32))
        return self._ready[cache_key]

    def frame(
        self,
        time_s: float,
        pattern: int | None,
        laser_nm: float | None,
        power_pct: float,
        exposure_ms: float,
    ) -> np.ndarray:
        """One uint16 (Y, X) camera frame; same arguments as ``Microscope.render_frame``."""
        if power_pct < 0 or exposure_ms < 0:
            raise ValueError(f"power_pct={power_pct} and exposure_ms={exposure_ms} must be >= 0")
        if pattern is not None:
            self.microscope.patterns.orientation_phase(pattern)
        index = 0 if pattern is None or self.microscope.patterns.mode == "wf" else pattern + 1
        phase = (time_s / self.jitter_period_s) % 1.0
        k = int(phase * self.n_offsets) % self.n_offsets
        with self._lock:
            mean, sigma = self._mean_sigma(
                self._laser_key(laser_nm), index, k, float(power_pct), float(exposure_ms)
            )
            size = mean.size
            start = int(self._rng.integers(0, self._noise.size - size))
            noise = self._noise[start : start + size].reshape(self.shape)
            out = self._buffer
            np.multiply(noise, sigma, out=out)
            out += mean
            np.clip(out, 0.0, self._max_adu, out=out)
            return out.astype(np.uint16)

    def set_frames(
        self, time_s: float, laser_nm: float | None, power_pct: float, exposure_ms: float
    ) -> np.ndarray:
        """One SIM set (P, Y, X) uint16 of the microscope's pattern mode."""
        patterns: list[int | None] = list(range(self.microscope.n_patterns))
        if self.microscope.patterns.mode == "wf":
            patterns = [None]
        return np.stack(
            [self.frame(time_s, p, laser_nm, power_pct, exposure_ms) for p in patterns]
        )
