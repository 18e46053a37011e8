"""The detection OTF used by pattern estimation and Wiener SIM: circular pupil, damping, pixel.

Kept here (not in sim_emulator) because the reconstruction must work from the stated optics of
a real rig; the emulator's forward model is a separate, independent description.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class OtfModel(BaseModel):
    """Incoherent OTF of an ideal circular pupil, optionally damped and pixel-integrated."""

    model_config = ConfigDict(extra="forbid")

    na: float = Field(default=1.35, gt=0.0, le=1.7)
    emission_nm: float = Field(default=525.0, gt=200.0, lt=2000.0)
    attenuation: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="aberration damping exp(-attenuation * k / k_cutoff)",
    )
    pixel_integration: bool = Field(
        default=True, description="multiply by the camera pixel's sinc (area integration)"
    )

    @property
    def cutoff_cycles_per_nm(self) -> float:
        """Detection cutoff 2 NA / lambda_em in cycles per nm."""
        return 2.0 * self.na / self.emission_nm

    def value(
        self, kx_cycles_per_nm: np.ndarray, ky_cycles_per_nm: np.ndarray, pixel_size_nm: float
    ) -> np.ndarray:
        """OTF at frequencies (kx, ky) in cycles/nm; OTF(0) = 1, zero beyond the cutoff."""
        kx = np.asarray(kx_cycles_per_nm, dtype=np.float64)
        ky = np.asarray(ky_cycles_per_nm, dtype=np.float64)
        rho = np.hypot(kx, ky) / self.cutoff_cycles_per_nm
        out = pupil_otf(rho)
        if self.attenuation > 0.0:
            out = out * np.exp(-self.attenuation * np.minimum(rho, 1.0))
        if self.pixel_integration:
            out = out * np.sinc(kx * pixel_size_nm) * np.sinc(ky * pixel_size_nm)
        return out


def pupil_otf(rho: np.ndarray) -> np.ndarray:
    """Ideal incoherent OTF of a circular pupil at normalised radius rho = k / k_cutoff."""
    rho = np.abs(np.asarray(rho, dtype=np.float64))
    r = np.minimum(rho, 1.0)
    value = (2.0 / np.pi) * (np.arccos(r) - r * np.sqrt(1.0 - r * r))
    return np.where(rho < 1.0, value, 0.0)


def default_emission_nm(excitation_nm: float) -> float:
    """Typical emission peak for a laser line (GFP 525, mCherry 610, far-red 680), in nm."""
    for laser_nm, emission_nm in ((405.0, 460.0), (488.0, 525.0), (561.0, 610.0), (640.0, 680.0)):
        if abs(excitation_nm - laser_nm) <= 20.0:
            return emission_nm
    return excitation_nm + 40.0


def frequency_grid_cycles_per_px(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(ky, kx) broadcastable frequencies of an unshifted FFT grid, cycles per pixel."""
    ny, nx = shape
    return np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
