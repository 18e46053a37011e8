"""Structured illumination: the striped patterns the SLM projects, linear and saturated.

Pattern order is orientation-major: ``pattern = n_phases * orientation + phase``. The
illumination (or, for nonlinear SIM, the effective emission probability) is written as a
Fourier series in the stripe phase, I(r) = sum_h c_h exp(i h (2 pi k . r + phi)), which is
what the forward model needs to shift the sample spectrum by h k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field, model_validator

from hardware.pattern_layout import GRID, SimMode
from settings_file import StrictModel
from sim_emulator.optics import Optics

_HARMONIC_FLOOR = 1e-2  # saturation harmonics weaker than 1 % of c_0 are not rendered
_MAX_HARMONIC = 4


class SimPatterns(StrictModel):
    """Illumination patterns: mode, grid of orientations x phases, period and imperfections.

    ``saturation`` (nonlinear SIM only) is the peak excitation in units of the saturation
    intensity: emission = 1 - exp(-saturation * I), which creates the 2nd and higher harmonics.
    Phase and angle errors are random, fixed per pattern by ``error_seed`` (std in radians);
    so is each orientation's modulation (``modulation`` x (1 + ``modulation_spread`` x N(0, 1)),
    at most 1): polarisation and the SLM's diffraction efficiency differ per orientation.
    ``drift_nm_per_s`` moves the whole pattern across the sample plane (thermal drift of the
    SLM path), a slow phase drift of 2 pi k . d(t) per orientation.
    """

    mode: SimMode = "sim"
    n_orientations: int | None = Field(default=None, ge=1, le=16)
    n_phases: int | None = Field(default=None, ge=1, le=16)
    period_nm: float = Field(default=216.0, gt=20.0, lt=100000.0)
    angle_offset_rad: float = 0.3
    modulation: float = Field(default=0.85, ge=0.0, le=1.0)
    modulation_spread: float = Field(
        default=0.08, ge=0.0, le=1.0, description="relative spread of modulation per orientation"
    )
    orientation_modulations: tuple[float, ...] | None = Field(
        default=None, description="modulation of each orientation (overrides modulation/spread)"
    )
    phase_error_rad: float = Field(default=0.05, ge=0.0, le=3.2)
    angle_error_rad: float = Field(default=0.002, ge=0.0, le=0.5)
    drift_nm_per_s: tuple[float, float] = Field(
        default=(0.3, -0.2), description="(x, y) pattern drift in the sample plane, nm/s"
    )
    saturation: float = Field(default=3.0, gt=0.0, le=100.0)
    error_seed: int = 0

    @model_validator(mode="after")
    def _grid_for_mode(self) -> SimPatterns:
        orientations, phases = GRID[self.mode]
        # filled from the mode: not marked as set, so a dump/re-validate with another mode works
        if self.n_orientations is None:
            object.__setattr__(self, "n_orientations", orientations)
        if self.n_phases is None:
            object.__setattr__(self, "n_phases", phases)
        if self.orientation_modulations is not None and (
            len(self.orientation_modulations) != self.n_orientations
            or not all(0.0 <= m <= 1.0 for m in self.orientation_modulations)
        ):
            raise ValueError(
                f"orientation_modulations={self.orientation_modulations} needs "
                f"{self.n_orientations} values in 0..1"
            )
        if self.mode == "wf" and (self.n_orientations, self.n_phases) != (1, 1):
            raise ValueError(
                f"mode='wf' needs n_orientations=1, n_phases=1, "
                f"got {self.n_orientations}, {self.n_phases}"
            )
        if self.mode != "wf" and self.phases < 2 * self.max_harmonic + 1:
            raise ValueError(
                f"n_phases={self.n_phases} cannot separate {2 * self.max_harmonic + 1} "
                f"harmonic bands in mode={self.mode!r}"
            )
        return self

    @classmethod
    def for_optics(
        cls, optics: Optics, mode: SimMode = "sim", cutoff_fraction: float = 0.9, **kwargs: object
    ) -> SimPatterns:
        """Patterns with |k| = cutoff_fraction * 2 NA / lambda_em of ``optics``."""
        period_nm = 1.0 / (cutoff_fraction * optics.cutoff_cycles_per_nm)
        return cls.model_validate({"mode": mode, "period_nm": period_nm, **kwargs})

    @property
    def orientations(self) -> int:
        """Number of stripe orientations."""
        assert self.n_orientations is not None
        return self.n_orientations

    @property
    def phases(self) -> int:
        """Number of phase steps per orientation."""
        assert self.n_phases is not None
        return self.n_phases

    @property
    def n_patterns(self) -> int:
        """Frames in one set: 1 (wf), 9 (sim), 25 (nlsim) by default."""
        return self.orientations * self.phases

    @property
    def max_harmonic(self) -> int:
        """Highest harmonic order the reconstruction uses: 0 wf, 1 sim, 2 nlsim."""
        return {"wf": 0, "sim": 1, "nlsim": 2}[self.mode]

    def orientation_phase(self, pattern: int) -> tuple[int, int]:
        """(orientation, phase) indices of a pattern number (orientation-major)."""
        if not 0 <= pattern < self.n_patterns:
            raise ValueError(f"pattern={pattern} outside 0..{self.n_patterns - 1}")
        return divmod(pattern, self.phases)

    def angles_rad(self) -> np.ndarray:
        """Stripe wave-vector angles per orientation (radians), errors included."""
        n = self.orientations
        nominal = self.angle_offset_rad + np.pi * np.arange(n) / n
        rng = np.random.default_rng([self.error_seed, 1])
        return nominal + self.angle_error_rad * rng.standard_normal(n)

    def wave_vectors_cycles_per_nm(self) -> np.ndarray:
        """(n_orientations, 2) wave vectors, columns (kx, ky), in cycles per nm."""
        angles = self.angles_rad()
        magnitude = 1.0 / self.period_nm
        return magnitude * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def phases_rad(self, time_s: float = 0.0) -> np.ndarray:
        """(n_orientations, n_phases) pattern phases at the image origin at ``time_s``,
        errors and drift included."""
        nominal = 2.0 * np.pi * np.arange(self.phases) / self.phases
        rng = np.random.default_rng([self.error_seed, 2])
        errors = self.phase_error_rad * rng.standard_normal((self.orientations, self.phases))
        return nominal[None, :] + errors + self.drift_phase_rad(time_s)[:, None]

    def drift_phase_rad(self, time_s: float) -> np.ndarray:
        """(n_orientations,) phase added by the pattern's drift by ``time_s``: 2 pi k . d(t)."""
        shift_nm = np.asarray(self.drift_nm_per_s, dtype=np.float64) * float(time_s)
        return 2.0 * np.pi * (self.wave_vectors_cycles_per_nm() @ shift_nm)

    def modulations(self) -> np.ndarray:
        """(n_orientations,) modulation depth of each orientation (seeded spread, <= 1)."""
        if self.orientation_modulations is not None:
            return np.array(self.orientation_modulations, dtype=np.float64)
        rng = np.random.default_rng([self.error_seed, 3])
        spread = 1.0 + self.modulation_spread * rng.standard_normal(self.orientations)
        return np.clip(self.modulation * spread, 0.0, 1.0)

    def harmonic_coefficients(self, orientation: int | None = None) -> np.ndarray:
        """c_h for h = 0..H of the effective emission pattern, normalised so c_0 = 1.

        Linear: c_1 = m / 2. Saturated (nlsim): Fourier series of 1 - exp(-s (1 + m cos)).
        c_{-h} = c_h (the pattern is even in its phase). ``orientation`` uses that
        orientation's modulation; None the nominal ``modulation``.
        """
        m = self.modulation if orientation is None else float(self.modulations()[orientation])
        if self.mode == "wf":
            return np.array([1.0])
        if self.mode == "sim":
            return np.array([1.0, m / 2.0])
        theta = 2.0 * np.pi * np.arange(256) / 256
        excitation = (1.0 + m * np.cos(theta)) / (1.0 + m)
        emission = 1.0 - np.exp(-self.saturation * excitation)
        series = np.fft.rfft(emission).real / emission.size
        coefficients = series[: _MAX_HARMONIC + 1] / series[0]
        keep = int(np.max(np.nonzero(np.abs(coefficients) >= _HARMONIC_FLOOR)[0]))
        return coefficients[: max(keep, self.max_harmonic) + 1]

    def intensity(
        self, pattern: int | None, shape: Sequence[int], pixel_size_nm: float, time_s: float = 0.0
    ) -> np.ndarray:
        """Effective pattern (mean 1) on a (Y, X) grid with pixel (0, 0) at the origin.

        ``pattern=None`` is the blank SLM: uniform wide-field illumination.
        """
        ny, nx = int(shape[0]), int(shape[1])
        if pattern is None or self.mode == "wf":
            return np.ones((ny, nx), dtype=np.float32)
        orientation, phase = self.orientation_phase(pattern)
        kx, ky = self.wave_vectors_cycles_per_nm()[orientation]
        phi = self.phases_rad(time_s)[orientation, phase]
        y = np.arange(ny)[:, None] * pixel_size_nm
        x = np.arange(nx)[None, :] * pixel_size_nm
        argument = 2.0 * np.pi * (kx * x + ky * y) + phi
        out = np.zeros((ny, nx), dtype=np.float64)
        for order, coefficient in enumerate(self.harmonic_coefficients(orientation)):
            weight = coefficient if order == 0 else 2.0 * coefficient
            out += weight * np.cos(order * argument)
        return out.astype(np.float32)
