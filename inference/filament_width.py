"""Filament width: FWHM of intensity profiles across filaments (microtubules, actin, ER tubules).

A reference-free resolution figure that a microscopist can check by eye: find the filaments'
centre lines once (on any image of the field), cut short profiles perpendicular to them, fit
a Gaussian plus a linear background to each profile and report the median FWHM. Profiles are
placed in physical units (nm), so the same profiles can be measured on images with different
pixel sizes (wide-field and 2x SR) and the widths compared filament by filament.

Centre lines: the Sato tubeness filter and skeletonisation of scikit-image; the local
direction comes from the Hessian (`skimage.feature.hessian_matrix`). Points near junctions,
crossings and the image border are left out, and a profile only counts when the fit is good
(R^2, centred peak, positive amplitude, width inside the profile).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

logger = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class FilamentProfiles:
    """Where to measure: centre points (N, 2) as (y, x) in nm and unit normals (N, 2) (y, x).

    Positions are in nm from the centre of pixel (0, 0) of the image they were found on.
    """

    centres_nm: np.ndarray
    normals: np.ndarray

    def __len__(self) -> int:
        return int(self.centres_nm.shape[0])


@dataclass(frozen=True)
class FilamentWidths:
    """Per-profile FWHM (nm; NaN where the fit was rejected) and their median."""

    fwhm_nm: np.ndarray

    @property
    def n_valid(self) -> int:
        """Number of profiles whose fit was accepted."""
        return int(np.isfinite(self.fwhm_nm).sum())

    @property
    def median_nm(self) -> float:
        """Median FWHM over the accepted profiles (NaN when none)."""
        valid = self.fwhm_nm[np.isfinite(self.fwhm_nm)]
        return float(np.median(valid)) if valid.size else float("nan")


def find_filament_profiles(
    image: np.ndarray,
    pixel_size_nm: float,
    max_profiles: int = 400,
    spacing_nm: float = 250.0,
    filament_sigma_nm: float = 60.0,
    junction_clearance_nm: float = 300.0,
    border_nm: float = 500.0,
    min_contrast: float = 0.3,
) -> FilamentProfiles:
    """Centre-line points of bright filaments in ``image`` (Y, X), at least ``spacing_nm``
    apart, away from junctions and the border; the strongest ridges first.

    ``min_contrast`` keeps ridge points whose tubeness is above that fraction of the image's
    99th-percentile tubeness.
    """
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals
    from skimage.filters import sato
    from skimage.morphology import skeletonize

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be (Y, X), got shape {image.shape}")
    if pixel_size_nm <= 0:
        raise ValueError(f"pixel_size_nm={pixel_size_nm} must be > 0")
    sigma_px = max(filament_sigma_nm / pixel_size_nm, 1.0)
    low, high = np.percentile(image, (1.0, 99.9))
    scaled = np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)
    tubeness = sato(scaled, sigmas=[sigma_px], black_ridges=False)
    strong = tubeness > min_contrast * np.percentile(tubeness, 99.0)
    skeleton = skeletonize(strong)
    neighbours = (
        ndimage.convolve(skeleton.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - 1
    )
    junctions = skeleton & (neighbours >= 3)
    clearance_px = junction_clearance_nm / pixel_size_nm
    if junctions.any():
        near_junction = ndimage.distance_transform_edt(~junctions) < clearance_px
    else:
        near_junction = np.zeros_like(skeleton)
    border_px = int(np.ceil(border_nm / pixel_size_nm))
    inside = np.zeros_like(skeleton)
    inside[border_px:-border_px, border_px:-border_px] = True
    candidates = skeleton & ~near_junction & inside
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        return FilamentProfiles(np.zeros((0, 2)), np.zeros((0, 2)))
    order = np.argsort(-tubeness[ys, xs])
    ys, xs = ys[order], xs[order]
    hessian = hessian_matrix(scaled, sigma=sigma_px, order="rc", use_gaussian_derivatives=False)
    eigenvalues = hessian_matrix_eigvals(hessian)
    spacing_px = spacing_nm / pixel_size_nm
    taken = np.zeros(image.shape, dtype=bool)
    centres, normals = [], []
    reach = int(np.ceil(spacing_px))
    for y, x in zip(ys, xs, strict=True):
        if taken[y, x]:
            continue
        h_rr, h_rc, h_cc = (float(h[y, x]) for h in hessian)
        smallest = float(eigenvalues[1][y, x])  # most negative: across a bright ridge
        if smallest >= 0:
            continue
        # eigenvector of [[h_rr, h_rc], [h_rc, h_cc]] for `smallest`: the normal (y, x)
        normal = (
            np.array([h_rc, smallest - h_rr])
            if abs(h_rc) > 1e-12
            else (np.array([1.0, 0.0]) if h_rr < h_cc else np.array([0.0, 1.0]))
        )
        norm = float(np.hypot(*normal))
        if norm == 0:
            continue
        centres.append((y * pixel_size_nm, x * pixel_size_nm))
        normals.append(normal / norm)
        y0, y1 = max(y - reach, 0), min(y + reach + 1, image.shape[0])
        x0, x1 = max(x - reach, 0), min(x + reach + 1, image.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        taken[y0:y1, x0:x1] |= np.hypot(yy - y, xx - x) <= spacing_px
        if len(centres) >= max_profiles:
            break
    return FilamentProfiles(np.array(centres, dtype=float), np.array(normals, dtype=float))


def filament_fwhm_nm(
    image: np.ndarray,
    pixel_size_nm: float,
    profiles: FilamentProfiles,
    half_length_nm: float = 400.0,
    line_width_nm: float = 60.0,
    min_r_squared: float = 0.8,
) -> FilamentWidths:
    """FWHM (nm) of a Gaussian + linear background fitted to each profile across a filament.

    Profiles are ``2 half_length_nm`` long, averaged over ``line_width_nm`` along the filament
    (skimage.measure.profile_line, linear interpolation). A fit counts when R^2 >=
    ``min_r_squared``, the amplitude is positive, the peak lies within a third of the half
    length of the given centre and the FWHM is between 2 pixels (narrower cannot be told from
    noise at this sampling) and the profile half length.
    """
    from skimage.measure import profile_line

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be (Y, X), got shape {image.shape}")
    widths = np.full(len(profiles), np.nan)
    half_px = half_length_nm / pixel_size_nm
    line_px = max(round(line_width_nm / pixel_size_nm), 1)
    for index, (centre, normal) in enumerate(
        zip(profiles.centres_nm, profiles.normals, strict=True)
    ):
        centre_px = centre / pixel_size_nm
        start = centre_px - half_px * normal
        end = centre_px + half_px * normal
        values = profile_line(
            image, start, end, linewidth=line_px, order=1, mode="reflect", reduce_func=np.mean
        )
        positions_nm = np.linspace(-half_length_nm, half_length_nm, values.size)
        width = _gaussian_fwhm(positions_nm, values, half_length_nm, min_r_squared)
        widths[index] = width if width >= 2.0 * pixel_size_nm else np.nan
    return FilamentWidths(widths)


def _gaussian_fwhm(
    positions_nm: np.ndarray, values: np.ndarray, half_length_nm: float, min_r_squared: float
) -> float:
    """FWHM of a + b x + A exp(-(x - c)^2 / 2 s^2) fitted to one profile; NaN if rejected."""
    if values.size < 7 or not np.all(np.isfinite(values)):
        return float("nan")
    x = positions_nm / half_length_nm  # fit in units of the half length: well conditioned
    scale = float(np.ptp(values)) or 1.0
    y = (values - float(values.min())) / scale

    def model(p: np.ndarray) -> np.ndarray:
        return p[0] + p[1] * x + p[2] * np.exp(-0.5 * ((x - p[3]) / p[4]) ** 2)

    def residuals(p: np.ndarray) -> np.ndarray:
        return model(p) - y

    def jacobian(p: np.ndarray) -> np.ndarray:
        u = (x - p[3]) / p[4]
        g = np.exp(-0.5 * u**2)
        return np.stack(
            [np.ones_like(x), x, g, p[2] * g * u / p[4], p[2] * g * u**2 / p[4]], axis=1
        )

    edge = float(np.median(np.concatenate([y[:3], y[-3:]])))
    centre = y[y.size // 2 - 2 : y.size // 2 + 3]
    guess = np.array([edge, 0.0, max(float(centre.max()) - edge, 1e-3), 0.0, 0.25])
    try:
        fit = optimize.least_squares(residuals, guess, jac=jacobian, method="lm", max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return float("nan")
    p = fit.x
    total = float(np.sum((y - y.mean()) ** 2))
    r_squared = 1.0 - float(np.sum(fit.fun**2)) / total if total > 0 else 0.0
    fwhm = FWHM_PER_SIGMA * abs(float(p[4])) * half_length_nm
    if (
        not fit.success
        or r_squared < min_r_squared
        or p[2] <= 0
        or abs(p[3]) > 1.0 / 3.0
        or fwhm >= half_length_nm
    ):
        return float("nan")
    return fwhm
