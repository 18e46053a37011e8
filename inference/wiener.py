"""Generalised Wiener SIM reconstruction (Gustafsson 2000), written as its physical steps.

Steps, as in fairSIM: (1) band separation per orientation, (2) band shift onto the 2x grid
(integer part by placement in the fine spectrum, sub-bin part by a phase ramp on the raw grid),
(3) OTF weighting of every band, (4) the Wiener denominator sum |OTF_b|^2 + w^2,
(5) apodisation to the extended support, (6) an optional notch that damps each band's
out-of-focus DC neighbourhood. Everything that depends only on the pattern parameters is
precomputed in :class:`WienerSim`, so one reconstruction is a few FFTs and multiplies.

Only the e^{-i phi} side band of each orientation is computed: for real frames the other side
band is its conjugate mirror, so the fine image is 2 Re(IFFT(Z)) of a half-assembled spectrum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from pydantic import Field

from calibration.edge_taper import edge_taper, smooth_spectrum
from calibration.otf import OtfLike, pupil_otf
from calibration.sim_parameters import (
    SimParameters,
    check_sim_parameters,
    estimate_sim_parameters,
    refine_phases,
    usable_parameters,
)
from settings_file import StrictModel, load_settings

logger = logging.getLogger(__name__)


class WienerConfig(StrictModel):
    """Reconstruction settings; the defaults suit 2x linear SIM of thin live-cell samples."""

    wiener_parameter: float = Field(default=0.1, gt=0.0, le=10.0)
    apodization_cutoff: float = Field(
        default=1.0, gt=0.0, le=2.0, description="fraction of the extended cutoff k_c + |p|"
    )
    apodization_bend: float = Field(default=0.9, gt=0.0, le=5.0)
    notch_strength: float = Field(
        default=0.0, ge=0.0, le=1.0, description="0 = no notch; 1 = each band's DC removed"
    )
    notch_fwhm_fraction: float = Field(
        default=0.2, gt=0.0, le=2.0, description="notch width as a fraction of k_c"
    )
    edge_mode: Literal["periodic", "taper"] = Field(
        default="periodic",
        description=(
            "periodic: periodic + smooth decomposition of every band (whole field kept, the "
            "smooth part added back unfiltered); taper: cosine fade of edge_taper_px (dark rim)"
        ),
    )
    edge_taper_px: int = Field(default=16, ge=0, le=4096, description="taper mode only")
    background_adu: float = Field(default=0.0, ge=0.0, le=65535.0)
    clip_negative: bool = True

    @classmethod
    def from_toml(cls, path: str | Path) -> WienerConfig:
        """Settings from a TOML file (top level or a [wiener] table); errors name the field."""
        return load_settings(cls, path, "Wiener settings", table="wiener")


class WienerSim:
    """Wiener SIM for fixed frame size and pattern parameters: filters built once."""

    def __init__(
        self,
        shape: tuple[int, int],
        parameters: SimParameters,
        otf: OtfLike,
        config: WienerConfig | None = None,
    ) -> None:
        ny, nx = int(shape[0]), int(shape[1])
        if ny % 2 or nx % 2 or ny < 8 or nx < 8:
            raise ValueError(f"frame shape {shape} must be even and at least 8 x 8")
        if parameters.n_phases < 3:
            raise ValueError(f"linear SIM needs >= 3 phases, got {parameters.n_phases}")
        self.shape = (ny, nx)
        self.parameters = parameters
        self.otf = otf
        self.config = config or WienerConfig()
        self.n_orientations = parameters.n_orientations
        self.n_patterns = parameters.n_orientations * parameters.n_phases
        pixel_nm = parameters.pixel_size_nm
        self.output_pixel_size_nm = pixel_nm / 2.0
        self._periodic = self.config.edge_mode == "periodic"
        taper_px = 0 if self._periodic else self.config.edge_taper_px
        self._window = edge_taper(self.shape, taper_px).astype(np.float32)
        self._offsets, self._ramps = self._band_shifts()
        self._set_unmixing()
        self.fit_problems: list[str] = []
        self._side_filters, self._zero_filter, self._smooth_filter = self._band_filters()
        self._placements = [
            self._placement(orientation) for orientation in range(self.n_orientations)
        ]
        # (-1)^y undoes the centred row layout; x4 because the fine grid has 4x the pixels
        sign_y = np.where(np.arange(2 * ny) % 2 == 0, 4.0, -4.0)
        self._output_scale = sign_y.astype(np.float32)[:, None]
        self._torch_plans: dict[str, Any] = {}

    @classmethod
    def from_raw(
        cls,
        raw: np.ndarray,
        pixel_size_nm: float,
        otf: OtfLike,
        config: WienerConfig | None = None,
    ) -> WienerSim:
        """Estimate the pattern parameters on one raw set (P, Y, X), then build the filters."""
        config = config or WienerConfig()
        fitted = estimate_sim_parameters(
            raw, pixel_size_nm, otf=otf, offset_adu=config.background_adu or None
        )
        problems = check_sim_parameters(fitted)
        parameters, changes = usable_parameters(fitted)
        for problem in problems + changes:
            logger.warning("pattern fit: %s", problem)
        sim = cls((raw.shape[-2], raw.shape[-1]), parameters, otf, config)
        sim.fit_problems = problems + changes
        return sim

    # --- precomputation -------------------------------------------------------------------

    def _set_unmixing(self) -> None:
        """Unmixing rows and per-frame weights from the current parameters' phases."""
        self._mixing = self._unmixing_rows()
        # per-frame complex unmixing coefficients; taper mode folds in the sub-bin ramp, the
        # taper and (-1)^(x+y) (periodic mode applies them after the border decomposition)
        n_p = self.parameters.n_phases
        coefficients = np.empty((self.n_orientations, n_p), dtype=np.complex64)
        for orientation in range(self.n_orientations):
            for phase in range(n_p):
                row = self._mixing[:, orientation * n_p + phase]
                coefficients[orientation, phase] = complex(
                    row[2 * orientation], row[2 * orientation + 1]
                )
        if self._periodic:
            self._frame_weights = coefficients[:, :, None, None].astype(np.complex64)
        else:
            self._frame_weights = (coefficients[:, :, None, None] * self._ramps[:, None]).astype(
                np.complex64
            )

    def set_phases(self, parameters: SimParameters) -> None:
        """Use new phases (same wave vectors and modulations): only the unmixing is rebuilt."""
        old = self.parameters
        if parameters.n_orientations != old.n_orientations or parameters.n_phases != old.n_phases:
            raise ValueError("set_phases: the pattern layout (orientations x phases) changed")
        if not (
            np.allclose(parameters.wave_vectors_cycles_per_px(), old.wave_vectors_cycles_per_px())
            and np.allclose(parameters.modulations(), old.modulations())
        ):
            raise ValueError(
                "set_phases: wave vectors or modulations changed; build a new WienerSim"
            )
        self.parameters = parameters
        self._set_unmixing()
        self._torch_plans.clear()

    def _unmixing_rows(self) -> np.ndarray:
        """(2 n_o + 1, P) real matrix: Re/Im of each side band, then the mean zero band."""
        n_o = self.n_orientations
        n_p = self.parameters.n_phases
        rows = np.zeros((2 * n_o + 1, self.n_patterns))
        for orientation, phases in enumerate(self.parameters.phases_rad()):
            mixing = np.stack([np.ones(n_p), np.exp(1j * phases), np.exp(-1j * phases)], axis=1)
            unmixing = np.linalg.pinv(mixing)
            block = slice(orientation * n_p, (orientation + 1) * n_p)
            rows[2 * orientation, block] = unmixing[2].real
            rows[2 * orientation + 1, block] = unmixing[2].imag
            rows[-1, block] = unmixing[0].real / n_o
        return rows.astype(np.float32)

    def _band_shifts(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer bin offsets (n_o, 2 as (ny, nx)) and sub-bin phase ramps (n_o, Y, X)."""
        ny, nx = self.shape
        waves = self.parameters.wave_vectors_cycles_per_px()
        offsets = np.zeros((self.n_orientations, 2), dtype=int)
        ramps = np.empty((self.n_orientations, ny, nx), dtype=np.complex64)
        y = np.arange(ny)[:, None]
        x = np.arange(nx)[None, :]
        # (-1)^(x+y) centres each band's FFT, so no fftshift is needed per frame
        checker = np.where((x + y) % 2 == 0, 1.0, -1.0)
        for orientation, (kx, ky) in enumerate(waves):
            n_y, n_x = round(float(ky) * ny), round(float(kx) * nx)
            if abs(n_y) > ny // 2 - 2 or abs(n_x) > nx // 2 - 2:
                raise ValueError(
                    f"wave vector ({kx:.4f}, {ky:.4f}) cycles/px is too close to the raw Nyquist"
                )
            offsets[orientation] = (n_y, n_x)
            frac_y, frac_x = ky - n_y / ny, kx - n_x / nx
            ramp = np.exp(2j * np.pi * (frac_x * x + frac_y * y))
            ramps[orientation] = ramp * self._window * checker
        self._zero_window = (self._window * np.where(y % 2 == 0, 1.0, -1.0)).astype(np.float32)
        return offsets, ramps

    def _placement(self, orientation: int) -> tuple[int, int, int, int, int]:
        """Where a side band box and its conjugate mirror land in the half fine spectrum.

        Returns (box_top, box_first_col, mirror_top, mirror_first_col, ...) in the
        row-centred, column-natural (rfft) layout; only columns with k_x >= 0 are kept.
        """
        ny, nx = self.shape
        n_y, n_x = (int(v) for v in self._offsets[orientation])
        box_top = ny // 2 + n_y
        box_first_col = nx // 2 - n_x  # box column whose k_x is 0
        mirror_top = ny // 2 + 1 - n_y
        mirror_first_col = max(nx // 2 + n_x - 1, 0)  # flipped-box column whose k_x is 0
        return box_top, box_first_col, mirror_top, mirror_first_col, n_x

    def _band_filters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Real filters: side bands in their own centred raw-sized box; zero band and the
        smooth border part (apodisation only), rfft layout."""
        ny, nx = self.shape
        pixel_nm = self.parameters.pixel_size_nm
        waves = self.parameters.wave_vectors_cycles_per_px()
        modulations = self.parameters.modulations()
        cutoff = self.otf.cutoff_cycles_per_nm * pixel_nm  # cycles per raw pixel
        qy = (np.arange(ny) - ny // 2)[:, None] / ny
        qx = (np.arange(nx) - nx // 2)[None, :] / nx
        extended = cutoff + float(np.max(np.hypot(waves[:, 0], waves[:, 1])))
        apodization_radius = self.config.apodization_cutoff * extended

        def band_otf(kx: np.ndarray, ky: np.ndarray, centre: np.ndarray) -> np.ndarray:
            dx, dy = kx - centre[0], ky - centre[1]
            value = self.otf.value(dx / pixel_nm, dy / pixel_nm, pixel_nm)
            if self.config.notch_strength > 0:
                sigma = self.config.notch_fwhm_fraction * cutoff / 2.3548
                value = value * (
                    1.0 - self.config.notch_strength * np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
                )
            return value

        def wiener_weight(kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
            """A(k) / (sum_b |O_b(k)|^2 + w^2) at fine-grid frequencies (cycles/raw px)."""
            total = self.n_orientations * band_otf(kx, ky, np.zeros(2)) ** 2
            for wave, modulation in zip(waves, modulations, strict=True):
                amplitude = (modulation / 2.0) ** 2
                total = total + amplitude * (
                    band_otf(kx, ky, wave) ** 2 + band_otf(kx, ky, -wave) ** 2
                )
            apodization = (
                pupil_otf(np.hypot(kx, ky) / apodization_radius) ** self.config.apodization_bend
            )
            return apodization / (total + self.config.wiener_parameter**2)

        sides = np.empty((self.n_orientations, ny, nx), dtype=np.float32)
        for orientation, (wave, modulation) in enumerate(zip(waves, modulations, strict=True)):
            n_y, n_x = self._offsets[orientation]
            ky = qy + n_y / ny
            kx = qx + n_x / nx
            sides[orientation] = (modulation / 2.0) * band_otf(kx, ky, wave) * wiener_weight(kx, ky)
        qx_half = np.arange(nx // 2 + 1)[None, :] / nx
        zero = self.n_orientations * band_otf(qx_half, qy, np.zeros(2)) * wiener_weight(qx_half, qy)
        smooth = (
            pupil_otf(np.hypot(qx_half, qy) / apodization_radius) ** self.config.apodization_bend
        )
        return sides, zero.astype(np.float32), smooth.astype(np.float32)

    # --- reconstruction ---------------------------------------------------------------------

    def _check(self, raw: np.ndarray) -> None:
        if raw.shape != (self.n_patterns, *self.shape):
            raise ValueError(
                f"raw set must be {(self.n_patterns, *self.shape)} (P, Y, X), got {raw.shape}"
            )

    def reconstruct(self, raw: np.ndarray) -> np.ndarray:
        """Super-resolved (2Y, 2X) float32 image from one raw set (P, Y, X), in input units."""
        raw = np.asarray(raw)
        self._check(raw)
        ny, nx = self.shape
        frames = raw.reshape(self.n_patterns, ny, nx)
        n_p = self.parameters.n_phases
        sides = np.empty((self.n_orientations, ny, nx), dtype=np.complex64)
        term = np.empty((ny, nx), dtype=np.complex64)
        for orientation in range(self.n_orientations):
            side = sides[orientation]
            first = orientation * n_p
            np.multiply(self._frame_weights[orientation, 0], frames[first], out=side)
            for phase in range(1, n_p):
                np.multiply(
                    self._frame_weights[orientation, phase], frames[first + phase], out=term
                )
                side += term
        if self._periodic:
            # border jumps removed before the sub-bin ramp, which is not periodic either
            sides -= sfft.ifft2(smooth_spectrum(sides), workers=2)
            sides *= self._ramps
        # side-band rows sum to zero, so the background only enters the zero band
        # explicit multiply-adds: BLAS on a 1 x P by P x N product is slower here
        zero_image = np.multiply(frames[0], self._mixing[-1, 0], dtype=np.float32)
        for index in range(1, self.n_patterns):
            zero_image += frames[index] * self._mixing[-1, index]
        if self.config.background_adu:
            zero_image -= np.float32(self.config.background_adu)
        zero = sfft.rfft2(zero_image * self._zero_window, workers=2)
        smooth_half = None
        if self._periodic:
            # (-1)^y centres the rows: the smooth spectrum moves by ny/2 rows, no FFT needed
            smooth_half = np.roll(smooth_spectrum(zero_image), ny // 2, axis=0)[:, : nx // 2 + 1]
            zero -= smooth_half
        spectra = sfft.fft2(sides, workers=2, overwrite_x=True)
        spectra *= self._side_filters
        half = np.zeros((2 * ny, nx + 1), dtype=np.complex64)
        half[ny // 2 : ny // 2 + ny, : nx // 2 + 1] = zero * self._zero_filter
        if smooth_half is not None:
            half[ny // 2 : ny // 2 + ny, : nx // 2 + 1] += smooth_half * self._smooth_filter
        for spectrum, placement in zip(spectra, self._placements, strict=True):
            box_top, box_col, mirror_top, mirror_col, _ = placement
            box = spectrum[:, box_col:]
            half[box_top : box_top + ny, : box.shape[1]] += box
            mirror = np.conj(spectrum[::-1, ::-1][:, mirror_col:])
            half[mirror_top : mirror_top + ny, : mirror.shape[1]] += mirror
        image = sfft.irfft2(half, s=(2 * ny, 2 * nx), workers=2, overwrite_x=True)
        image *= self._output_scale
        if self.config.clip_negative:
            np.maximum(image, 0.0, out=image)
        return image.astype(np.float32, copy=False)

    def wide_field(self, raw: np.ndarray) -> np.ndarray:
        """Mean of the raw frames (Y, X) float32, background removed: the wide-field image."""
        raw = np.asarray(raw)
        self._check(raw)
        return raw.astype(np.float32).mean(axis=0) - np.float32(self.config.background_adu)

    def reconstruct_torch(self, raw: Any) -> Any:
        """Same reconstruction in torch (CPU or CUDA tensor in, tensor on that device out)."""
        device = str(raw.device)
        plan = self._torch_plans.get(device)
        if plan is None:
            plan = _TorchPlan(self, raw.device)
            self._torch_plans[device] = plan
        return plan.reconstruct(raw)


@dataclass
class TimePointFit:
    """The pattern parameters one time point was reconstructed with, and how they were got."""

    parameters: SimParameters
    source: str  # "estimated", "calibration", "refined", "kept", "re-estimated"
    phase_agreement: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def reliable(self) -> bool:
        """False when the fit was flagged (warnings were logged)."""
        return not self.problems

    def table_row(self) -> np.ndarray:
        """(n_orientations, 4): kx, ky (cycles/px), first phase (rad), modulation: /sim_params."""
        waves = self.parameters.wave_vectors_cycles_per_px()
        phases = self.parameters.phases_rad()[:, 0]
        return np.column_stack([waves, phases, self.parameters.modulations()])


class WienerSeries:
    """Wiener SIM of a time series: pattern geometry (period, angle, modulation) fixed, from a
    rig calibration or fitted on the first set; phases refined on every set; a full
    re-estimation after ``max_unreliable`` consecutive sets whose phases did not fit, adopted
    only when it passes ``check_sim_parameters``."""

    def __init__(
        self,
        shape: tuple[int, int],
        pixel_size_nm: float,
        otf: OtfLike,
        config: WienerConfig | None = None,
        calibration: SimParameters | None = None,
        max_unreliable: int = 2,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_nm = float(pixel_size_nm)
        self.otf = otf
        self.config = config or WienerConfig()
        self.max_unreliable = max_unreliable
        self._unreliable = 0
        self.sim: WienerSim | None = None
        if calibration is not None:
            if abs(calibration.pixel_size_nm - self.pixel_size_nm) > 1e-3 * self.pixel_size_nm:
                raise ValueError(
                    f"pattern calibration is for {calibration.pixel_size_nm} nm pixels, "
                    f"the data has {self.pixel_size_nm} nm"
                )
            self.sim = WienerSim(self.shape, calibration, otf, self.config)

    def reconstruct(self, raw: np.ndarray) -> tuple[np.ndarray, TimePointFit]:
        """(2Y, 2X) image of one raw set (P, Y, X) and the parameters it used."""
        raw = np.asarray(raw)
        offset = self.config.background_adu or None
        if self.sim is None:
            self.sim = WienerSim.from_raw(raw, self.pixel_size_nm, self.otf, self.config)
            fit = TimePointFit(self.sim.parameters, "estimated", None, list(self.sim.fit_problems))
            return self.sim.reconstruct(raw), fit
        phase_fit = refine_phases(raw, self.sim.parameters, self.otf, offset_adu=offset)
        if phase_fit.reliable:
            self._unreliable = 0
            self.sim.set_phases(phase_fit.parameters)
            fit = TimePointFit(self.sim.parameters, "refined", phase_fit.agreement)
        else:
            self._unreliable += 1
            problem = (
                "phase refinement unreliable (frame agreement "
                + ", ".join(f"{a:.2f}" for a in phase_fit.agreement)
                + f" < 0.9); phases of the last good fit kept ({self._unreliable} in a row)"
            )
            logger.warning("pattern fit: %s", problem)
            fit = TimePointFit(self.sim.parameters, "kept", phase_fit.agreement, [problem])
            if self._unreliable >= self.max_unreliable:
                fit = self._re_estimate(raw, fit)
        return self.sim.reconstruct(raw), fit

    def _re_estimate(self, raw: np.ndarray, kept: TimePointFit) -> TimePointFit:
        offset = self.config.background_adu or None
        candidate = estimate_sim_parameters(
            raw, self.pixel_size_nm, otf=self.otf, offset_adu=offset
        )
        problems = check_sim_parameters(candidate)
        if problems:
            message = "re-estimation rejected: " + "; ".join(problems)
            logger.warning("pattern fit: %s", message)
            return TimePointFit(
                kept.parameters, "kept", kept.phase_agreement, [*kept.problems, message]
            )
        self.sim = WienerSim(self.shape, candidate, self.otf, self.config)
        self._unreliable = 0
        logger.info("pattern re-estimated after %d unreliable phase fits", self.max_unreliable)
        return TimePointFit(candidate, "re-estimated")


class _TorchPlan:
    """The precomputed filters of a :class:`WienerSim` as tensors on one device."""

    def __init__(self, sim: WienerSim, device: Any) -> None:
        import torch

        self.torch = torch
        self.sim = sim
        self.mixing = torch.from_numpy(sim._mixing).to(device)
        self.zero_window = torch.from_numpy(sim._zero_window).to(device)
        self.ramps = torch.from_numpy(sim._ramps).to(device)
        self.side_filters = torch.from_numpy(sim._side_filters).to(device)
        self.zero_filter = torch.from_numpy(sim._zero_filter).to(device)
        self.smooth_filter = torch.from_numpy(sim._smooth_filter).to(device)
        ny, nx = sim.shape
        denominator = (
            2.0 * np.cos(2.0 * np.pi * np.arange(ny) / ny)[:, None]
            + 2.0 * np.cos(2.0 * np.pi * np.arange(nx) / nx)[None, :]
            - 4.0
        )
        denominator[0, 0] = np.inf  # the smooth part has zero mean
        self.inverse_laplacian = torch.from_numpy((1.0 / denominator).astype(np.float32)).to(device)
        self.output_scale = torch.from_numpy(sim._output_scale).to(device)
        self.background = float(sim.config.background_adu)

    def reconstruct(self, raw: Any) -> Any:
        """(P, Y, X) tensor -> (2Y, 2X) float32 tensor, same steps as the NumPy path."""
        torch = self.torch
        sim = self.sim
        ny, nx = sim.shape
        if tuple(raw.shape) != (sim.n_patterns, ny, nx):
            raise ValueError(
                f"raw set must be {(sim.n_patterns, ny, nx)} (P, Y, X), got {tuple(raw.shape)}"
            )
        frames = raw.reshape(sim.n_patterns, -1).to(torch.float32)
        if self.background:
            frames = frames - self.background
        mixed = (self.mixing @ frames).reshape(-1, ny, nx)
        n_o = sim.n_orientations
        sides = torch.complex(mixed[0 : 2 * n_o : 2], mixed[1 : 2 * n_o : 2])
        zero_image = mixed[-1]
        smooth = None
        if sim._periodic:
            sides = sides - self._smooth(sides)
            smooth = self._smooth(zero_image)
            zero_image = zero_image - smooth
        spectra = torch.fft.fft2(sides * self.ramps) * self.side_filters
        zero = torch.fft.rfft2(zero_image * self.zero_window) * self.zero_filter
        half = torch.zeros((2 * ny, nx + 1), dtype=torch.complex64, device=raw.device)
        half[ny // 2 : ny // 2 + ny, : nx // 2 + 1] = zero
        if smooth is not None:
            half[ny // 2 : ny // 2 + ny, : nx // 2 + 1] += (
                torch.fft.rfft2(smooth * self.zero_window) * self.smooth_filter
            )
        flipped = torch.conj(torch.flip(spectra, dims=(-2, -1)))
        for orientation, placement in enumerate(sim._placements):
            box_top, box_col, mirror_top, mirror_col, _ = placement
            box = spectra[orientation, :, box_col:]
            half[box_top : box_top + ny, : box.shape[1]] += box
            mirror = flipped[orientation, :, mirror_col:]
            half[mirror_top : mirror_top + ny, : mirror.shape[1]] += mirror
        image = torch.fft.irfft2(half, s=(2 * ny, 2 * nx)) * self.output_scale
        if sim.config.clip_negative:
            image = image.clamp_min(0.0)
        return image

    def _smooth(self, image: Any) -> Any:
        """calibration.edge_taper.smooth_component on (..., Y, X) tensors."""
        torch = self.torch
        rows = image[..., -1, :] - image[..., 0, :]
        cols = image[..., :, -1] - image[..., :, 0]
        boundary = torch.zeros_like(image)
        boundary[..., 0, :] += rows
        boundary[..., -1, :] -= rows
        boundary[..., :, 0] += cols
        boundary[..., :, -1] -= cols
        if torch.is_complex(image):
            return torch.fft.ifft2(torch.fft.fft2(boundary) * self.inverse_laplacian)
        spectrum = torch.fft.rfft2(boundary) * self.inverse_laplacian[:, : image.shape[-1] // 2 + 1]
        return torch.fft.irfft2(spectrum, s=image.shape[-2:])
