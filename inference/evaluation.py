"""Image-quality metrics of the DFCAN / IMC-SR papers, vectorised over leading (batch) axes.

All functions take arrays whose last two axes are (Y, X); leading axes are batch axes and are
kept in the result. Pipeline of the DFCAN Methods: percentile-normalise both images, register
the prediction to the ground truth, fit the least-squares linear transform a * pred + b onto
the ground truth, then score (NRMSE, SSIM, MS-SSIM, Pearson). Resolution is measured without
a reference by decorrelation analysis (Descloux, Grussmayer & Radenovic, Nat. Methods 2019).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from calibration.edge_taper import edge_taper
from calibration.otf import frequency_grid_cycles_per_px

logger = logging.getLogger(__name__)

SSIM_WINDOW_PX = 11
SSIM_SIGMA_PX = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def percentile_normalize(
    image: np.ndarray, low_pct: float = 0.0, high_pct: float = 100.0, clip: bool = False
) -> np.ndarray:
    """(x - p_low) / (p_high - p_low) per image (over the last two axes), float32."""
    image = np.asarray(image, dtype=np.float32)
    low = np.percentile(image, low_pct, axis=(-2, -1), keepdims=True)
    high = np.percentile(image, high_pct, axis=(-2, -1), keepdims=True)
    out = (image - low) / np.maximum(high - low, np.finfo(np.float32).eps)
    return np.clip(out, 0.0, 1.0) if clip else out.astype(np.float32)


REGISTRATION_UPSAMPLE = 10  # 1/10 px: 0.05 px worst error vs 0.10 px for the parabola fit it
# replaced (16 noisy 256 px SR images), at about 2x its time (~0.1 s per image)


def register_translation(moving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Shift (dy, dx) in pixels that aligns ``moving`` onto ``reference`` (..., 2), sub-pixel.

    scikit-image's cross-correlation registration (``phase_cross_correlation`` without the
    phase normalisation, upsampled to 1/10 px), per image over the leading axes.
    """
    from skimage.registration import phase_cross_correlation

    moving, reference = _pair(moving, reference)
    return _per_image(lambda mov, ref: phase_cross_correlation(
        ref, mov, upsample_factor=REGISTRATION_UPSAMPLE, normalization=None)[0], moving, reference)


def shift_image(image: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """Translate images by (dy, dx) (..., 2) pixels with a Fourier phase ramp (periodic);
    float64."""
    image = np.asarray(image, dtype=np.float64)
    shift_px = np.asarray(shift_px, dtype=np.float64)
    ky, kx = frequency_grid_cycles_per_px(image.shape[-2:])
    dy = shift_px[..., 0][..., None, None]
    dx = shift_px[..., 1][..., None, None]
    ramp = np.exp(-2j * np.pi * (ky * dy + kx * dx))
    return sfft.ifft2(sfft.fft2(image, workers=-1) * ramp, workers=-1).real


def register(moving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``moving`` translated onto ``reference`` (cross-correlation registration), float32."""
    return shift_image(moving, register_translation(moving, reference)).astype(np.float32)


def linear_fit(prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """a * prediction + b with (a, b) the per-image least-squares fit onto the ground truth."""
    prediction, ground_truth = _pair(prediction, ground_truth)
    axes = (-2, -1)
    p_mean = prediction.mean(axis=axes, keepdims=True)
    g_mean = ground_truth.mean(axis=axes, keepdims=True)
    covariance = ((prediction - p_mean) * (ground_truth - g_mean)).mean(axis=axes, keepdims=True)
    variance = ((prediction - p_mean) ** 2).mean(axis=axes, keepdims=True)
    slope = covariance / np.maximum(variance, 1e-30)
    return (slope * (prediction - p_mean) + g_mean).astype(np.float32)


def nrmse(prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Root-mean-square error divided by the ground truth's range (max - min), per image
    (scikit-image ``normalized_root_mse``, min-max normalisation)."""
    from skimage.metrics import normalized_root_mse

    prediction, ground_truth = _pair(prediction, ground_truth)
    return _per_image(lambda pred, gt: normalized_root_mse(gt, pred, normalization="min-max"),
                      prediction, ground_truth)


def _per_image(metric: Any, prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """``metric(pred, gt)`` (a number or a vector) of every (Y, X) image over the leading axes."""
    frame = prediction.shape[-2:]
    values = np.asarray([metric(p, g) for p, g in zip(prediction.reshape(-1, *frame),
                                                      ground_truth.reshape(-1, *frame),
                                                      strict=True)], dtype=np.float64)
    return values.reshape(prediction.shape[:-2] + values.shape[1:])


def pearson(prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Pearson correlation coefficient of the pixel values, per image."""
    prediction, ground_truth = _pair(prediction, ground_truth)
    p = prediction - prediction.mean(axis=(-2, -1), keepdims=True)
    g = ground_truth - ground_truth.mean(axis=(-2, -1), keepdims=True)
    numerator = (p * g).sum(axis=(-2, -1))
    denominator = np.sqrt((p * p).sum(axis=(-2, -1)) * (g * g).sum(axis=(-2, -1)))
    return numerator / np.maximum(denominator, 1e-30)


def gaussian_window(size_px: int = SSIM_WINDOW_PX, sigma_px: float = SSIM_SIGMA_PX) -> np.ndarray:
    """Normalised 1-D Gaussian taps of the SSIM window (11 taps, sigma 1.5 px by default)."""
    taps = np.arange(size_px) - (size_px - 1) / 2.0
    window = np.exp(-(taps**2) / (2.0 * sigma_px**2))
    return window / window.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation with ``taps`` on the last two axes, 'valid' region only."""
    out = ndimage.correlate1d(image, taps, axis=-1, mode="constant")
    out = ndimage.correlate1d(out, taps, axis=-2, mode="constant")
    half = len(taps) // 2
    return out[..., half : out.shape[-2] - half, half : out.shape[-1] - half]


def _ssim_terms(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel SSIM map and contrast-structure map ('valid' Gaussian window)."""
    taps = gaussian_window()
    if min(x.shape[-2:]) < len(taps):
        raise ValueError(f"SSIM needs images of at least {len(taps)} px, got {x.shape[-2:]}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = _filter_valid(x, taps)
    mu_y = _filter_valid(y, taps)
    sigma_xx = _filter_valid(x * x, taps) - mu_x**2
    sigma_yy = _filter_valid(y * y, taps) - mu_y**2
    sigma_xy = _filter_valid(x * y, taps) - mu_x * mu_y
    contrast_structure = (2.0 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return luminance * contrast_structure, contrast_structure


def ssim(prediction: np.ndarray, ground_truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity (Wang et al. 2004): 11 px Gaussian window, sigma 1.5, per image
    (scikit-image ``structural_similarity``; ``ms_ssim`` keeps its own SSIM terms because it
    needs the contrast-structure map, which scikit-image does not return; both agree to 1e-16)."""
    from skimage.metrics import structural_similarity

    x, y = _pair(prediction, ground_truth)
    if min(x.shape[-2:]) < SSIM_WINDOW_PX:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW_PX} px, got {x.shape[-2:]}")
    return _per_image(lambda pred, gt: structural_similarity(
        gt, pred, data_range=data_range, gaussian_weights=True, sigma=SSIM_SIGMA_PX,
        win_size=SSIM_WINDOW_PX, use_sample_covariance=False, K1=SSIM_K1, K2=SSIM_K2), x, y)


def ms_ssim(
    prediction: np.ndarray, ground_truth: np.ndarray, data_range: float = 1.0
) -> np.ndarray:
    """Multi-scale SSIM (Wang et al. 2003), 5 scales; fewer (weights renormalised) if small."""
    x, y = _pair(prediction, ground_truth)
    n_scales = len(MS_SSIM_WEIGHTS)
    while n_scales > 1 and min(x.shape[-2:]) // 2 ** (n_scales - 1) < SSIM_WINDOW_PX:
        n_scales -= 1
    weights = np.array(MS_SSIM_WEIGHTS[:n_scales])
    weights = weights / weights.sum()
    result = np.ones(x.shape[:-2])
    for scale in range(n_scales):
        ssim_map, cs_map = _ssim_terms(x, y, data_range)
        if scale == n_scales - 1:
            value = ssim_map.mean(axis=(-2, -1))
        else:
            value = cs_map.mean(axis=(-2, -1))
            x = block_mean(x, 2)  # 2 x 2 mean pooling
            y = block_mean(y, 2)
        result = result * np.maximum(value, 0.0) ** weights[scale]
    return result


def block_mean(image: np.ndarray, block: int) -> np.ndarray:
    """Mean over non-overlapping ``block`` x ``block`` tiles of the last two axes (edges that
    do not fill one: cut; an image smaller than one tile: its mean, as (1, 1))."""
    ny, nx = image.shape[-2] // block, image.shape[-1] // block
    if ny == 0 or nx == 0:
        return np.asarray(image, dtype=np.float64).mean(keepdims=True).reshape(1, 1)
    tiles = image[..., : ny * block, : nx * block].reshape(*image.shape[:-2], ny, block, nx, block)
    return tiles.mean(axis=(-3, -1))


def mean_gradient(image: np.ndarray) -> np.ndarray:
    """Structural complexity (IMC-SR): mean gradient magnitude of the image, per image."""
    image = np.asarray(image, dtype=np.float64)
    gy = np.diff(image, axis=-2)[..., :, :-1]
    gx = np.diff(image, axis=-1)[..., :-1, :]
    return np.sqrt(gx**2 + gy**2).mean(axis=(-2, -1))


@dataclass(frozen=True)
class Scores:
    """Reference metrics of one prediction against its ground truth (arrays over the batch)."""

    nrmse: np.ndarray
    ssim: np.ndarray
    ms_ssim: np.ndarray
    pearson: np.ndarray


def score(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    align: bool = True,
    low_pct: float = 0.0,
    high_pct: float = 100.0,
) -> Scores:
    """DFCAN Methods: normalise, register, linear-fit prediction onto GT, then score."""
    gt = percentile_normalize(ground_truth, low_pct, high_pct)
    pred = percentile_normalize(prediction, low_pct, high_pct)
    if align:
        pred = register(pred, gt)
    pred = linear_fit(pred, gt)
    return Scores(
        nrmse=nrmse(pred, gt),
        ssim=ssim(pred, gt),
        ms_ssim=ms_ssim(pred, gt),
        pearson=pearson(pred, gt),
    )


# --- decorrelation analysis (Descloux et al. 2019) ------------------------------------------


@dataclass(frozen=True)
class Decorrelation:
    """Decorrelation result: resolution (nm, or px when no pixel size), cut-off and curves."""

    resolution: float
    cutoff: float  # normalised frequency, 1 = Nyquist
    amplitude: float
    radii: np.ndarray
    curves: np.ndarray  # (n_curves, n_radii): unfiltered first, then high-pass filtered ones


def decorrelation_resolution(
    image: np.ndarray,
    pixel_size_nm: float | None = None,
    n_radii: int = 50,
    n_filters: int = 10,
    edge_taper_px: int = 20,
) -> np.ndarray:
    """Decorrelation resolution per image (nm if ``pixel_size_nm`` given, else pixels).

    Returns an array of the leading (batch) shape; 0-d for a single image.
    """
    image = np.asarray(image)
    lead = image.shape[:-2]
    out = np.empty(lead)
    for index in np.ndindex(*lead):
        result = decorrelation_analysis(
            image[index], pixel_size_nm, n_radii, n_filters, edge_taper_px
        )
        out[index] = result.resolution
    return out


def decorrelation_analysis(
    image: np.ndarray,
    pixel_size_nm: float | None = None,
    n_radii: int = 50,
    n_filters: int = 10,
    edge_taper_px: int = 20,
) -> Decorrelation:
    """Descloux decorrelation analysis of one 2-D image.

    d(r) = sum Re{I(k) In*(k) M_r(k)} / sqrt(sum |I|^2 * sum |In M_r|^2), In = I / |I|,
    over mask radii r (1 = Nyquist); peaks of d for the raw and Gaussian high-pass filtered
    spectra (two passes, the second refined around the best); cut-off = highest valid peak;
    resolution = 2 * pixel / cut-off.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"decorrelation needs one (Y, X) image, got shape {image.shape}")
    # odd size so the zero frequency sits at an exact centre, as in the reference code
    ny, nx = image.shape[0] - (1 - image.shape[0] % 2), image.shape[1] - (1 - image.shape[1] % 2)
    image = image[:ny, :nx]
    # edge apodisation towards the mean, as the reference 'apodImRect' does (DC is kept)
    mean = image.mean()
    image = (image - mean) * edge_taper((ny, nx), edge_taper_px) + mean
    spectrum = sfft.fftshift(sfft.fft2(sfft.fftshift(image)))
    yy = np.linspace(-1.0, 1.0, ny)[:, None]
    xx = np.linspace(-1.0, 1.0, nx)[None, :]
    radius = np.sqrt(xx**2 + yy**2)
    inside = radius < 1.0
    magnitude = np.abs(spectrum)
    normalized = np.where(magnitude > 0, spectrum / np.where(magnitude > 0, magnitude, 1.0), 0.0)
    normalized = normalized * inside
    spectrum = spectrum * inside
    sorter = _RadialSums(radius[inside], normalized[inside])

    radii = np.linspace(0.0, 1.0, n_radii)
    d0 = sorter.curve(spectrum[inside], radii)
    index0, amplitude0 = _decorrelation_peak(d0)
    k0 = float(radii[index0])
    curves = [d0]
    # candidate cut-offs: the unfiltered peak first, then one per high-pass filter
    cutoffs = [k0]
    amplitudes = [amplitude0]
    g_max = 2.0 / k0 if k0 > 0 else max(ny, nx) / 2.0
    sigmas = np.concatenate(
        [[ny / 4.0], np.exp(np.linspace(np.log(g_max), np.log(0.15), n_filters))]
    )
    search = radii
    for refinement in range(2):
        for sigma in sigmas:
            filtered = spectrum * (1.0 - np.exp(-2.0 * sigma * sigma * radius**2))
            curve = sorter.curve(filtered[inside], search)
            index, amplitude = _decorrelation_peak(curve)
            curves.append(np.interp(radii, search, curve))
            cutoffs.append(float(search[index]))
            amplitudes.append(amplitude)
        if refinement == 0:
            # narrow the filter range and the radius sampling around the best candidate
            best = int(np.flatnonzero(np.array(cutoffs) == max(cutoffs))[-1])
            if best == 0:
                g1, g2 = float(ny), float(sigmas[0])
            elif best + 1 >= len(sigmas):
                g1, g2 = float(sigmas[best - 2]), float(sigmas[best - 1])
            else:
                g1, g2 = float(sigmas[best - 1]), float(sigmas[best])
            step = float(radii[1] - radii[0])
            r1 = max(cutoffs[best] - step, 0.0)
            r2 = min(cutoffs[best] + 0.4, 1.0)
            sigmas = np.exp(np.linspace(np.log(g1), np.log(g2), n_filters))
            search = np.linspace(r1, min(r2, float(search[-1])), n_radii)
    cut = np.array(cutoffs)
    amp = np.array(amplitudes)
    valid = amp >= 0.05  # the reference's minimum SNR for a peak to count
    if not valid.any() or not np.any(cut[valid] > 0):
        logger.info("decorrelation: no significant peak; resolution undefined")
        return Decorrelation(np.inf, 0.0, 0.0, radii, np.array(curves))
    best_index = int(np.argmax(np.where(valid, cut, -1.0)))
    cutoff = float(cut[best_index])
    pixel = pixel_size_nm if pixel_size_nm is not None else 1.0
    return Decorrelation(
        2.0 * pixel / cutoff, cutoff, float(amp[best_index]), radii, np.array(curves)
    )


class _RadialSums:
    """Cumulative sums over frequency sorted by radius, so each mask radius is one lookup."""

    def __init__(self, radius: np.ndarray, normalized: np.ndarray) -> None:
        self.order = np.argsort(radius, kind="stable")
        self.sorted_radius = radius[self.order]
        self.normalized = normalized[self.order]
        self.normalized_power = np.concatenate([[0.0], np.cumsum(np.abs(self.normalized) ** 2)])

    def curve(self, spectrum: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """d(r) for every r in ``radii`` (mask |k| < r, as in the reference code)."""
        ordered = spectrum[self.order]
        cross = np.concatenate([[0.0], np.cumsum((ordered * np.conj(self.normalized)).real)])
        total = np.sqrt(np.sum(np.abs(spectrum) ** 2))
        counts = np.searchsorted(self.sorted_radius, radii, side="left")
        denominator = total * np.sqrt(self.normalized_power[counts])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(denominator > 0, cross[counts] / denominator, 0.0)
        return np.nan_to_num(values)


def _decorrelation_peak(curve: np.ndarray, significance: float = 0.001) -> tuple[int, float]:
    """Index and value of the curve's maximum, ignoring a maximum at the last radius unless it
    stands out by ``significance`` (the reference 'getDcorrMax'); (0, 0) when none.

    The later 'last strict local maximum' variant is not used: on smooth curves it latches
    onto numerical ripples of strongly high-passed spectra (tested: erratic cut-offs).
    """
    d = np.asarray(curve, dtype=float)
    index = int(np.argmax(d))
    amplitude = float(d[index])
    trimmed = d.copy()
    while index == len(trimmed) - 1:
        trimmed = trimmed[:-1]
        if trimmed.size == 0:
            return 0, 0.0
        index = int(np.argmax(trimmed))
        amplitude = float(trimmed[index])
        if trimmed[index] - d[index:].min() > significance:
            break
        trimmed[index] = d[index:].min()
        index = len(trimmed) - 1
    return index, amplitude


def _pair(prediction: np.ndarray, ground_truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64; ValueError when their shapes differ."""
    first = np.asarray(prediction, dtype=np.float64)
    second = np.asarray(ground_truth, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"shape mismatch: prediction {first.shape} vs ground truth {second.shape}")
    return first, second


def ssim_torch(prediction: Any, ground_truth: Any, data_range: float = 1.0) -> Any:
    """Differentiable SSIM for training losses: same definition as :func:`ssim`, (N, C, Y, X)."""
    import torch
    import torch.nn.functional as F

    taps = torch.as_tensor(gaussian_window(), dtype=prediction.dtype, device=prediction.device)
    channels = prediction.shape[1]
    kernel = (taps[:, None] * taps[None, :]).expand(channels, 1, -1, -1).contiguous()

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, kernel, groups=channels)

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    x, y = prediction, ground_truth
    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x**2
    sigma_yy = blur(y * y) - mu_y**2
    sigma_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_xx + sigma_yy + c2)
    )
    return ssim_map.mean(dim=(-2, -1))


def low_pass_pearson(
    sr: np.ndarray, wide_field: np.ndarray, cutoff_cycles_per_nm: float, pixel_size_nm: float
) -> float:
    """Pearson correlation of an SR image (2Y, 2X) and the wide-field image (Y, X) below the
    wide-field cutoff, over the whole field: does the SR image keep what wide-field saw?

    Wide-field is interpolated onto the SR grid (cubic; fine pixel 2i on raw pixel i, as a
    Fourier-upsampled reconstruction samples it); both are Gaussian-filtered with
    sigma = 1 / (pi k_c) (transfer exp(-2) at the cutoff), with mirrored borders.
    """
    sr = np.asarray(sr, dtype=np.float64)
    wide_field = np.asarray(wide_field, dtype=np.float64)
    ny, nx = wide_field.shape
    factor = sr.shape[0] // ny
    if sr.shape != (factor * ny, factor * nx) or factor < 1:
        raise ValueError(f"SR shape {sr.shape} is not an integer multiple of {wide_field.shape}")
    yy, xx = np.mgrid[0 : factor * ny, 0 : factor * nx] / float(factor)
    upsampled = ndimage.map_coordinates(wide_field, [yy, xx], order=3, mode="nearest")
    sigma_px = 1.0 / (np.pi * cutoff_cycles_per_nm) / (pixel_size_nm / factor)
    first = ndimage.gaussian_filter(sr, sigma_px, mode="reflect").ravel()
    second = ndimage.gaussian_filter(upsampled, sigma_px, mode="reflect").ravel()
    return float(np.corrcoef(first, second)[0, 1])
