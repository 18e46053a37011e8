"""The detection OTF used by pattern estimation and Wiener SIM: circular pupil, damping, pixel.

Kept here (not in sim_emulator) because the reconstruction must work from the stated optics of
a real rig; the emulator's forward model is a separate, independent description.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import Field

from settings_file import StrictModel


class OtfLike(Protocol):
    """What pattern estimation and Wiener SIM need of a detection OTF."""

    @property
    def cutoff_cycles_per_nm(self) -> float:
        """Support radius: zero beyond it."""
        ...

    def value(
        self, kx_cycles_per_nm: np.ndarray, ky_cycles_per_nm: np.ndarray, pixel_size_nm: float
    ) -> np.ndarray:
        """OTF at (kx, ky) in cycles/nm; 1 at zero frequency."""
        ...


class OtfModel(StrictModel):
    """Incoherent OTF of an ideal circular pupil, optionally damped and pixel-integrated."""

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


# a measured radial OTF is treated as zero from the first radius where it falls below this
MEASURED_OTF_FLOOR = 0.003


@dataclass(frozen=True)
class MeasuredOtf:
    """A measured, rotationally averaged OTF (radial profile), e.g. the lab's *_OTF2d.mrc files.

    ``profile`` is |OTF| at radii ``k = i * spacing_cycles_per_nm`` normalised to 1 at k = 0;
    it already contains the camera pixel, so no pixel sinc is applied. The support ends where
    the profile first falls below ``MEASURED_OTF_FLOOR`` (the tail beyond is bead noise).
    """

    profile: np.ndarray
    spacing_cycles_per_nm: float
    source: str = ""

    @classmethod
    def from_mrc(cls, path: str | Path) -> MeasuredOtf:
        """Read a radial OTF stored as MRC mode 4 (complex64), shape (1, N); voxel size x is
        the radial sample spacing in cycles per micrometre (the rDL-SIM lab's convention)."""
        import mrcfile

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such OTF file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                with mrcfile.open(path, permissive=True) as mrc:
                    if mrc.data is None:
                        raise ValueError(f"{path}: MRC header read but no OTF data found")
                    data = np.array(mrc.data)
                    spacing_per_um = float(mrc.voxel_size.x)
            except (OSError, ValueError) as error:
                raise ValueError(f"{path}: not a readable MRC OTF file ({error})") from error
        profile = np.abs(np.asarray(data, dtype=np.complex128).reshape(-1))
        if profile.size < 8 or (data.ndim > 2 and data.shape[0] != 1):
            raise ValueError(
                f"{path}: expected a radial OTF profile of shape (1, N), got {data.shape}"
            )
        if not spacing_per_um > 0:
            raise ValueError(f"{path}: voxel size x = {spacing_per_um} is not a radial spacing")
        if profile[0] <= 0:
            raise ValueError(f"{path}: OTF value at zero frequency is {profile[0]}, expected 1")
        return cls(profile / profile[0], spacing_per_um / 1000.0, str(path))

    @property
    def cutoff_cycles_per_nm(self) -> float:
        """First radius where the profile falls below MEASURED_OTF_FLOOR (cycles/nm)."""
        below = np.flatnonzero(self.profile < MEASURED_OTF_FLOOR)
        index = int(below[0]) if below.size else self.profile.size - 1
        return index * self.spacing_cycles_per_nm

    def value(
        self, kx_cycles_per_nm: np.ndarray, ky_cycles_per_nm: np.ndarray, pixel_size_nm: float
    ) -> np.ndarray:
        """Linear interpolation of the profile at |k|; zero beyond the support."""
        radius = np.hypot(np.asarray(kx_cycles_per_nm, float), np.asarray(ky_cycles_per_nm, float))
        radii = np.arange(self.profile.size) * self.spacing_cycles_per_nm
        out = np.interp(radius, radii, self.profile, right=0.0)
        return np.where(radius < self.cutoff_cycles_per_nm, out, 0.0)


def estimate_otf_support_cycles_per_px(
    wide_field: np.ndarray, excess: float = 0.5, noise_from: float = 0.42
) -> float | None:
    """Highest spatial frequency (cycles/px) where the wide-field image still has signal.

    Azimuthal mean of the power spectrum (periodic component, so the border adds no cross)
    compared with the noise floor (mean power from ``noise_from`` to 0.5 cycles/px, where no
    optics of a Nyquist-sampled camera passes signal): the last radius whose power exceeds the
    floor by ``excess``. A lower bound of the OTF cutoff: noise hides the weakest part of the
    OTF. None when the image is undersampled (signal up to the noise region).
    """
    from calibration.edge_taper import periodic_component

    image = np.asarray(wide_field, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 32:
        raise ValueError(f"wide_field must be a 2-D image of at least 32 x 32, got {image.shape}")
    image = periodic_component(image - image.mean())
    power = np.abs(np.fft.fft2(image)) ** 2
    ky, kx = frequency_grid_cycles_per_px(image.shape)
    radius = np.hypot(ky, kx)
    step = 1.0 / min(image.shape)
    edges = np.arange(step, noise_from, step)
    profile = np.array([power[(radius >= r) & (radius < r + step)].mean() for r in edges])
    noise = float(np.mean(power[(radius >= noise_from) & (radius < 0.5)]))
    above = np.flatnonzero(profile > (1.0 + excess) * noise)
    if not above.size:
        return 0.0
    support = float(edges[above[-1]])  # the lower edge of the last bin: a lower bound
    return None if support >= noise_from - 2 * step else support
