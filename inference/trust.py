"""Trust records for a super-resolved SIM image: is it supported by the raw data it came from?

Three independent checks, each a scalar per image plus a map where one is meaningful:

- **Raw-data consistency** (:func:`raw_consistency`): the SR image is rendered back through the
  calibrated illumination patterns and the detection OTF into the P raw frames, fitted to the
  measured frames (one gain, an unmodulated smooth haze), and the residual is expressed in units
  of the measured noise variance. A faithful reconstruction leaves a reduced chi-square near 1;
  a structure the sample does not have, a wrong pattern or a wrong OTF leaves more.
- **Resolution-scaled Pearson** (:func:`resolution_scaled_pearson`, SQUIRREL, Culley et al.
  2018): the SR image blurred by the resolution-scaling function (a Gaussian, width fitted),
  binned to the raw grid and linearly fitted to the wide-field image; the Pearson correlation
  and the absolute error map say whether the SR image could have produced the wide-field image.
- **Energy beyond the support** (:func:`beyond_support_fraction`): the fraction of the SR
  image's spectral energy outside the extended SIM support k_c + |p|. No raw frame carries
  information there, so energy there was invented.

Conventions: raw frames (P, Y, X) in any linear unit with the offset removed or not (a constant
is fitted), orientation-major; the SR image on the 2x grid whose pixel (0, 0) sits on raw pixel
(0, 0) (Fourier interpolation, as :mod:`inference.wiener`); a global sub-pixel shift between
the SR image and the raw data (networks trained on another grid convention) is measured and
removed first, and reported.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft as sfft
from pydantic import BaseModel, ConfigDict
from scipy.ndimage import gaussian_filter
from skimage.registration import phase_cross_correlation

from calibration.edge_taper import edge_taper
from calibration.otf import OtfLike, frequency_grid_cycles_per_px
from calibration.sim_parameters import SimParameters, central_origin, moved_origin
from inference.evaluation import block_mean, pearson, shift_image
from settings_file import StrictModel

# haze: unmodulated out-of-focus light, smooth on this scale (raw pixels); the fit leaves it out
HAZE_SIGMA_PX = 6.0
# noise power is measured beyond this multiple of the detection cutoff (only noise lives there)
NOISE_BAND_START = 1.15
# resolution-scaling function widths tried (Gaussian sigma, SR pixels)
RSF_SIGMAS_SR_PX = tuple(np.round(np.arange(0.5, 6.01, 0.25), 2))
# the SR image's own transfer function is fitted as this many rings of spatial frequency
TRANSFER_BINS = 12
# alternations between the ring gains and the haze
HAZE_ITERATIONS = 3
# the scalar leaves out this border (raw pixels): the rendering treats the field as periodic,
# so a field whose edges do not meet leaves a residual there that says nothing about the image
EDGE_MARGIN_PX = 6
# the spectrum of the SR image is taken through a cosine edge taper this wide (SR pixels)
SPECTRUM_TAPER_SR_PX = 16
# the trust map is stored block-averaged: one value per block of this many raw pixels
MAP_BLOCK_PX = 8


class TrustRecord(StrictModel):
    """The scalars written per SR image (``/qc``) and shown in summaries."""

    raw_chi2: float
    resolution_scaled_pearson: float
    rsf_sigma_sr_px: float
    beyond_support_fraction: float
    shift_raw_px: tuple[float, float]


class RawConsistency(BaseModel):
    """Result of :func:`raw_consistency`: reduced chi-square, its map, the fitted terms."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    chi2: float
    chi2_map: np.ndarray
    ring_gains: list[float]
    noise_variance: float
    shift_raw_px: tuple[float, float]


class ResolutionScaledPearson(BaseModel):
    """Result of :func:`resolution_scaled_pearson`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    pearson: float
    rsf_sigma_sr_px: float
    error_map: np.ndarray


def render_raw_frames(
    sr_image: np.ndarray, parameters: SimParameters, otf: OtfLike
) -> np.ndarray:
    """(P, Y, X) raw frames the SR image (2Y, 2X) would give under the patterns and the OTF.

    Each pattern 1 + m cos(2 pi p.r + phi) multiplies the SR image on the fine grid (r in raw
    pixels, r = fine index / 2); the product is filtered by the OTF and brought to the raw grid
    by keeping the raw grid's frequencies (the inverse of Fourier interpolation).
    """
    sr = np.asarray(sr_image, dtype=np.float64)
    fy, fx = sr.shape
    if fy % 2 or fx % 2:
        raise ValueError(f"SR image shape {sr.shape} must be even (2x the raw frame)")
    ny, nx = fy // 2, fx // 2
    y_raw = (np.arange(fy) / 2.0)[:, None]
    x_raw = (np.arange(fx) / 2.0)[None, :]
    ky, kx = frequency_grid_cycles_per_px((ny, nx))
    pixel_nm = parameters.pixel_size_nm
    transfer = otf.value(kx / pixel_nm, ky / pixel_nm, pixel_nm)
    frames = np.empty((parameters.n_orientations * parameters.n_phases, ny, nx))
    index = 0
    for orientation in parameters.orientations:
        kx_p, ky_p = orientation.wave_vector_cycles_per_px
        argument = 2.0 * np.pi * (kx_p * x_raw + ky_p * y_raw)
        for phase in orientation.phases_rad:
            pattern = 1.0 + orientation.modulation * np.cos(argument + phase)
            frames[index] = fourier_downsample(sr * pattern, transfer)
            index += 1
    return frames


def noise_variance(raw: np.ndarray, otf: OtfLike, pixel_size_nm: float) -> float:
    """Per-pixel noise variance of one raw frame, from the spectrum beyond the OTF support.

    Beyond the detection cutoff the frames hold only noise (white for shot and read noise), so
    the mean power there, divided by the pixel count, is the per-pixel variance. Frames whose
    cutoff reaches Nyquist leave no such band: then the variance of the difference of
    neighbouring pixels along the faster axis is used (an upper bound).
    """
    frames = np.asarray(raw, dtype=np.float64)
    ny, nx = frames.shape[-2:]
    ky, kx = frequency_grid_cycles_per_px((ny, nx))
    rho = np.hypot(kx, ky) / (otf.cutoff_cycles_per_nm * pixel_size_nm)
    band = (rho > NOISE_BAND_START) & (np.abs(kx) < 0.5) & (np.abs(ky) < 0.5)
    if band.sum() < 0.02 * ny * nx:
        diffs = np.diff(frames, axis=-1)
        return float(np.var(diffs) / 2.0)
    spectra = sfft.fft2(frames - frames.mean(axis=(-2, -1), keepdims=True), workers=-1)
    power = np.abs(spectra) ** 2
    return float(np.mean(power[..., band]) / (ny * nx))


def raw_consistency(
    sr_image: np.ndarray,
    raw: np.ndarray,
    parameters: SimParameters,
    otf: OtfLike,
    register: bool = True,
) -> RawConsistency:
    """Reduced chi-square of the raw frames against the SR image rendered back into them.

    An SR image is never the sample itself: it is the sample seen through the reconstruction's
    own transfer function, which differs between methods (Wiener filter, a network, a target
    made through the extended OTF). So the SR image is first corrected by a radial transfer
    function fitted to the data: ``TRANSFER_BINS`` rings of spatial frequency up to the
    extended support k_c + |p|, one least-squares gain each. A smooth
    unmodulated haze (out-of-focus light and offset, the same in every frame; a Gaussian of
    ``HAZE_SIGMA_PX`` raw pixels of the wide-field residual) is fitted alternately. An invented
    structure cannot be fitted away by a ring gain without losing the real structure in the
    same ring, so it stays in the residual. The residual of every frame is divided by the noise
    variance measured beyond the OTF support; the map is its mean over frames, block-averaged
    by ``MAP_BLOCK_PX``; the scalar is its mean inside an ``EDGE_MARGIN_PX`` border. 1 means the
    raw data are explained to their noise.
    """
    measured = np.asarray(raw, dtype=np.float64)
    n_patterns = parameters.n_orientations * parameters.n_phases
    if measured.ndim != 3 or measured.shape[0] != n_patterns:
        raise ValueError(f"raw must be ({n_patterns}, Y, X), got shape {measured.shape}")
    sr = np.asarray(sr_image, dtype=np.float64)
    if sr.shape != (2 * measured.shape[1], 2 * measured.shape[2]):
        raise ValueError(
            f"SR image shape {sr.shape} is not 2x the raw frame {measured.shape[1:]}"
        )
    shift = (0.0, 0.0)
    if register:
        sr, shift = _registered(sr, measured.mean(axis=0))
    rings = _transfer_rings(sr, parameters, otf)
    columns = np.stack([render_raw_frames(ring, parameters, otf) for ring in rings])
    design = columns.reshape(len(rings), -1)
    gram = design @ design.T + 1e-9 * np.eye(len(rings)) * float(np.trace(design @ design.T))
    haze = np.zeros(measured.shape[1:])
    for _ in range(HAZE_ITERATIONS):
        target = (measured - haze[None]).reshape(-1)
        gains = np.linalg.solve(gram, design @ target)
        predicted = np.tensordot(gains, columns, axes=1)
        haze = gaussian_filter(
            (measured - predicted).mean(axis=0), HAZE_SIGMA_PX, mode="reflect"
        )
    residual = measured - predicted - haze[None]
    variance = max(noise_variance(measured, otf, parameters.pixel_size_nm), 1e-12)
    per_pixel = np.mean(residual * residual, axis=0) / variance
    margin = EDGE_MARGIN_PX if min(per_pixel.shape) > 4 * EDGE_MARGIN_PX else 0
    inner = per_pixel[margin : per_pixel.shape[0] - margin, margin : per_pixel.shape[1] - margin]
    return RawConsistency(
        chi2=float(inner.mean()),
        chi2_map=block_mean(per_pixel, MAP_BLOCK_PX).astype(np.float32),
        ring_gains=[float(g) for g in gains],
        noise_variance=variance,
        shift_raw_px=shift,
    )


def _transfer_rings(
    sr: np.ndarray, parameters: SimParameters, otf: OtfLike
) -> list[np.ndarray]:
    """The SR image split into ``TRANSFER_BINS`` rings of spatial frequency (they sum to it,
    up to the extended support; what lies beyond cannot reach any raw frame)."""
    fy, fx = sr.shape
    ky, kx = frequency_grid_cycles_per_px((fy, fx))
    radius_raw = 2.0 * np.hypot(kx, ky)  # cycles per raw pixel
    support = _extended_support_px(parameters, otf)
    edges = np.linspace(0.0, support, TRANSFER_BINS + 1)
    edges[-1] = np.inf
    spectrum = sfft.fft2(sr, workers=-1)
    rings = []
    for low, high in itertools.pairwise(edges):
        mask = (radius_raw >= low) & (radius_raw < high)
        rings.append(sfft.ifft2(spectrum * mask, workers=-1).real)
    return rings


def _extended_support_px(parameters: SimParameters, otf: OtfLike) -> float:
    """k_c + max |p| in cycles per raw pixel."""
    cutoff_px = otf.cutoff_cycles_per_nm * parameters.pixel_size_nm
    pattern_px = float(np.max(np.hypot(*parameters.wave_vectors_cycles_per_px().T)))
    return cutoff_px + pattern_px


def resolution_scaled_pearson(
    sr_image: np.ndarray,
    wide_field: np.ndarray,
    sigmas_sr_px: tuple[float, ...] = RSF_SIGMAS_SR_PX,
) -> ResolutionScaledPearson:
    """SQUIRREL's resolution-scaled Pearson of an SR image (2Y, 2X) with its wide-field (Y, X).

    For each trial RSF width the SR image is blurred, brought to the raw grid and least-squares
    fitted (gain and offset) to the wide-field image; the width with the smallest error wins.
    Returns the Pearson correlation at that width and the absolute error map (wide-field units).
    """
    sr = np.asarray(sr_image, dtype=np.float64)
    wf = np.asarray(wide_field, dtype=np.float64)
    if sr.shape != (2 * wf.shape[0], 2 * wf.shape[1]):
        raise ValueError(f"SR image shape {sr.shape} is not 2x the wide-field {wf.shape}")
    best: tuple[float, float, np.ndarray] | None = None
    for sigma in sigmas_sr_px:
        binned = fourier_downsample(gaussian_filter(sr, sigma, mode="reflect"))
        design = np.stack([binned.ravel(), np.ones(binned.size)], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, wf.ravel(), rcond=None)
        fitted = (design @ coefficients).reshape(wf.shape)
        error = float(np.mean((wf - fitted) ** 2))
        if best is None or error < best[0]:
            best = (error, float(sigma), fitted)
    assert best is not None
    _, sigma, fitted = best
    return ResolutionScaledPearson(
        pearson=float(pearson(fitted, wf)),
        rsf_sigma_sr_px=sigma,
        error_map=np.abs(wf - fitted).astype(np.float32),
    )


def beyond_support_fraction(
    sr_image: np.ndarray, parameters: SimParameters, otf: OtfLike, margin: float = 1.05
) -> float:
    """Fraction of the SR image's spectral energy (DC excluded) beyond k_c + |p| (x margin)."""
    sr = np.asarray(sr_image, dtype=np.float64)
    window = edge_taper(sr.shape, min(SPECTRUM_TAPER_SR_PX, min(sr.shape) // 4))
    spectrum = np.abs(sfft.fft2((sr - sr.mean()) * window, workers=-1)) ** 2
    fy, fx = sr.shape
    # fine-grid frequencies in cycles per raw pixel: the fine pixel is half a raw pixel
    ky, kx = frequency_grid_cycles_per_px((fy, fx))
    radius_raw = 2.0 * np.hypot(kx, ky)
    outside = radius_raw > margin * _extended_support_px(parameters, otf)
    total = float(spectrum.sum())
    return float(spectrum[outside].sum() / total) if total > 0 else 0.0


def trust_record(
    sr_image: np.ndarray, raw: np.ndarray, parameters: SimParameters, otf: OtfLike
) -> TrustRecord:
    """All three checks of one SR image against its raw set."""
    return _record_and_map(sr_image, raw, parameters, otf)[0]


def _record_and_map(
    sr_image: np.ndarray, raw: np.ndarray, parameters: SimParameters, otf: OtfLike
) -> tuple[TrustRecord, np.ndarray]:
    """The three checks and the raw-consistency map of one SR image against its raw set."""
    frames = np.asarray(raw, dtype=np.float64)
    consistency = raw_consistency(sr_image, frames, parameters, otf)
    rsp = resolution_scaled_pearson(sr_image, frames.mean(axis=0))
    record = TrustRecord(
        raw_chi2=consistency.chi2,
        resolution_scaled_pearson=rsp.pearson,
        rsf_sigma_sr_px=rsp.rsf_sigma_sr_px,
        beyond_support_fraction=beyond_support_fraction(sr_image, parameters, otf),
        shift_raw_px=consistency.shift_raw_px,
    )
    return record, consistency.chi2_map


def fourier_downsample(image: np.ndarray, transfer: np.ndarray | float = 1.0) -> np.ndarray:
    """(2Y, 2X) -> (Y, X) keeping the raw grid's frequencies: pixel (0, 0) stays in place (a
    2 x 2 block mean would move the image by a quarter raw pixel); ``transfer`` (Y, X) filters
    the kept spectrum (the OTF, when rendering raw frames)."""
    fy, fx = image.shape
    ny, nx = fy // 2, fx // 2
    rows = np.r_[0 : ny // 2, fy - ny // 2 : fy]
    cols = np.r_[0 : nx // 2, fx - nx // 2 : fx]
    spectrum = sfft.fft2(np.asarray(image, dtype=np.float64), workers=-1)
    return sfft.ifft2(spectrum[np.ix_(rows, cols)] / 4.0 * transfer, workers=-1).real


def _registered(sr: np.ndarray, wide_field: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """SR image shifted so that its binned version best overlays the wide-field image."""
    binned = fourier_downsample(gaussian_filter(sr, 2.0, mode="reflect"))
    shift, _, _ = phase_cross_correlation(
        wide_field, binned, upsample_factor=20, normalization=None
    )
    dy, dx = float(shift[0]), float(shift[1])
    if abs(dy) < 0.01 and abs(dx) < 0.01:
        return sr, (0.0, 0.0)
    return shift_image(sr, np.array([2.0 * dy, 2.0 * dx])), (dy, dx)  # 2 fine px per raw px


def central_trust_record(
    sr_image: np.ndarray,
    raw: np.ndarray,
    parameters: SimParameters,
    otf: OtfLike,
    max_size_px: int = 128,
) -> tuple[TrustRecord, np.ndarray]:
    """:func:`trust_record` of the central ``max_size_px`` raw square (live cost bound), and
    the raw-consistency map of that square. Pattern phases are moved to the crop's origin."""
    frames = np.asarray(raw, dtype=np.float64)
    ny, nx = frames.shape[-2:]
    y0, x0 = central_origin(frames.shape, max_size_px)
    y0, x0 = y0 - y0 % 2, x0 - x0 % 2
    height, width = min(max_size_px, ny), min(max_size_px, nx)
    crop = frames[:, y0 : y0 + height, x0 : x0 + width]
    sr_crop = np.asarray(sr_image)[2 * y0 : 2 * (y0 + height), 2 * x0 : 2 * (x0 + width)]
    return _record_and_map(sr_crop, crop, moved_origin(parameters, -x0, -y0), otf)
