"""Networks and Wiener SIM measured on the real SIM data in ``../shared/`` (the trust issue's
done-when figures), one code path for the tests, the CLI (`livesim evaluate-real`) and the docs.

- **TIRF-SIM microtubules** (``dlsr_assets/rDL-SIM_Microtubules_MT_raw9.mrc``, no reference):
  each orientation's frames converted to photo-electrons from their own noise (the stack was
  stretched per orientation), then per method: median filament FWHM against the wide-field's
  (same profiles), SQUIRREL resolution-scaled Pearson with the wide-field over the whole field,
  and "no invented texture": at fine scale (Gaussian sigma 1 SR pixel) the correlation with the
  Wiener SIM of the same stack (measured OTF), next to the wide-field's.
- **T-SIM ER** (``real_sim/tsim_er/ER_k.tif`` with the high-SNR reference ``ER_k_gt.tif``):
  Pearson and NRMSE after the DFCAN papers' normalise / register / linear fit, mean over the
  three time points of a region.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from calibration.otf import MeasuredOtf, OtfModel
from calibration.stack_statistics import electrons_per_orientation
from inference.assessment import upsample_widefield
from inference.evaluation import score
from inference.filament_width import filament_fwhm_nm, find_filament_profiles
from inference.stack_io import load_raw_stack
from inference.trust import resolution_scaled_pearson
from inference.wiener import WienerConfig, WienerSeries, WienerSim
from settings_file import StrictModel

# raw set (P, Y, X), offset removed, in photo-electrons or one proportional scale -> SR (2Y, 2X)
Reconstruct = Callable[[np.ndarray], np.ndarray]

MICROTUBULE_STACK = Path("dlsr_assets") / "rDL-SIM_Microtubules_MT_raw9.mrc"
MICROTUBULE_OTF = Path("real_sim") / "rdl_sim_otf" / "TIRF488_cam1_0_z30_OTF2d.mrc"
MICROTUBULE_NA = 1.49  # detection NA of the TIRF objective (docs/emulator.md)
MICROTUBULE_EMISSION_NM = 525.0
ER_FOLDER = Path("real_sim") / "tsim_er"
# the ER files state no optics: 62.6 nm pixels, NA 1.4 at 525 nm fit the support the data show
ER_PIXEL_NM = 62.6
ER_OTF = OtfModel(na=1.4, emission_nm=525.0)
FINE_SCALE_SIGMA_SR_PX = 1.0


class MicrotubuleRow(StrictModel):
    """One method on the real microtubule stack."""

    method: str
    fwhm_nm: float
    wide_field_fwhm_nm: float
    n_profiles: int
    resolution_scaled_pearson: float
    fine_correlation_with_wiener: float
    wide_field_fine_correlation_with_wiener: float

    @property
    def narrowing(self) -> float:
        """Wide-field FWHM / this method's FWHM."""
        return self.wide_field_fwhm_nm / self.fwhm_nm


class ErRow(StrictModel):
    """One method on one ER region: mean Pearson and NRMSE against the reference."""

    region: int
    method: str
    pearson: float
    nrmse: float


def _fine_correlation(first: np.ndarray, second: np.ndarray) -> float:
    a = gaussian_filter(np.asarray(first, np.float64), FINE_SCALE_SIGMA_SR_PX)
    b = gaussian_filter(np.asarray(second, np.float64), FINE_SCALE_SIGMA_SR_PX)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def microtubule_electrons(shared: Path) -> tuple[np.ndarray, float]:
    """The real microtubule set in photo-electrons (gain and offset per orientation from the
    noise) and its pixel size (nm)."""
    stack = load_raw_stack(shared / MICROTUBULE_STACK)
    if stack.pixel_size_nm is None:
        raise ValueError(f"{stack.path}: states no pixel size")
    cutoff = 2.0 * MICROTUBULE_NA / MICROTUBULE_EMISSION_NM * stack.pixel_size_nm
    electrons, _, _ = electrons_per_orientation(np.asarray(stack.frames[0]), cutoff)
    return electrons, stack.pixel_size_nm


def microtubule_report(shared: Path, methods: dict[str, Reconstruct]) -> list[MicrotubuleRow]:
    """Wiener SIM (measured OTF) and every given method on the real microtubule stack."""
    electrons, pixel_nm = microtubule_electrons(shared)
    otf = MeasuredOtf.from_mrc(shared / MICROTUBULE_OTF)
    config = WienerConfig(background_adu=float(np.percentile(electrons, 0.5)))
    sim = WienerSim.from_raw(electrons, pixel_nm, otf, config)
    wiener = sim.reconstruct(electrons)
    wide_field = sim.wide_field(electrons)
    profiles = find_filament_profiles(wide_field, pixel_nm)
    wide_field_fwhm = filament_fwhm_nm(wide_field, pixel_nm, profiles).median_nm
    wide_field_fine = _fine_correlation(upsample_widefield(wide_field, 2), wiener)
    images = {"wiener": wiener, **{name: run(electrons) for name, run in methods.items()}}
    rows = []
    for name, image in images.items():
        widths = filament_fwhm_nm(image, pixel_nm / 2, profiles)
        rows.append(MicrotubuleRow(
            method=name,
            fwhm_nm=widths.median_nm,
            wide_field_fwhm_nm=wide_field_fwhm,
            n_profiles=widths.n_valid,
            resolution_scaled_pearson=resolution_scaled_pearson(image, wide_field).pearson,
            fine_correlation_with_wiener=_fine_correlation(image, wiener),
            wide_field_fine_correlation_with_wiener=wide_field_fine,
        ))
    return rows


def er_report(
    shared: Path, regions: Sequence[int], methods: dict[str, Reconstruct]
) -> list[ErRow]:
    """Wide-field, Wiener SIM and every given method on the T-SIM ER regions."""
    import tifffile

    rows = []
    for region in regions:
        raw = tifffile.imread(shared / ER_FOLDER / f"ER_{region}.tif").astype(np.float64)
        raw = raw.reshape(-1, 9, *raw.shape[-2:])
        reference = tifffile.imread(shared / ER_FOLDER / f"ER_{region}_gt.tif")
        background = float(np.percentile(raw[0], 0.5))
        series = WienerSeries(
            raw.shape[-2:], ER_PIXEL_NM, ER_OTF, WienerConfig(background_adu=background)
        )
        scores: dict[str, list[tuple[float, float]]] = {}
        for raw_set in raw:
            # one camera, not stretched: offset-free ADU are e- up to one scale, which the
            # networks' normalisation and the scores' linear fit both remove
            frames = (raw_set - background).astype(np.float32)
            images = {
                "wide-field": upsample_widefield(frames.mean(axis=0), 2),
                "wiener": series.reconstruct(raw_set)[0],
                **{name: run(frames) for name, run in methods.items()},
            }
            for name, image in images.items():
                s = score(np.asarray(image, np.float32), reference.astype(np.float32))
                scores.setdefault(name, []).append((float(s.pearson), float(s.nrmse)))
        for name, values in scores.items():
            pearson, nrmse = np.mean(values, axis=0)
            rows.append(ErRow(region=region, method=name, pearson=pearson, nrmse=nrmse))
    return rows


def markdown_tables(microtubules: list[MicrotubuleRow], er: list[ErRow]) -> str:
    """Both reports as markdown tables."""
    lines = ["| method (microtubules) | median FWHM nm (x narrower than wide-field) | profiles "
             "| resolution-scaled Pearson | fine-scale corr. with Wiener (wide-field) |",
             "|---|---|---|---|---|"]
    for r in microtubules:
        lines.append(
            f"| {r.method} | {r.fwhm_nm:.0f} ({r.narrowing:.2f}x; wide-field "
            f"{r.wide_field_fwhm_nm:.0f}) | {r.n_profiles} | {r.resolution_scaled_pearson:.3f} "
            f"| {r.fine_correlation_with_wiener:.3f} "
            f"({r.wide_field_fine_correlation_with_wiener:.3f}) |"
        )
    lines += ["", "| ER region | method | Pearson | NRMSE |", "|---|---|---|---|"]
    lines += [f"| {r.region} | {r.method} | {r.pearson:.3f} | {r.nrmse:.4f} |" for r in er]
    return "\n".join(lines)
