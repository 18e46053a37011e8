"""Detection optics: the incoherent optical transfer function of a circular pupil.

The OTF decides what the camera can see: nothing above the cutoff 2 NA / lambda_em reaches
the detector, which is why SIM has to shift high frequencies down with a striped pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Optics(BaseModel):
    """Objective, wavelengths and sample-plane pixel size of the detection path."""

    model_config = ConfigDict(extra="forbid")

    na: float = Field(
        default=1.35, gt=0.0, le=1.7, description="numerical aperture of the objective"
    )
    immersion_index: float = Field(default=1.518, ge=1.0, le=2.0)
    excitation_nm: float = Field(default=488.0, gt=200.0, lt=2000.0)
    emission_nm: float = Field(default=525.0, gt=200.0, lt=2000.0)
    pixel_size_nm: float = Field(
        default=62.6, gt=1.0, lt=10000.0, description="sample-plane size of an unbinned pixel"
    )
    otf_attenuation: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="aberration damping: OTF multiplied by exp(-otf_attenuation * k/k_cutoff)",
    )
    background_fraction: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="out-of-focus haze, as a fraction of the in-focus signal (unmodulated)",
    )

    @model_validator(mode="after")
    def _na_below_index(self) -> Optics:
        if self.na >= self.immersion_index:
            raise ValueError(
                f"na={self.na} must be below immersion_index={self.immersion_index}"
            )
        return self

    @property
    def cutoff_cycles_per_nm(self) -> float:
        """Incoherent detection cutoff 2 NA / lambda_em in cycles per nm."""
        return 2.0 * self.na / self.emission_nm

    @property
    def resolution_nm(self) -> float:
        """Abbe resolution lambda_em / (2 NA) in nm."""
        return 1.0 / self.cutoff_cycles_per_nm


def otf_of_frequency(
    k_cycles_per_nm: np.ndarray, optics: Optics, cutoff_cycles_per_nm: float | None = None
) -> np.ndarray:
    """OTF at radial frequencies (cycles/nm): circular pupil, optional damping.

    ``cutoff_cycles_per_nm`` overrides 2 NA / lambda_em (the SIM-extended OTF of the SR target).
    """
    cutoff = optics.cutoff_cycles_per_nm if cutoff_cycles_per_nm is None else cutoff_cycles_per_nm
    rho = np.abs(np.asarray(k_cycles_per_nm, dtype=np.float64)) / cutoff
    inside = rho < 1.0
    r = np.where(inside, rho, 1.0)
    value = (2.0 / np.pi) * (np.arccos(r) - r * np.sqrt(1.0 - r * r))
    if optics.otf_attenuation > 0.0:
        value = value * np.exp(-optics.otf_attenuation * r)
    return np.where(inside, value, 0.0)


def frequency_grid_cycles_per_nm(
    shape: Sequence[int], pixel_size_nm: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ky, kx) broadcastable frequency coordinates of an unshifted FFT grid, cycles/nm."""
    ny, nx = int(shape[0]), int(shape[1])
    ky = np.fft.fftfreq(ny, d=pixel_size_nm)[:, None]
    kx = np.fft.fftfreq(nx, d=pixel_size_nm)[None, :]
    return ky, kx


def otf(shape: Sequence[int], pixel_size_nm: float, optics: Optics) -> np.ndarray:
    """OTF sampled on an unshifted FFT grid of ``shape`` (float32, OTF(0) = 1)."""
    ky, kx = frequency_grid_cycles_per_nm(shape, pixel_size_nm)
    return otf_of_frequency(np.hypot(ky, kx), optics).astype(np.float32)
