"""What a raw SIM set looks like to a physicist: electrons, background, signal, modulation,
pattern period and noise spectrum, measured from the data alone.

One code path measures a real stack and an emulated one, so the two can be compared line by
line (docs/emulator.md). Nothing is taken from the file but the pixels and the optics:

- **Camera gain and offset from the data, per frame** (single-image photon transfer,
  Heintzmann et al. 2016): beyond the detection cutoff 2 NA / lambda_em an image holds only
  noise, white for shot and read noise. The power of a frame's out-of-band part in 16 x 16 px
  blocks, divided by the fraction of the spectrum it covers, is the local noise variance;
  against the block's mean it lies on the photon-transfer line ``variance = g (mean - offset)``
  (read noise folds into the offset: ``offset - g sigma_read^2``, about 2 e- low for an
  sCMOS). The line's slope is the gain in ADU per e-, its x-intercept the offset; block
  statistics are binned by mean and the bin medians fitted, so structure edges and hot pixels
  do not pull it. Each orientation's frames are fitted on their own: stacks that were
  intensity-stretched per orientation (as published test stacks often are) have a gain and
  offset per orientation, and a pooled fit would mix them.
- **Background and signal** on the wide-field image (mean of the frames) in e-, smoothed by a
  1 px Gaussian: the background is its 10th percentile in a window of ~1 um, smoothed; the
  signal is the excess over it on
  structure pixels (excess above 0.2 of its 99th percentile and above 4 noise sigmas), median
  and 90th percentile.
- **Photon count**: the average photon count (calibration.photon_count), mean over frames.
- **Pattern**: per orientation, the period and modulation of ``calibration.sim_parameters``
  with the given optics.
- **Noise spectrum**: the radially averaged power spectrum of a frame in e-^2 per pixel
  (white noise of variance s^2 gives s^2 at every frequency), beyond the cutoff: its level
  relative to the mean e- (1 for pure shot noise) and its flatness (outer / inner band).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
from pydantic import Field
from scipy.ndimage import gaussian_filter, percentile_filter, uniform_filter

from calibration.otf import OtfModel, frequency_grid_cycles_per_px
from calibration.photon_count import average_photon_count
from calibration.sim_parameters import estimate_sim_parameters
from settings_file import StrictModel

logger = logging.getLogger(__name__)

NOISE_BAND_START = 1.1  # out-of-band noise: frequencies above this x the detection cutoff
NOISE_BLOCK_PX = 16
NOISE_BINS = 24
BACKGROUND_WINDOW_NM = 1000.0
BACKGROUND_PERCENTILE = 10.0
SIGNAL_SIGMAS = 4.0
STRUCTURE_FRACTION_OF_PEAK = 0.2  # structure: excess above 0.2 x its 99th percentile...


class StackStatisticsError(ValueError):
    """A stack whose statistics cannot be measured (no noise band, no signal, bad shape)."""


class StackStatistics(StrictModel):
    """Physical statistics of one raw SIM set (all electrons are per pixel per frame)."""

    gain_adu_per_e: float = Field(description="median gain, from the out-of-band noise")
    offset_adu: float = Field(description="median dark level (read noise folded in)")
    orientation_gain_adu_per_e: list[float] = Field(description="gain of each orientation")
    orientation_offset_adu: list[float] = Field(description="offset of each orientation")
    background_e: float = Field(description="median background under the structure")
    signal_e: float = Field(description="median excess over background on structure pixels")
    signal_p90_e: float = Field(description="90th percentile of that excess")
    structure_fraction: float = Field(description="fraction of pixels counted as structure")
    photon_count_e: float = Field(description="average photon count (calibration.photon_count)")
    period_nm: list[float] = Field(description="pattern period per orientation")
    angle_deg: list[float] = Field(description="pattern wave-vector angle per orientation")
    modulation: list[float] = Field(description="modulation depth per orientation")
    noise_variance_e2: float = Field(description="out-of-band noise power per pixel")
    noise_to_mean: float = Field(description="noise_variance_e2 / mean e- (1: pure shot noise)")
    noise_flatness: float = Field(description="outer / inner out-of-band noise power")
    spectrum_frequency_cycles_per_nm: list[float] = Field(description="radial bin centres")
    spectrum_e2: list[float] = Field(description="radially averaged power, e-^2 per pixel")


def estimate_gain_and_offset(
    frames_adu: np.ndarray, cutoff_cycles_per_px: float, block_px: int | None = None
) -> tuple[float, float]:
    """(gain ADU/e-, offset ADU) of (P, Y, X) frames from their out-of-band noise.

    Blocks much larger than the PSF: the out-of-band filter spreads each pixel's noise over a
    PSF-sized neighbourhood, which smooths the variance map and flattens the line when blocks
    are small (8 px blocks read the gain ~10 % low; 16 px blocks, the default, ~1 %)."""
    frames = np.asarray(frames_adu, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if block_px is None:
        block_px = NOISE_BLOCK_PX
    if frames.ndim != 3 or min(frames.shape[-2:]) < 4 * block_px:
        raise StackStatisticsError(
            f"frames must be (P, Y, X) with Y, X >= {4 * block_px}, got shape {frames.shape}"
        )
    radius = np.hypot(*frequency_grid_cycles_per_px(frames.shape[-2:]))
    band = radius > NOISE_BAND_START * cutoff_cycles_per_px
    fraction = float(band.mean())
    if fraction < 0.05:
        raise StackStatisticsError(
            f"cutoff {cutoff_cycles_per_px:.3f} cycles/px leaves no noise band below Nyquist: "
            "the pixels are too large for the optics"
        )
    means, variances = [], []
    half = block_px // 2
    for frame in frames:
        noise = np.fft.ifft2(np.fft.fft2(frame) * band).real
        local_power = uniform_filter(noise * noise, block_px, mode="reflect") / fraction
        local_mean = uniform_filter(frame, block_px, mode="reflect")
        means.append(local_mean[half::block_px, half::block_px].ravel())
        variances.append(local_power[half::block_px, half::block_px].ravel())
    mean = np.concatenate(means)
    variance = np.concatenate(variances)
    n_bins = int(np.clip(mean.size // 8, 3, NOISE_BINS))
    edges = np.quantile(mean, np.linspace(0.02, 0.98, n_bins + 1))
    centres, medians, weights = [], [], []
    for low, high in itertools.pairwise(edges):
        inside = (mean >= low) & (mean < high)
        if inside.sum() >= 4:
            centres.append(float(np.median(mean[inside])))
            medians.append(float(np.median(variance[inside])))
            weights.append(float(inside.sum()))
    if len(centres) < 3 or np.ptp(centres) <= 0:
        raise StackStatisticsError("the frames span too narrow a range of intensities")
    slope, intercept = np.polyfit(centres, medians, 1, w=np.sqrt(weights))
    # the median of a chi-square block estimate sits below its mean: with block_px^2 samples
    # of a band-limited noise the bias is < 1 %, far below the scatter across stacks
    if not slope > 0:
        raise StackStatisticsError(
            f"noise does not grow with intensity (slope {slope:.3g}): no shot noise to measure"
        )
    return float(slope), float(-intercept / slope)


def electrons_per_orientation(
    frames_adu: np.ndarray, cutoff_cycles_per_px: float, n_orientations: int = 3,
    dtype: type = np.float32,
) -> tuple[np.ndarray, list[float], list[float]]:
    """(P, Y, X) frames -> photo-electrons with a gain and offset per orientation, each read
    from that orientation's own out-of-band noise (:func:`estimate_gain_and_offset`).

    Stacks that were intensity-stretched per orientation (as published test stacks often are)
    otherwise reach a network with a different offset and scale per orientation, which it reads
    as illumination structure. Returns (frames in e- as ``dtype`` (computed in float64), gains
    ADU/e-, offsets ADU)."""
    frames = np.asarray(frames_adu, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[0] % n_orientations:
        raise StackStatisticsError(
            f"frames {frames.shape} do not split into {n_orientations} orientations"
        )
    per = frames.shape[0] // n_orientations
    electrons = np.empty_like(frames)
    gains, offsets = [], []
    for o in range(n_orientations):
        block = frames[o * per : (o + 1) * per]
        gain, offset = estimate_gain_and_offset(block, cutoff_cycles_per_px)
        electrons[o * per : (o + 1) * per] = (block - offset) / gain
        gains.append(gain)
        offsets.append(offset)
    return electrons.astype(dtype, copy=False), gains, offsets


def _background_and_signal(
    widefield_e: np.ndarray, pixel_size_nm: float, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Background map (e-) and boolean structure mask of a wide-field image in e-."""
    window = max(round(BACKGROUND_WINDOW_NM / pixel_size_nm) | 1, 3)
    smooth = gaussian_filter(widefield_e, 1.0, mode="reflect")
    # the percentile of the smoothed image: little pulled down by the noise
    floor = percentile_filter(smooth, BACKGROUND_PERCENTILE, size=window, mode="reflect")
    background = gaussian_filter(floor, window / 2.0, mode="reflect")
    # shot noise of the mean of n frames after a sigma-1 Gaussian (noise gain 1 / (4 pi))
    sigma = np.sqrt(np.maximum(background, 1.0) / n_frames / (4.0 * np.pi))
    excess = smooth - background
    relative = STRUCTURE_FRACTION_OF_PEAK * float(np.percentile(excess, 99.0))
    structure = excess > np.maximum(SIGNAL_SIGMAS * sigma, relative)
    return background, structure


def radial_spectrum(
    image: np.ndarray, n_bins: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in cycles/px, mean power per pixel) of one image (mean removed)."""
    data = np.asarray(image, dtype=np.float64)
    power = np.abs(np.fft.fft2(data - data.mean())) ** 2 / data.size
    radius = np.hypot(*frequency_grid_cycles_per_px(data.shape))
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    index = np.digitize(radius.ravel(), edges) - 1
    keep = (index >= 0) & (index < n_bins)
    sums = np.bincount(index[keep], power.ravel()[keep], minlength=n_bins)
    counts = np.bincount(index[keep], minlength=n_bins)
    return 0.5 * (edges[:-1] + edges[1:]), sums / np.maximum(counts, 1)


def measure_stack(
    raw_adu: np.ndarray,
    pixel_size_nm: float,
    na: float,
    emission_nm: float,
    n_phases: int = 3,
) -> StackStatistics:
    """Statistics of one raw SIM set (P, Y, X) in camera units (ADU), see the module text."""
    raw = np.asarray(raw_adu)
    if raw.ndim != 3 or raw.shape[0] % n_phases:
        raise StackStatisticsError(
            f"a raw set must be (P, Y, X) with P a multiple of n_phases={n_phases}, "
            f"got shape {raw.shape}"
        )
    otf = OtfModel(na=na, emission_nm=emission_nm)
    cutoff_px = otf.cutoff_cycles_per_nm * pixel_size_nm
    electrons, gains, offsets = electrons_per_orientation(raw, cutoff_px,
                                                          raw.shape[0] // n_phases, np.float64)
    widefield = electrons.mean(axis=0)
    background, structure = _background_and_signal(widefield, pixel_size_nm, raw.shape[0])
    if structure.sum() < 10:
        raise StackStatisticsError("no structure above the background noise")
    excess = (widefield - background)[structure]
    counts = average_photon_count(electrons.astype(np.float32), 0.0, 1.0)
    parameters = estimate_sim_parameters(electrons.astype(np.float32), pixel_size_nm, otf=otf,
                                         n_phases=n_phases, offset_adu=0.0)
    vectors = parameters.wave_vectors_cycles_per_nm()
    frequencies, spectrum = radial_spectrum(electrons[0])
    band = frequencies > NOISE_BAND_START * cutoff_px
    if band.sum() < 2:
        raise StackStatisticsError("no out-of-band frequencies for the noise spectrum")
    noise = spectrum[band]
    half = max(len(noise) // 2, 1)
    return StackStatistics(
        gain_adu_per_e=float(np.median(gains)),
        offset_adu=float(np.median(offsets)),
        orientation_gain_adu_per_e=[float(g) for g in gains],
        orientation_offset_adu=[float(o) for o in offsets],
        background_e=float(np.median(background)),
        signal_e=float(np.median(excess)),
        signal_p90_e=float(np.percentile(excess, 90)),
        structure_fraction=float(structure.mean()),
        photon_count_e=float(np.mean(counts)),
        period_nm=[float(1.0 / np.hypot(*v)) for v in vectors],
        angle_deg=[float(np.degrees(np.arctan2(v[1], v[0]))) for v in vectors],
        modulation=[float(m) for m in parameters.modulations()],
        noise_variance_e2=float(noise.mean()),
        noise_to_mean=float(noise.mean() / max(electrons[0].mean(), 1e-9)),
        noise_flatness=float(noise[half:].mean() / noise[:half].mean()),
        spectrum_frequency_cycles_per_nm=[float(f / pixel_size_nm) for f in frequencies],
        spectrum_e2=[float(p) for p in spectrum],
    )


COMPARED_ROWS: tuple[tuple[str, str], ...] = (
    ("background (e-)", "background_e"),
    ("signal over background, median (e-)", "signal_e"),
    ("signal over background, 90th pct (e-)", "signal_p90_e"),
    ("structure pixels", "structure_fraction"),
    ("average photon count (e-)", "photon_count_e"),
    ("modulation per orientation", "modulation"),
    ("pattern period per orientation (nm)", "period_nm"),
    ("noise power beyond the cutoff / mean (1 = shot noise)", "noise_to_mean"),
    ("noise spectrum flatness (outer / inner band)", "noise_flatness"),
    ("gain from the noise (ADU/e-)", "gain_adu_per_e"),
)


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(f"{v:.3g}" for v in value)
    return f"{float(value):.3g}"  # type: ignore[arg-type]


def comparison_table(columns: dict[str, StackStatistics]) -> str:
    """A markdown table with one column per measured stack."""
    names = list(columns)
    lines = ["| quantity | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for label, field in COMPARED_ROWS:
        cells = [_cell(getattr(columns[name], field)) for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
