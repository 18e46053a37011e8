"""SIM pattern parameters from raw frames: wave vector, phases and modulation per orientation.

Model of one raw frame (pattern I = 1 + m cos(2 pi p.r + phi), r in pixels from pixel (0, 0)):
    D(k) = H(k) [S(k) + m/2 e^{+i phi} S(k - p) + m/2 e^{-i phi} S(k + p)].
Wave vector: cross-correlation of the separated side band, shifted by a trial p, with the
wide-field band; sub-pixel by zooming a separable DFT around the integer peak. Phases: the
argument of each frame's shifted spectrum correlated with the wide-field band over the OTF
overlap (DC neighbourhoods excluded, so offset and haze do not bias it). Modulation: least
squares ratio of the separated side band to the wide-field band over the overlap, with the
wide-field noise power removed (so it stays unbiased at low photon counts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from pydantic import Field, ValidationError

from calibration.edge_taper import edge_taper
from calibration.otf import OtfLike, OtfModel, frequency_grid_cycles_per_px
from settings_file import StrictModel

logger = logging.getLogger(__name__)

# wide-field signal in the band overlap below this many noise sigmas: m is not measurable
MIN_OVERLAP_SIGMAS = 5.0


class OrientationParameters(StrictModel):
    """Pattern of one orientation: wave vector (cycles/px, (kx, ky)), phases, modulation."""

    wave_vector_cycles_per_px: tuple[float, float]
    phases_rad: list[float]
    modulation: float
    correlation: float = Field(
        default=0.0, description="normalised side-band / wide-field cross-correlation at the peak"
    )


class SimParameters(StrictModel):
    """Estimated pattern parameters of one raw set (orientation-major frame order)."""

    pixel_size_nm: float = Field(gt=0.0)
    orientations: list[OrientationParameters]

    @property
    def n_orientations(self) -> int:
        """Number of stripe orientations."""
        return len(self.orientations)

    @property
    def n_phases(self) -> int:
        """Phase steps per orientation."""
        return len(self.orientations[0].phases_rad)

    def wave_vectors_cycles_per_px(self) -> np.ndarray:
        """(n_orientations, 2) wave vectors (kx, ky) in cycles per raw pixel."""
        return np.array([o.wave_vector_cycles_per_px for o in self.orientations], dtype=float)

    def wave_vectors_cycles_per_nm(self) -> np.ndarray:
        """(n_orientations, 2) wave vectors (kx, ky) in cycles per nm."""
        return self.wave_vectors_cycles_per_px() / self.pixel_size_nm

    def phases_rad(self) -> np.ndarray:
        """(n_orientations, n_phases) pattern phases at pixel (0, 0)."""
        return np.array([o.phases_rad for o in self.orientations], dtype=float)

    def modulations(self) -> np.ndarray:
        """(n_orientations,) modulation depths m."""
        return np.array([o.modulation for o in self.orientations], dtype=float)


def estimate_sim_parameters(
    raw: np.ndarray,
    pixel_size_nm: float,
    otf: OtfLike | None = None,
    n_phases: int = 3,
    search_band: tuple[float, float] = (0.4, 1.3),
    offset_adu: float | None = None,
    edge_taper_px: int | None = None,
    dc_exclusion: float = 0.1,
    max_size_px: int | None = 256,
) -> SimParameters:
    """Estimate per-orientation wave vector, phases and modulation from one raw set (P, Y, X).

    ``search_band`` bounds |p| as fractions of the detection cutoff; ``dc_exclusion`` is the
    radius (fraction of the cutoff) around each band's DC left out of phase/modulation fits.
    Larger frames are analysed on their central ``max_size_px`` square (phases are moved
    back to pixel (0, 0) of the full frame); None analyses the whole frame.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ValueError(f"raw must be (P, Y, X), got shape {raw.shape}")
    if max_size_px is not None and max(raw.shape[1:]) > max_size_px:
        y0, x0 = central_origin(raw.shape, max_size_px)
        inner = estimate_sim_parameters(
            raw[:, y0 : y0 + max_size_px, x0 : x0 + max_size_px],
            pixel_size_nm,
            otf,
            n_phases,
            search_band,
            offset_adu,
            edge_taper_px,
            dc_exclusion,
            None,
        )
        return moved_origin(inner, x0, y0)
    n_patterns, ny, nx = raw.shape
    if n_phases < 3 or n_patterns % n_phases:
        raise ValueError(
            f"{n_patterns} frames cannot be split into orientations of n_phases={n_phases} (>= 3)"
        )
    if pixel_size_nm <= 0:
        raise ValueError(f"pixel_size_nm={pixel_size_nm} must be > 0")
    otf = otf or OtfModel()
    frames = raw.astype(np.float64)
    offset = float(np.percentile(frames, 0.5)) if offset_adu is None else float(offset_adu)
    taper_px = edge_taper_px if edge_taper_px is not None else max(4, min(ny, nx) // 16)
    window = edge_taper((ny, nx), taper_px)
    weighted = (frames - offset) * window
    spectra = sfft.fft2(weighted, workers=-1)
    grid = _Grid(ny, nx, pixel_size_nm, otf)
    wide_field = spectra.mean(axis=0)
    noise_power = grid.noise_power(wide_field)
    # phases and the fine wave vector come from real-space beats of identically filtered
    # bands over the image interior, on untapered frames: no window bias, edges left out
    plain = frames - offset
    plain_spectra = sfft.fft2(plain, workers=-1)
    plain_wide_field = plain_spectra.mean(axis=0)

    results = []
    for orientation in range(n_patterns // n_phases):
        block = slice(orientation * n_phases, (orientation + 1) * n_phases)
        nominal = 2.0 * np.pi * np.arange(n_phases) / n_phases
        _, side = _separate(spectra[block], nominal)
        coarse = _coarse_peak(grid, wide_field, side, search_band, dc_exclusion)
        wave_vector, correlation = _refine_peak(grid, wide_field, side, coarse, dc_exclusion)
        beat = _Beat(grid, plain_wide_field, dc_exclusion)
        phases = beat.phases(plain[block], wave_vector)
        for _ in range(3):
            _, plain_side = _separate(plain_spectra[block], phases)
            wave_vector = wave_vector + beat.slope_correction(plain_side, wave_vector)
            phases = beat.phases(plain[block], wave_vector)
        _, side = _separate(spectra[block], phases)
        modulation = _modulation(grid, wide_field, side, wave_vector, dc_exclusion, noise_power)
        logger.debug(
            "orientation %d: p=(%.5f, %.5f) cycles/px, phases=%s, m=%.3f, corr=%.3f",
            orientation,
            wave_vector[0],
            wave_vector[1],
            np.round(phases, 3),
            modulation,
            correlation,
        )
        results.append(
            OrientationParameters(
                wave_vector_cycles_per_px=(float(wave_vector[0]), float(wave_vector[1])),
                phases_rad=[float(_wrap(p)) for p in phases],
                modulation=float(modulation),
                correlation=float(correlation),
            )
        )
    return SimParameters(pixel_size_nm=pixel_size_nm, orientations=results)


def central_origin(shape: Sequence[int], size_px: int) -> tuple[int, int]:
    """(y0, x0) of the central ``size_px`` square of (..., Y, X) frames (0 where smaller)."""
    return max((shape[-2] - size_px) // 2, 0), max((shape[-1] - size_px) // 2, 0)


def moved_origin(parameters: SimParameters, x0: int, y0: int) -> SimParameters:
    """Phases referred to a pixel (x0, y0) earlier: phi = phi_crop - 2 pi p.(x0, y0) (a crop
    starting at (x0, y0) takes ``moved_origin(parameters, -x0, -y0)``)."""
    moved = []
    for orientation in parameters.orientations:
        kx, ky = orientation.wave_vector_cycles_per_px
        shift = 2.0 * np.pi * (kx * x0 + ky * y0)
        phases = [_wrap(phase - shift) for phase in orientation.phases_rad]
        moved.append(orientation.model_copy(update={"phases_rad": phases}))
    return parameters.model_copy(update={"orientations": moved})


class _Grid:
    """Frequency coordinates (cycles/px) of the raw FFT grid and the OTF evaluated on it."""

    def __init__(self, ny: int, nx: int, pixel_size_nm: float, otf: OtfLike) -> None:
        self.shape = (ny, nx)
        self.ky, self.kx = frequency_grid_cycles_per_px((ny, nx))
        self.radius = np.hypot(self.ky, self.kx)
        self.pixel_size_nm = pixel_size_nm
        self.otf_model = otf
        self.cutoff = otf.cutoff_cycles_per_nm * pixel_size_nm  # cycles per pixel
        self._otf_cache: dict[tuple[float, float], np.ndarray] = {}

    def otf(self, shift: np.ndarray | Sequence[float] = (0.0, 0.0)) -> np.ndarray:
        """H(k - shift) on the grid, shift = (kx, ky) in cycles/px (cached per shift)."""
        key = (float(shift[0]), float(shift[1]))
        if key not in self._otf_cache:
            size = self.pixel_size_nm
            self._otf_cache[key] = self.otf_model.value(
                (self.kx - key[0]) / size, (self.ky - key[1]) / size, size
            )
        return self._otf_cache[key]

    def outside_dc(
        self, radius_fraction: float, shift: np.ndarray | Sequence[float] = (0.0, 0.0)
    ) -> np.ndarray:
        """True where |k - shift| is beyond radius_fraction of the cutoff."""
        distance = np.hypot(self.kx - shift[0], self.ky - shift[1])
        return distance > radius_fraction * self.cutoff

    def noise_power(self, spectrum: np.ndarray) -> float:
        """Mean |spectrum|^2 beyond 1.1 x cutoff (pure noise there); 0 when no such region."""
        region = self.radius > 1.1 * self.cutoff
        if region.sum() < 64:
            logger.info("no frequencies beyond the OTF cutoff: modulation not noise-corrected")
            return 0.0
        return float(np.mean(np.abs(spectrum[region]) ** 2))


def _wrap(angle: float) -> float:
    return float(np.angle(np.exp(1j * angle)))


def _separate(spectra: np.ndarray, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero band H S(k) and side band m/2 H(k) S(k + p) (the e^{-i phi} coefficient)."""
    mixing = np.stack(
        [np.ones_like(phases), np.exp(1j * phases), np.exp(-1j * phases)], axis=1
    ).astype(complex)
    unmixing = np.linalg.pinv(mixing)
    zero = unmixing[0, 0] * spectra[0]
    side = unmixing[2, 0] * spectra[0]
    for index in range(1, len(spectra)):
        zero += unmixing[0, index] * spectra[index]
        side += unmixing[2, index] * spectra[index]
    return zero, side


def _coarse_peak(
    grid: _Grid,
    wide_field: np.ndarray,
    side: np.ndarray,
    band: tuple[float, float],
    dc_exclusion: float,
) -> np.ndarray:
    """Integer-bin wave vector: peak of the normalised band cross-correlation in the annulus.

    Both bands are OTF-weighted with their DC neighbourhoods removed, and the correlation is
    divided by its expected noise level at each shift, so small shifts (large overlaps) do not
    win by size alone and patterns near the cutoff (TIRF-SIM) are still found.
    """
    keep = grid.outside_dc(dc_exclusion)
    zero = wide_field * grid.otf() * keep
    side = side * grid.otf() * keep
    correlation = np.abs(_cross_correlation(zero, side))
    noise = np.sqrt(np.abs(_cross_correlation(np.abs(zero) ** 2, np.abs(side) ** 2)))
    score = correlation / np.maximum(noise, 1e-12 * max(float(noise.max()), 1e-300))
    annulus = (grid.radius >= band[0] * grid.cutoff) & (grid.radius <= band[1] * grid.cutoff)
    if not annulus.any():
        raise ValueError(f"search_band={band} selects no frequencies on a {grid.shape} grid")
    index = np.unravel_index(np.argmax(np.where(annulus, score, -1.0)), score.shape)
    return np.array([grid.kx[0, index[1]], grid.ky[index[0], 0]])


def _cross_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Map over shifts s of sum_k conj(first(k)) second(k - s), via real-space products."""
    product = np.conj(sfft.ifft2(first, workers=-1)) * sfft.ifft2(second, workers=-1)
    return sfft.ifft2(product, workers=-1)


def _refine_peak(
    grid: _Grid,
    wide_field: np.ndarray,
    side: np.ndarray,
    coarse: np.ndarray,
    dc_exclusion: float,
) -> tuple[np.ndarray, float]:
    """Sub-pixel wave vector: zoomed DFT of the OTF-weighted band cross-correlation.

    Both bands' DC neighbourhoods are left out: the DC peak sits where the OTF falls steeply
    and would pull the estimate towards lower |p|.
    """
    ny, nx = grid.shape
    keep = grid.outside_dc(dc_exclusion) & grid.outside_dc(dc_exclusion, coarse)
    keep_side = grid.outside_dc(dc_exclusion) & grid.outside_dc(dc_exclusion, -coarse)
    zero_weighted = wide_field * grid.otf(coarse) * keep
    side_weighted = side * grid.otf(-coarse) * keep_side
    product = np.conj(sfft.ifft2(zero_weighted, workers=-1)) * sfft.ifft2(side_weighted, workers=-1)
    y = np.arange(ny)
    x = np.arange(nx)
    centre = coarse.copy()
    span_bins = 1.0
    peak = 0.0
    for _ in range(4):
        steps = np.linspace(-span_bins, span_bins, 9)
        trial_kx = centre[0] + steps / nx
        trial_ky = centre[1] + steps / ny
        ex = np.exp(2j * np.pi * np.outer(x, trial_kx))
        ey = np.exp(2j * np.pi * np.outer(y, trial_ky))
        values = np.abs(ey.T @ product @ ex)
        row, col = np.unravel_index(np.argmax(values), values.shape)
        centre = np.array([trial_kx[col], trial_ky[row]])
        peak = float(values[row, col])
        span_bins /= 4.0
    norm = np.sqrt(np.sum(np.abs(zero_weighted) ** 2) * np.sum(np.abs(side_weighted) ** 2))
    correlation = peak * ny * nx / norm if norm > 0 else 0.0
    return centre, correlation


def _shifted_spectrum(image: np.ndarray, wave_vector: np.ndarray) -> np.ndarray:
    """Spectrum of ``image`` moved by +p: F(k - p), via a real-space phase ramp."""
    ny, nx = image.shape[-2:]
    x = np.arange(nx)[None, :]
    y = np.arange(ny)[:, None]
    ramp = np.exp(2j * np.pi * (wave_vector[0] * x + wave_vector[1] * y))
    return sfft.fft2(image * ramp, workers=-1)


class _Beat:
    """Real-space beats of the wide-field band with shifted frames or side bands.

    Both partners are filtered so that the object spectrum sees the same filter
    H(k) H(k - p) (DC neighbourhoods removed); their product is then m/2 e^{-i phi} |s_f(r)|^2
    at the true p, whose phase is flat across the image. Sums run over the image interior
    (a tenth of each side, at least 4 px, left out at every edge).
    """

    def __init__(self, grid: _Grid, wide_field: np.ndarray, dc_exclusion: float) -> None:
        self.grid = grid
        self.wide_field = wide_field
        self.wide_field_image = sfft.ifft2(wide_field, workers=-1).real
        ny, nx = grid.shape
        margin_y, margin_x = max(4, ny // 10), max(4, nx // 10)
        self.interior = (slice(margin_y, ny - margin_y), slice(margin_x, nx - margin_x))
        self.dc_exclusion = dc_exclusion

    def _partners(self, wave_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid = self.grid
        keep = grid.outside_dc(self.dc_exclusion) & grid.outside_dc(self.dc_exclusion, wave_vector)
        reference = sfft.ifft2(self.wide_field * grid.otf(wave_vector) * keep, workers=-1)
        return reference[self.interior], grid.otf() * keep

    def phases(self, frames: np.ndarray, wave_vector: np.ndarray) -> np.ndarray:
        """Per-frame phase: -arg sum_r conj(b0_f(r)) [(d - b0) e^{2 pi i p.r}]_f(r)."""
        reference, side_filter = self._partners(wave_vector)
        phases = []
        for frame in frames:
            moved = _shifted_spectrum(frame - self.wide_field_image, wave_vector)
            local = sfft.ifft2(moved * side_filter, workers=-1)[self.interior]
            phases.append(-np.angle(np.sum(np.conj(reference) * local)))
        return np.array(phases)

    def slope_correction(self, side: np.ndarray, wave_vector: np.ndarray) -> np.ndarray:
        """Wave-vector correction (cycles/px) from the phase ramp a wrong p leaves in the beat."""
        reference, side_filter = self._partners(wave_vector)
        moved = _shifted_spectrum(sfft.ifft2(side, workers=-1), wave_vector)
        local = sfft.ifft2(moved * side_filter, workers=-1)[self.interior]
        beat = np.conj(reference) * local
        return _phase_plane(beat) + 0.0


def _phase_plane(beat: np.ndarray, n_blocks: int = 4) -> np.ndarray:
    """-(gradient of the beat's phase)/(2 pi): block sums, weighted plane fit; (d_x, d_y)."""
    ny, nx = beat.shape
    by = ny // n_blocks
    bx = nx // n_blocks
    blocks = beat[: by * n_blocks, : bx * n_blocks].reshape(n_blocks, by, n_blocks, bx)
    sums = blocks.sum(axis=(1, 3))
    total = sums.sum()
    if abs(total) == 0:
        return np.zeros(2)
    phase = np.angle(sums * np.conj(total))
    weight = np.abs(sums)
    cy = (np.arange(n_blocks) + 0.5) * by
    cx = (np.arange(n_blocks) + 0.5) * bx
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    design = np.stack([np.ones(n_blocks * n_blocks), xx.ravel(), yy.ravel()], axis=1)
    sqrt_w = np.sqrt(weight.ravel())
    solution, *_ = np.linalg.lstsq(design * sqrt_w[:, None], phase.ravel() * sqrt_w, rcond=None)
    return -np.array([solution[1], solution[2]]) / (2.0 * np.pi)


def _modulation(
    grid: _Grid,
    wide_field: np.ndarray,
    side: np.ndarray,
    wave_vector: np.ndarray,
    dc_exclusion: float,
    noise_power: float,
) -> float:
    """m from least squares of Bu(k-p) H(k) = m/2 B0(k) H(k-p) over the OTF overlap."""
    h_zero = grid.otf()
    h_side = grid.otf(wave_vector)
    mask = (
        (h_zero > 0)
        & (h_side > 0)
        & grid.outside_dc(dc_exclusion)
        & grid.outside_dc(dc_exclusion, wave_vector)
    )
    moved = _shifted_spectrum(sfft.ifft2(side, workers=-1), wave_vector)
    x = wide_field * h_side
    y = moved * h_zero
    numerator = np.sum(np.conj(x[mask]) * y[mask]).real
    noise = noise_power * np.sum(h_side[mask] ** 2)
    denominator = np.sum(np.abs(x[mask]) ** 2) - noise
    # spread of the noise term (exponential |n|^2, Hermitian pairs): sigma^2 sqrt(2 sum h^4)
    noise_spread = noise_power * np.sqrt(2.0 * np.sum(h_side[mask] ** 4))
    if denominator <= MIN_OVERLAP_SIGMAS * noise_spread:
        logger.warning(
            "modulation fit: wide-field signal in the band overlap is %.1f sigma of its noise "
            "(< %.0f); reporting m=0",
            denominator / max(noise_spread, 1e-300),
            MIN_OVERLAP_SIGMAS,
        )
        return 0.0
    return float(2.0 * numerator / denominator)


# --- checks, rig calibration and per-time-point phase refinement ------------------------------

MIN_MODULATION = 0.1
MAX_MODULATION = 1.0
# a refined phase offset counts when the three frames agree this well (circular resultant)
MIN_PHASE_AGREEMENT = 0.9


def check_sim_parameters(
    parameters: SimParameters, expected_period_nm: float | None = None
) -> list[str]:
    """Reasons not to trust a pattern fit (empty when it looks physical).

    Flags modulation outside [0.1, 1] (> 1 is impossible and means the OTF model is wrong;
    < 0.1 means no pattern was found), periods that differ between orientations by more than
    3 %, orientations not evenly spaced over 180 degrees (+-5 degrees) and, when given, a
    period more than 5 % from ``expected_period_nm`` (e.g. excitation / (2 illumination NA)).
    """
    problems = []
    periods = parameters.pixel_size_nm / np.hypot(*parameters.wave_vectors_cycles_per_px().T)
    for index, modulation in enumerate(parameters.modulations()):
        if modulation > MAX_MODULATION:
            problems.append(
                f"orientation {index}: modulation {modulation:.2f} > 1 is impossible "
                "(the OTF model: detection NA, emission or measured OTF, does not fit the data)"
            )
        elif modulation < MIN_MODULATION:
            problems.append(
                f"orientation {index}: modulation {modulation:.2f} < {MIN_MODULATION}: "
                "no usable pattern found (too dim, or the pattern is outside the search band)"
            )
    if len(periods) > 1 and (periods.max() - periods.min()) > 0.03 * np.median(periods):
        problems.append(
            "pattern periods differ between orientations: "
            + ", ".join(f"{p:.1f}" for p in periods)
            + " nm"
        )
    n_o = parameters.n_orientations
    if n_o > 1:
        waves = parameters.wave_vectors_cycles_per_px()
        angles = np.sort(np.degrees(np.arctan2(waves[:, 1], waves[:, 0])) % 180.0)
        steps = np.diff(np.concatenate([angles, angles[:1] + 180.0]))
        if np.any(np.abs(steps - 180.0 / n_o) > 5.0):
            problems.append(
                "orientations not evenly spaced: "
                + ", ".join(f"{a:.1f}" for a in angles)
                + " degrees"
            )
    if expected_period_nm is not None:
        off = np.abs(periods / expected_period_nm - 1.0)
        if np.any(off > 0.05):
            problems.append(
                f"pattern periods {', '.join(f'{p:.1f}' for p in periods)} nm differ from the "
                f"expected {expected_period_nm:.1f} nm by more than 5 %"
            )
    return problems


def usable_parameters(parameters: SimParameters) -> tuple[SimParameters, list[str]]:
    """Parameters a reconstruction can use, and what was changed (empty: used as fitted).

    Modulation above 1 is clipped to 1; an orientation whose modulation is below 0.1 (fit
    failed) takes the median of the others that are usable (the SLM writes one pattern
    contrast for all orientations); with none usable the fit is left as it is (the caller
    must warn: the reconstruction is then close to wide-field).
    """
    modulations = parameters.modulations()
    good = np.minimum(modulations[modulations >= MIN_MODULATION], MAX_MODULATION)
    changes = []
    updated = []
    for index, orientation in enumerate(parameters.orientations):
        m = orientation.modulation
        new = m
        if m > MAX_MODULATION:
            new = MAX_MODULATION
        elif m < MIN_MODULATION and good.size:
            new = float(np.median(good))
        if new != m:
            changes.append(f"orientation {index}: modulation {m:.2f} used as {new:.2f}")
        updated.append(orientation.model_copy(update={"modulation": float(new)}))
    return parameters.model_copy(update={"orientations": updated}), changes


class PatternCalibration(StrictModel):
    """Rig calibration of the illumination pattern: period, angle and modulation are fixed by
    the SLM / grating, so they are fitted once on a bright specimen and reused; only the
    phases are refined per time point (``refine_phases``)."""

    format: str = "livesim-pattern-calibration"
    version: int = 1
    parameters: SimParameters
    otf: str = Field(description="the OTF the fit used (NA + emission, or a measured file)")
    source: str = Field(default="", description="the stack it was fitted on")
    n_time_points: int = Field(default=1, ge=1)
    problems: list[str] = Field(default_factory=list, description="check_sim_parameters")

    def save(self, path: str | Path) -> Path:
        """Write as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PatternCalibration:
        """Read a saved calibration; errors name the file and the bad field."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such pattern calibration file")
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as error:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"{path}: not a valid pattern calibration ({fields})") from error


def calibrate_pattern(
    raw_sets: Sequence[np.ndarray],
    pixel_size_nm: float,
    otf: OtfLike,
    offset_adu: float | None = None,
    otf_description: str = "",
    source: str = "",
) -> PatternCalibration:
    """Fit the pattern on each raw set (P, Y, X) and combine: median wave vector and
    modulation per orientation (sign-aligned), phases of the first set."""
    if not len(raw_sets):
        raise ValueError("calibrate_pattern needs at least one raw set")
    fits = [
        estimate_sim_parameters(np.asarray(raw), pixel_size_nm, otf=otf, offset_adu=offset_adu)
        for raw in raw_sets
    ]
    first = fits[0]
    orientations = []
    for index, reference in enumerate(first.orientations):
        ref = np.array(reference.wave_vector_cycles_per_px)
        waves, modulations, correlations = [], [], []
        for fit in fits:
            wave = np.array(fit.orientations[index].wave_vector_cycles_per_px)
            waves.append(wave if np.dot(wave, ref) >= 0 else -wave)
            modulations.append(fit.orientations[index].modulation)
            correlations.append(fit.orientations[index].correlation)
        wave = np.median(np.array(waves), axis=0)
        orientations.append(
            reference.model_copy(
                update={
                    "wave_vector_cycles_per_px": (float(wave[0]), float(wave[1])),
                    "modulation": float(np.median(modulations)),
                    "correlation": float(np.median(correlations)),
                }
            )
        )
    parameters = first.model_copy(update={"orientations": orientations})
    problems = check_sim_parameters(parameters)
    for problem in problems:
        logger.warning("pattern calibration: %s", problem)
    return PatternCalibration(
        parameters=parameters,
        otf=otf_description,
        source=source,
        n_time_points=len(fits),
        problems=problems,
    )


@dataclass(frozen=True)
class PhaseFit:
    """Phases refined on one raw set: the parameters to use and how well the frames agreed."""

    parameters: SimParameters
    agreement: np.ndarray  # (n_orientations,) circular resultant of per-frame offsets, 0..1
    offsets_rad: np.ndarray  # (n_orientations,) common phase shift from the reference

    @property
    def reliable(self) -> bool:
        """True when every orientation's frames agree on one phase offset."""
        return bool(np.all(self.agreement >= MIN_PHASE_AGREEMENT))


def refine_phases(
    raw: np.ndarray,
    reference: SimParameters,
    otf: OtfLike,
    offset_adu: float | None = None,
    dc_exclusion: float = 0.1,
    max_size_px: int | None = 256,
) -> PhaseFit:
    """Phases of one raw set (P, Y, X) with the reference's wave vectors and phase steps.

    Each frame's phase is measured with the reference wave vector (real-space beat, as in
    ``estimate_sim_parameters``); the per-orientation common offset from the reference
    phases is their circular mean. Orientations whose frames disagree (agreement below
    ``MIN_PHASE_AGREEMENT``: noise, or the pattern drifted) keep the reference phases.
    """
    raw = np.asarray(raw)
    n_patterns, ny, nx = raw.shape
    if n_patterns != reference.n_orientations * reference.n_phases:
        raise ValueError(
            f"raw set has {n_patterns} frames; the reference pattern has "
            f"{reference.n_orientations} x {reference.n_phases}"
        )
    size = max_size_px or max(ny, nx)  # the central square analysed (None: whole frame)
    y0, x0 = central_origin(raw.shape, size)
    frames = raw[:, y0 : y0 + size, x0 : x0 + size].astype(np.float64)
    offset = float(np.percentile(frames, 0.5)) if offset_adu is None else float(offset_adu)
    plain = frames - offset
    cy, cx = plain.shape[1:]
    grid = _Grid(cy, cx, reference.pixel_size_nm, otf)
    plain_wide_field = sfft.fft2(plain, workers=-1).mean(axis=0)
    beat = _Beat(grid, plain_wide_field, dc_exclusion)
    n_p = reference.n_phases
    orientations, agreements, offsets = [], [], []
    for index, orientation in enumerate(reference.orientations):
        wave = np.array(orientation.wave_vector_cycles_per_px)
        # reference phases referred to the analysed crop's pixel (0, 0)
        shift = 2.0 * np.pi * (wave[0] * x0 + wave[1] * y0)
        expected = np.array(orientation.phases_rad) + shift
        measured = beat.phases(plain[index * n_p : (index + 1) * n_p], wave)
        resultant = np.mean(np.exp(1j * (measured - expected)))
        agreement = float(np.abs(resultant))
        delta = float(np.angle(resultant)) if agreement >= MIN_PHASE_AGREEMENT else 0.0
        agreements.append(agreement)
        offsets.append(delta)
        phases = [_wrap(p + delta) for p in orientation.phases_rad]
        orientations.append(orientation.model_copy(update={"phases_rad": phases}))
    return PhaseFit(
        reference.model_copy(update={"orientations": orientations}),
        np.array(agreements),
        np.array(offsets),
    )
