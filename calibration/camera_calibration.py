"""Camera photon calibration in the EMVA 1288 spirit: per-pixel offset, gain and read noise.

Dark series (laser off) at increasing exposure give offset, read noise and dark current; flat
series (a static, bright specimen or a uniform slide) at increasing exposure give, for every
pixel, the photon-transfer line variance = g * (mean - offset) + g^2 sigma_read^2, whose slope
is the gain g (ADU per electron). Illumination need not be uniform: each pixel is fitted on its
own.

Temporal variance is measured EMVA 1288 style, from differences of consecutive frames, not from
the spread about the series mean: a specimen that bleaches or a laser that drifts during the
series moves the mean, which the plain variance counts as noise (biasing the gain high), while
a frame difference cancels it. Each flat frame is first rescaled to the series' mean signal
(its own spatial mean above the dark level), which also removes frame-to-frame laser flicker.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hardware.rig import Rig

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAP_FIELDS = (
    "offset_adu",
    "variance_adu2",
    "gain_adu_per_e",
    "read_noise_e",
    "dark_current_e_per_s",
    "defect_mask",
)
SCALAR_FIELDS = ("full_well_e", "linearity_error_pct", "saturation_adu")
CURVE_FIELDS = ("exposures_ms", "mean_adu", "variance_adu2")
QUANTIZATION_VARIANCE_ADU2 = 1.0 / 12.0


class CalibrationFileError(ValueError):
    """A calibration file that is missing, corrupt or inconsistent (names file and field)."""


@dataclass
class TransferCurve:
    """Spatial-median photon-transfer data of the flat series (for the plot and the report)."""

    exposures_ms: np.ndarray
    mean_adu: np.ndarray
    variance_adu2: np.ndarray


@dataclass
class CameraCalibration:
    """Per-pixel camera maps (Y, X) and summary figures; saved to / loaded from HDF5."""

    offset_adu: np.ndarray
    variance_adu2: np.ndarray  # dark temporal variance at the shortest exposure
    gain_adu_per_e: np.ndarray
    read_noise_e: np.ndarray
    dark_current_e_per_s: np.ndarray
    defect_mask: np.ndarray  # True = hot, dead or noisy pixel
    full_well_e: float
    linearity_error_pct: float
    saturation_adu: float
    curve: TransferCurve
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X) of the maps."""
        return (int(self.offset_adu.shape[0]), int(self.offset_adu.shape[1]))

    @property
    def median_gain_adu_per_e(self) -> float:
        """Median gain over good pixels."""
        return float(np.median(self.gain_adu_per_e[~self.defect_mask]))

    @property
    def median_read_noise_e(self) -> float:
        """Median read noise over good pixels (electrons rms)."""
        return float(np.median(self.read_noise_e[~self.defect_mask]))

    @property
    def median_dark_current_e_per_s(self) -> float:
        """Median dark current over good pixels."""
        return float(np.median(self.dark_current_e_per_s[~self.defect_mask]))

    def to_electrons(self, image_adu: np.ndarray) -> np.ndarray:
        """Photo-electrons per pixel: (ADU - offset) / gain, float32."""
        image = np.asarray(image_adu, dtype=np.float32)
        return (image - self.offset_adu) / self.gain_adu_per_e

    def save(self, path: str | Path) -> Path:
        """Write the maps, the transfer curve and the summary figures to an HDF5 file."""
        import h5py

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            h5.attrs["format"] = "livesim camera calibration"
            h5.attrs["format_version"] = FORMAT_VERSION
            for name in MAP_FIELDS:
                data = getattr(self, name)
                dtype = np.uint8 if name == "defect_mask" else np.float32
                h5.create_dataset(name, data=np.asarray(data, dtype=dtype), compression="gzip")
            for name in SCALAR_FIELDS:
                h5.attrs[name] = float(getattr(self, name))
            curve = h5.create_group("transfer_curve")
            for name in CURVE_FIELDS:
                curve.create_dataset(name, data=np.asarray(getattr(self.curve, name), float))
            for key, value in self.metadata.items():
                h5.attrs[f"meta_{key}"] = str(value)
        logger.info("wrote camera calibration %s (%s px)", path, self.shape)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CameraCalibration:
        """Read a calibration file; missing or inconsistent fields raise CalibrationFileError."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise CalibrationFileError(f"{path}: calibration file not found")
        try:
            h5 = h5py.File(path, "r")
        except OSError as error:
            raise CalibrationFileError(f"{path}: not a readable HDF5 file ({error})") from error
        with h5:
            maps: dict[str, np.ndarray] = {}
            for name in MAP_FIELDS:
                if name not in h5:
                    raise CalibrationFileError(f"{path}: missing map '{name}'")
                data = np.asarray(h5[name])
                if data.ndim != 2:
                    raise CalibrationFileError(
                        f"{path}: map '{name}' must be 2-D (Y, X), got shape {data.shape}"
                    )
                maps[name] = data
            shape = maps["offset_adu"].shape
            for name, data in maps.items():
                if data.shape != shape:
                    raise CalibrationFileError(
                        f"{path}: map '{name}' has shape {data.shape}, offset_adu has {shape}"
                    )
            gain = maps["gain_adu_per_e"]
            if not np.all(np.isfinite(gain)) or np.any(gain <= 0):
                raise CalibrationFileError(f"{path}: map 'gain_adu_per_e' has values <= 0 or NaN")
            scalars: dict[str, float] = {}
            for name in SCALAR_FIELDS:
                if name not in h5.attrs:
                    raise CalibrationFileError(f"{path}: missing attribute '{name}'")
                scalars[name] = float(h5.attrs[name])
            if "transfer_curve" not in h5:
                raise CalibrationFileError(f"{path}: missing group 'transfer_curve'")
            curve_data = {}
            for name in CURVE_FIELDS:
                if name not in h5["transfer_curve"]:
                    raise CalibrationFileError(f"{path}: missing 'transfer_curve/{name}'")
                curve_data[name] = np.asarray(h5["transfer_curve"][name])
            metadata = {
                key[5:]: str(value) for key, value in h5.attrs.items() if key.startswith("meta_")
            }
        return cls(
            offset_adu=maps["offset_adu"].astype(np.float32),
            variance_adu2=maps["variance_adu2"].astype(np.float32),
            gain_adu_per_e=gain.astype(np.float32),
            read_noise_e=maps["read_noise_e"].astype(np.float32),
            dark_current_e_per_s=maps["dark_current_e_per_s"].astype(np.float32),
            defect_mask=maps["defect_mask"].astype(bool),
            full_well_e=scalars["full_well_e"],
            linearity_error_pct=scalars["linearity_error_pct"],
            saturation_adu=scalars["saturation_adu"],
            curve=TransferCurve(**curve_data),
            metadata=metadata,
        )


# degrees of freedom of the mean squared successive difference per frame (von Neumann):
# its variance is (3N - 4) / (N - 1)^2 x sigma^4, i.e. about 2/3 of the plain variance's dof
_SUCCESSIVE_DIFFERENCE_EFFICIENCY = 2.0 / 3.0


@dataclass
class SeriesMoments:
    """Per-pixel temporal mean and variance of one series at one exposure (float64 maps)."""

    exposure_ms: float
    mean_adu: np.ndarray
    variance_adu2: np.ndarray
    clipped: np.ndarray  # True where any frame reached the ADC maximum
    n_frames: int
    variance_dof: float = 0.0  # degrees of freedom of variance_adu2 (0: n_frames - 1)

    @property
    def degrees_of_freedom(self) -> float:
        """Degrees of freedom of the per-pixel variance estimate."""
        return self.variance_dof if self.variance_dof > 0 else float(self.n_frames - 1)


def series_moments(
    frames: np.ndarray,
    exposure_ms: float,
    saturation_adu: float,
    dark_level_adu: float | np.ndarray | None = None,
) -> SeriesMoments:
    """Per-pixel mean and temporal variance of (N, Y, X) frames (N >= 2), EMVA 1288 style.

    The variance is half the mean squared difference of consecutive frames, which cancels a
    mean that drifts slowly during the series (bleaching, laser drift). With ``dark_level_adu``
    (the offset, scalar or map) each frame is first rescaled so its spatial-mean signal above
    the dark level equals the series' mean, which removes frame-to-frame laser flicker; dark
    series are taken without it.
    """
    stack = np.asarray(frames)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise ValueError(f"a series needs (N >= 2, Y, X) frames, got shape {stack.shape}")
    data = stack.astype(np.float64)
    clipped = np.asarray((stack >= saturation_adu).any(axis=0))
    if dark_level_adu is not None and not clipped.all():
        dark = np.asarray(dark_level_adu, dtype=np.float64)
        signal = data - dark
        # clipped pixels do not follow the laser: the frame's level is taken without them
        per_frame = signal[:, ~clipped].mean(axis=1)
        level = float(per_frame.mean())
        if level > 0 and np.all(per_frame > 0.01 * level):
            data = signal * (level / per_frame)[:, None, None] + dark
    n = data.shape[0]
    differences = np.diff(data, axis=0)
    variance = 0.5 * np.mean(differences * differences, axis=0)
    dof = max(_SUCCESSIVE_DIFFERENCE_EFFICIENCY * (n - 1), 1.0) if n > 2 else 1.0
    return SeriesMoments(
        exposure_ms=float(exposure_ms),
        mean_adu=data.mean(axis=0),
        variance_adu2=variance,
        clipped=clipped,
        n_frames=int(n),
        variance_dof=float(dof),
    )


def fit_calibration(
    dark: Sequence[SeriesMoments],
    flat: Sequence[SeriesMoments],
    saturation_adu: float = 65535.0,
    metadata: dict[str, str] | None = None,
    shrink_gain: bool = True,
) -> CameraCalibration:
    """Per-pixel photon-transfer fit of dark and flat series (at least 2 of each).

    ``shrink_gain``: empirical-Bayes shrinkage of each pixel's fitted gain towards the median
    by its own fit variance (the minimum-error estimate when the true gain spread is smaller
    than the per-pixel fit noise, as with a few hundred frames per level).
    """
    if len(dark) < 2 or len(flat) < 2:
        raise ValueError(f"need >= 2 dark and >= 2 flat series, got {len(dark)} and {len(flat)}")
    dark = sorted(dark, key=lambda s: s.exposure_ms)
    flat = sorted(flat, key=lambda s: s.exposure_ms)
    shape = dark[0].mean_adu.shape
    for series in (*dark, *flat):
        if series.mean_adu.shape != shape:
            raise ValueError(f"series at {series.exposure_ms} ms has shape {series.mean_adu.shape}")

    # dark: mean = offset + g * dark_current * t  (per pixel, straight line in t)
    t_dark_s = np.array([s.exposure_ms for s in dark]) / 1000.0
    dark_means = np.stack([s.mean_adu for s in dark])
    dark_slope, offset, _ = _weighted_line_fit(t_dark_s[:, None, None], dark_means,
                                               np.ones_like(dark_means))
    dark_variance = np.maximum(dark[0].variance_adu2 - QUANTIZATION_VARIANCE_ADU2, 1e-6)

    # flat: variance = a + g * mean, over unclipped, signal-bearing levels per pixel
    means = np.stack([s.mean_adu for s in flat])
    variances = np.stack([s.variance_adu2 for s in flat])
    usable = ~np.stack([s.clipped for s in flat])
    usable &= means < 0.9 * saturation_adu
    dof = np.array([s.degrees_of_freedom for s in flat], dtype=float)[:, None, None]
    # weights 1/Var(variance estimate) = dof / (2 variance^2), with the variance taken
    # from the model (a first fit), not the noisy measurement, which would bias g low
    weights = np.where(usable, 1.0, 0.0)
    for _ in range(2):
        gain, intercept, gain_variance = _weighted_line_fit(means, variances, weights)
        model = np.maximum(intercept + gain * means, 1e-6)
        weights = np.where(usable, dof / (2.0 * model**2), 0.0)
    gain, _, gain_variance = _weighted_line_fit(means, variances, weights)
    n_levels = usable.sum(axis=0)
    span = np.where(usable, means, np.nan)
    signal_span = np.nanmax(span, axis=0) - np.nanmin(span, axis=0)
    fit_ok = (n_levels >= 2) & (signal_span > 10.0 * np.sqrt(dark_variance)) & (gain > 0)
    median_gain = float(np.median(gain[fit_ok])) if fit_ok.any() else float("nan")
    if not fit_ok.any():
        raise ValueError("no pixel has two unclipped flat levels with signal: brighter specimen")
    gain = np.where(fit_ok, gain, median_gain)
    read_noise_fit_e = np.sqrt(dark_variance) / gain
    defects = _defects(offset, dark_slope / gain, read_noise_fit_e, gain, gain_variance, fit_ok)
    if shrink_gain:
        gain = _shrink_to_median(gain, gain_variance, ~defects)
    read_noise_e = np.sqrt(dark_variance) / gain
    dark_current = dark_slope / gain
    curve = _transfer_curve(flat, defects)
    full_well_e, saturation_level = _full_well(curve, np.median(offset[~defects]), median_gain)
    linearity = _linearity_error_pct(flat, dark, defects, saturation_adu)
    logger.info(
        "camera calibration: gain %.4f ADU/e, read noise %.2f e, dark %.3f e/s, "
        "full well %.0f e, linearity %.2f %%, %d defect pixels",
        median_gain,
        float(np.median(read_noise_e[~defects])),
        float(np.median(dark_current[~defects])),
        full_well_e,
        linearity,
        int(defects.sum()),
    )
    return CameraCalibration(
        offset_adu=offset.astype(np.float32),
        variance_adu2=dark_variance.astype(np.float32),
        gain_adu_per_e=gain.astype(np.float32),
        read_noise_e=read_noise_e.astype(np.float32),
        dark_current_e_per_s=dark_current.astype(np.float32),
        defect_mask=defects,
        full_well_e=full_well_e,
        linearity_error_pct=linearity,
        saturation_adu=float(saturation_level if saturation_level else saturation_adu),
        curve=curve,
        metadata=dict(metadata or {}),
    )


def _weighted_line_fit(
    x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel weighted least squares y = a + b x, w = 1 / Var(y).

    Returns (slope b, intercept a, variance of b).
    """
    total = np.maximum(w.sum(axis=0), 1e-300)
    x_mean = (w * x).sum(axis=0) / total
    y_mean = (w * y).sum(axis=0) / total
    sxx = (w * (x - x_mean) ** 2).sum(axis=0)
    sxy = (w * (x - x_mean) * (y - y_mean)).sum(axis=0)
    safe = np.where(sxx > 0, sxx, 1.0)
    slope = np.where(sxx > 0, sxy / safe, 0.0)
    slope_variance = np.where(sxx > 0, 1.0 / safe, np.inf)
    return slope, y_mean - slope * x_mean, slope_variance


def _shrink_to_median(gain: np.ndarray, gain_variance: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Empirical Bayes: g_med + (g - g_med) * tau^2 / (tau^2 + var_fit), per pixel.

    tau^2, the true pixel-to-pixel gain variance, is the spread of the fitted gains minus the
    mean fit variance (good pixels only).
    """
    median = float(np.median(gain[good]))
    fit_variance = np.where(np.isfinite(gain_variance), gain_variance, np.inf)
    spread = float(np.var(gain[good]))
    tau2 = max(spread - float(np.mean(fit_variance[good])), 0.0)
    logger.info(
        "gain map: fitted spread %.2f %%, estimated true spread %.2f %%",
        100.0 * np.sqrt(spread) / median,
        100.0 * np.sqrt(tau2) / median,
    )
    factor = tau2 / (tau2 + fit_variance)
    return median + (gain - median) * factor


def _robust_outliers(values: np.ndarray, threshold: float) -> np.ndarray:
    """True where |value - median| > threshold x (1.4826 MAD)."""
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    spread = max(spread, 1e-6 * max(abs(float(median)), 1e-12))
    return np.abs(values - median) > threshold * spread


def _defects(
    offset: np.ndarray,
    dark_current: np.ndarray,
    read_noise_e: np.ndarray,
    gain: np.ndarray,
    gain_variance: np.ndarray,
    fit_ok: np.ndarray,
) -> np.ndarray:
    """Hot (dark current), noisy (read noise), odd-offset, odd-gain and unfittable pixels.

    A gain is odd when it is > 30 % off the median and that is beyond 5 sigma of its own fit.
    """
    hot = _robust_outliers(dark_current, 8.0) & (dark_current > np.median(dark_current))
    noisy = read_noise_e > 3.0 * np.median(read_noise_e)
    odd_offset = _robust_outliers(offset, 10.0)
    deviation = np.abs(gain - np.median(gain))
    odd_gain = (deviation > 0.3 * np.median(gain)) & (deviation > 5.0 * np.sqrt(gain_variance))
    return hot | noisy | odd_offset | odd_gain | ~fit_ok


def _transfer_curve(flat: Sequence[SeriesMoments], defects: np.ndarray) -> TransferCurve:
    good = ~defects
    return TransferCurve(
        exposures_ms=np.array([s.exposure_ms for s in flat]),
        mean_adu=np.array([float(np.median(s.mean_adu[good])) for s in flat]),
        variance_adu2=np.array([float(np.median(s.variance_adu2[good])) for s in flat]),
    )


def _full_well(
    curve: TransferCurve, offset_adu: float, gain_adu_per_e: float
) -> tuple[float, float]:
    """EMVA saturation: the mean at the photon-transfer variance maximum, in electrons.

    When the series never saturates, the largest measured signal is returned (a lower bound)
    and the saturation level is reported as 0.
    """
    index = int(np.argmax(curve.variance_adu2))
    saturated = index < len(curve.variance_adu2) - 1
    level = float(curve.mean_adu[index])
    if not saturated:
        logger.warning("flat series did not reach saturation: full well is a lower bound")
    return (level - offset_adu) / gain_adu_per_e, level if saturated else 0.0


def _linearity_error_pct(
    flat: Sequence[SeriesMoments],
    dark: Sequence[SeriesMoments],
    defects: np.ndarray,
    saturation_adu: float,
) -> float:
    """EMVA linearity: max deviation (% of the fitted signal) of signal vs exposure, 5-95 %."""
    good = ~defects
    dark_level = float(np.median(dark[0].mean_adu[good]))
    exposures = np.array([s.exposure_ms for s in flat])
    signal = np.array([float(np.median(s.mean_adu[good])) for s in flat]) - dark_level
    top = saturation_adu - dark_level
    keep = (signal > 0.05 * top) & (signal < 0.95 * top)
    if keep.sum() < 2:
        return float("nan")
    slope = float(np.sum(exposures[keep] * signal[keep]) / np.sum(exposures[keep] ** 2))
    fitted = slope * exposures[keep]
    return float(np.max(np.abs(signal[keep] - fitted) / fitted) * 100.0)


def default_flat_exposures_ms(
    rate_adu_per_ms: float, offset_adu: float, saturation_adu: float, n_levels: int = 14
) -> list[float]:
    """Geometric exposure ladder from ~2 % to ~130 % of the ADC range above the offset."""
    if rate_adu_per_ms <= 0:
        raise ValueError(f"signal rate {rate_adu_per_ms} ADU/ms: the specimen is not lit")
    headroom = saturation_adu - offset_adu
    low = 0.02 * headroom / rate_adu_per_ms
    high = 1.3 * headroom / rate_adu_per_ms
    return [float(v) for v in np.geomspace(low, high, n_levels)]


def calibrate_camera(
    rig: Rig,
    laser_nm: int,
    power_pct: float = 5.0,
    n_frames: int = 200,
    flat_exposures_ms: Sequence[float] | None = None,
    dark_exposures_ms: Sequence[float] = (1.0, 100.0, 1000.0),
    n_dark_frames: int | None = None,
    timeout_s: float = 60.0,
) -> CameraCalibration:
    """Acquire dark and flat series through a :class:`hardware.rig.Rig` and fit the maps.

    Dark: all AOTF lines at 0 % and the shutter closed. Flat: ``laser_nm`` at ``power_pct``
    (default a safe 5 %) with the SLM blank (uniform light: a grating drifting across the
    specimen would change pixels between frames and count as noise); without
    ``flat_exposures_ms`` a ladder up to saturation is chosen from a probe frame. The camera's
    exposure, the AOTF powers and the SLM pattern are restored.
    """
    camera = rig.camera
    aotf = rig.aotf
    saturation_adu = 65535.0
    saved_exposure = camera.exposure_ms
    saved_powers = {line: aotf.power_pct(line) for line in aotf.lines_nm}
    slm = getattr(rig, "slm", None)
    saved_pattern = slm.pattern_index if slm is not None else None
    n_dark = n_dark_frames or n_frames

    dark_level: list[np.ndarray] = []  # the offset map, once the dark series are in

    def series(exposure_ms: float, count: int, light: bool = True) -> SeriesMoments:
        camera.set_exposure_ms(float(exposure_ms))
        frames = np.stack(rig.snap(count, timeout_s=timeout_s + count * exposure_ms / 1000.0,
                                   shutter_open=light))
        level = dark_level[0] if dark_level else None
        return series_moments(frames, exposure_ms, saturation_adu, dark_level_adu=level)

    try:
        for line in aotf.lines_nm:
            aotf.set_power(line, 0.0)
        dark = [series(t, n_dark, light=False) for t in dark_exposures_ms]
        dark_level.append(dark[0].mean_adu)
        aotf.set_line(laser_nm)
        aotf.set_power(laser_nm, power_pct)
        if slm is not None:
            slm.show_blank(laser_nm)
        if flat_exposures_ms is None:
            probe_ms = 10.0
            probe = series(probe_ms, 4)
            offset = float(np.median(dark[0].mean_adu))
            rate = float(np.percentile(probe.mean_adu, 20) - offset) / probe_ms
            flat_exposures_ms = default_flat_exposures_ms(rate, offset, saturation_adu)
            logger.info("flat exposures (ms): %s", np.round(flat_exposures_ms, 2).tolist())
        flat = [series(t, n_frames) for t in flat_exposures_ms]
    finally:
        camera.set_exposure_ms(saved_exposure)
        for line, power in saved_powers.items():
            aotf.set_power(line, power)
        if slm is not None and saved_pattern is not None:
            slm.show(saved_pattern)
    metadata = {
        "camera": str(getattr(camera, "label", "camera")),
        "laser_nm": str(laser_nm),
        "n_frames": str(n_frames),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return fit_calibration(dark, flat, saturation_adu, metadata)


def plot_photon_transfer(calibration: CameraCalibration, path: str | Path) -> Path:
    """Photon-transfer plot (variance vs mean, log-log, EMVA style) as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing to close

    curve = calibration.curve
    offset = float(np.median(calibration.offset_adu[~calibration.defect_mask]))
    gain = calibration.median_gain_adu_per_e
    read_variance = float(np.median(calibration.variance_adu2[~calibration.defect_mask]))
    signal = np.maximum(curve.mean_adu - offset, 1e-3)
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    left.loglog(signal, curve.variance_adu2, "o", label="median pixel")
    model_signal = np.geomspace(max(signal.min(), 1e-1), signal.max(), 100)
    left.loglog(
        model_signal, gain * model_signal + read_variance, "-", label=f"g = {gain:.3f} ADU/e"
    )
    left.set_xlabel("mean signal above offset (ADU)")
    left.set_ylabel("temporal variance (ADU$^2$)")
    left.set_title(f"photon transfer (read noise {calibration.median_read_noise_e:.2f} e)")
    left.legend()
    right.plot(curve.exposures_ms, curve.mean_adu - offset, "o-")
    right.set_xlabel("exposure (ms)")
    right.set_ylabel("mean signal above offset (ADU)")
    right.set_title(f"linearity error {calibration.linearity_error_pct:.2f} %")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
