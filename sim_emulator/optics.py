"""Detection optics: the incoherent optical transfer function of an aberrated circular pupil.

The OTF decides what the camera can see: nothing above the cutoff 2 NA / lambda_em reaches
the detector, which is why SIM has to shift high frequencies down with a striped pattern.
The emulator renders with the OTF of a pupil carrying residual defocus and spherical
aberration (Zernike, rms waves), so it is never the ideal OTF that reconstruction assumes
(calibration.otf): no inverse crime.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pydantic import Field, model_validator

from settings_file import StrictModel


class Optics(StrictModel):
    """Objective, wavelengths and sample-plane pixel size of the detection path."""

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
    defocus_waves_rms: float = Field(
        default=0.04, ge=0.0, le=1.0,
        description="residual defocus of the detection pupil (Zernike Z(2,0), rms waves)",
    )
    spherical_waves_rms: float = Field(
        default=0.06, ge=0.0, le=1.0,
        description="primary spherical aberration of the pupil (Zernike Z(4,0), rms waves)",
    )
    background_fraction: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="out-of-focus haze: its total light as a multiple of the in-focus light",
    )
    background_blur_nm: float = Field(
        default=1200.0, gt=0.0, le=1e5,
        description="out-of-focus haze: Gaussian blur sigma in the focal plane",
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


_PUPIL_SAMPLES = 96  # pupil diameter in samples for the aberrated OTF profile
_PROFILE_PAD = 4  # grid / pupil diameter (>= 2: the autocorrelation does not wrap)


@lru_cache(maxsize=32)
def _aberrated_profile(defocus_waves: float, spherical_waves: float) -> np.ndarray:
    """Radial OTF of the aberrated pupil at rho = 0 .. 1 (incoherent cutoff), 1 at rho = 0.

    The pupil P(u) = circ(|u| <= 1) exp(i 2 pi W(u)) with W = a_d sqrt(3)(2u^2 - 1) +
    a_s sqrt(5)(6u^4 - 6u^2 + 1) (rms-normalised Zernike); the OTF is its autocorrelation,
    computed as the FFT of |FFT(P)|^2. W is rotationally symmetric, so the OTF is real and
    radial: its profile along one axis is the whole OTF.
    """
    n = _PUPIL_SAMPLES * _PROFILE_PAD
    u = (np.arange(n) - n // 2) / (_PUPIL_SAMPLES / 2.0)
    uu = u[:, None] ** 2 + u[None, :] ** 2
    aperture = uu <= 1.0
    wavefront = defocus_waves * np.sqrt(3.0) * (2 * uu - 1) + spherical_waves * np.sqrt(5.0) * (
        6 * uu**2 - 6 * uu + 1
    )
    pupil = np.where(aperture, np.exp(2j * np.pi * wavefront), 0.0)
    psf = np.abs(np.fft.fft2(np.fft.ifftshift(pupil))) ** 2
    transfer = np.fft.fft2(psf).real
    transfer /= transfer[0, 0]
    # row 0 = frequencies 0, 1, 2 ... pupil samples; the incoherent cutoff is 2 radii = n/PAD
    return np.clip(transfer[0, : _PUPIL_SAMPLES + 1], 0.0, None)


def ideal_otf_of_rho(rho: np.ndarray) -> np.ndarray:
    """Diffraction-limited OTF of a circular pupil at rho = k / cutoff (0 beyond 1)."""
    r = np.clip(np.abs(rho), 0.0, 1.0)
    value = (2.0 / np.pi) * (np.arccos(r) - r * np.sqrt(1.0 - r * r))
    return np.where(np.abs(rho) < 1.0, value, 0.0)


def otf_of_frequency(
    k_cycles_per_nm: np.ndarray, optics: Optics, cutoff_cycles_per_nm: float | None = None
) -> np.ndarray:
    """Rendering OTF at radial frequencies (cycles/nm): aberrated circular pupil, damping.

    ``cutoff_cycles_per_nm`` overrides 2 NA / lambda_em for the SIM-extended OTF of the SR
    target, which keeps the diffraction-limited shape (the target is what an ideal SIM system
    would give).
    """
    cutoff = optics.cutoff_cycles_per_nm if cutoff_cycles_per_nm is None else cutoff_cycles_per_nm
    rho = np.abs(np.asarray(k_cycles_per_nm, dtype=np.float64)) / cutoff
    inside = rho < 1.0
    r = np.where(inside, rho, 1.0)
    aberrated = cutoff_cycles_per_nm is None and (
        optics.defocus_waves_rms > 0 or optics.spherical_waves_rms > 0
    )
    if aberrated:
        profile = _aberrated_profile(optics.defocus_waves_rms, optics.spherical_waves_rms)
        value = np.interp(r * _PUPIL_SAMPLES, np.arange(profile.size), profile)
    else:
        value = ideal_otf_of_rho(r)
    if optics.otf_attenuation > 0.0:
        value = value * np.exp(-optics.otf_attenuation * r)
    return np.where(inside, value, 0.0)


def strehl_ratio(optics: Optics) -> float:
    """Volume of the rendering OTF relative to the diffraction-limited one (the Strehl ratio)."""
    rho = np.linspace(0.0, 1.0, 2001)
    k = rho * optics.cutoff_cycles_per_nm
    weights = rho * np.gradient(rho)
    rendering = np.sum(otf_of_frequency(k, optics) * weights)
    return float(rendering / np.sum(ideal_otf_of_rho(rho) * weights))


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
