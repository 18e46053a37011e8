"""The assessment matrix (DFCAN paper, Fig. 2-3 style) on held-out emulator fields: NRMSE,
MS-SSIM and decorrelation resolution per structure x photon level x method, and the
"priority region" where each network beats Wiener SIM.

Every method reconstructs the whole field, then the same interior (`border_px` raw pixels off
every edge, by default Wiener's 16 px edge taper, which would otherwise dominate the error of
small fields) goes through the same protocol (`inference.evaluation.score`: normalise,
register, linear fit onto the ground truth) against the emulator's SR ground truth;
wide-field is upsampled 2x (cubic) so it lives on the same grid. Fields use seeds from
`EmulatorSource.ASSESSMENT_SEED_BASE` on, which training never draws.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np
from pydantic import Field, field_validator, model_validator
from scipy import ndimage

from inference.evaluation import Scores, decorrelation_resolution, score
from inference.training.data import EmulatorSource
from settings_file import StrictModel

log = logging.getLogger(__name__)

BASELINES = ("wf", "wiener")
# raw pixels left out at every edge before scoring, by the assessment and `make demo` alike
SCORING_BORDER_PX = 16
METRICS = ("nrmse", "ms_ssim", "resolution_nm")


class AssessmentConfig(StrictModel):
    """What to assess: structures x photon levels x methods, fields per cell and their size."""

    structures: list[str] = Field(default=["microtubules", "f-actin", "er", "ccps"])
    photon_counts_e: list[float] = Field(
        default=[15, 30, 60, 120, 240, 480],
        description="photon levels: average photon count (calibration.photon_count), e-",
    )
    methods: list[str] = Field(default=["wf", "wiener", "dfcan-sisr", "dfcan-sim", "dfgan-sim"])
    samples: int = Field(default=4, ge=1, le=1000)
    size_px: int = Field(default=128, ge=32, le=2048)
    pixel_size_nm: float = Field(default=62.6, gt=0)
    decorrelation: bool = True
    border_px: int = Field(
        default=SCORING_BORDER_PX,
        ge=0,
        description="raw pixels left out at every edge before scoring (Wiener's edge taper)",
    )
    threads: int = Field(default=0, ge=0)

    @field_validator("structures")
    @classmethod
    def _known_structures(cls, value: list[str]) -> list[str]:
        from sim_emulator.microscope import StructureChoice

        allowed = get_args(StructureChoice)
        for name in value:
            if name not in allowed:
                raise ValueError(f"structure {name!r} is unknown; choose from {allowed}")
        if not value:
            raise ValueError("structures must not be empty")
        return value

    @model_validator(mode="after")
    def _border_fits(self) -> AssessmentConfig:
        if self.size_px - 2 * self.border_px < 32:
            raise ValueError(
                f"border_px={self.border_px} leaves less than 32 px of a {self.size_px} px field"
            )
        return self

    @field_validator("photon_counts_e")
    @classmethod
    def _positive_photons(cls, value: list[float]) -> list[float]:
        if not value or any(p <= 0 for p in value):
            raise ValueError(f"photon_counts_e must be positive levels, got {value}")
        return value


@dataclass
class Measurement:
    """One method on one field: its scores against the SR ground truth."""

    structure: str
    photon_count_e: float
    seed: int
    method: str
    nrmse: float
    ms_ssim: float
    resolution_nm: float


@dataclass
class AssessmentResult:
    """All measurements plus the configuration that produced them."""

    config: AssessmentConfig
    measurements: list[Measurement] = field(default_factory=list)
    gt_resolution_nm: dict[str, float] = field(default_factory=dict)

    def summary(self) -> list[dict[str, float | str]]:
        """Mean and standard deviation per (structure, photon count, method)."""
        rows: list[dict[str, float | str]] = []
        for structure in self.config.structures:
            for photons in self.config.photon_counts_e:
                for method in self.config.methods:
                    cell = [
                        m
                        for m in self.measurements
                        if (m.structure, m.photon_count_e, m.method) == (structure, photons, method)
                    ]
                    if not cell:
                        continue
                    row: dict[str, float | str] = {
                        "structure": structure,
                        "photon_count_e": photons,
                        "method": method,
                        "n": len(cell),
                    }
                    for metric in METRICS:
                        values = np.array([getattr(m, metric) for m in cell], dtype=float)
                        finite = values[np.isfinite(values)]
                        row[f"{metric}_mean"] = float(finite.mean()) if finite.size else math.nan
                        row[f"{metric}_std"] = float(finite.std()) if finite.size else math.nan
                    rows.append(row)
        return rows

    def mean(
        self, structure: str, photon_count_e: float, method: str, metric: str = "nrmse"
    ) -> float:
        """Mean of `metric` in one cell of the matrix (NaN when absent)."""
        for row in self.summary():
            key = (row["structure"], row["photon_count_e"], row["method"])
            if key == (structure, photon_count_e, method):
                return float(row[f"{metric}_mean"])
        return math.nan

    def priority_region(self) -> dict[str, list[tuple[str, float]]]:
        """Per network: the (structure, photon count) cells where its mean NRMSE is below
        Wiener's."""
        summary = {
            (str(r["structure"]), float(r["photon_count_e"]), str(r["method"])): float(
                r["nrmse_mean"]
            )
            for r in self.summary()
        }
        region: dict[str, list[tuple[str, float]]] = {}
        for method in self.config.methods:
            if method in BASELINES:
                continue
            region[method] = [
                (s, p)
                for s in self.config.structures
                for p in self.config.photon_counts_e
                if summary.get((s, p, method), math.inf) < summary.get((s, p, "wiener"), -math.inf)
            ]
        return region


def upsample_widefield(image: np.ndarray, factor: int) -> np.ndarray:
    """Wide-field image onto the SR grid by cubic interpolation (pixel centres kept)."""
    return ndimage.zoom(
        np.asarray(image, dtype=np.float32), factor, order=3, mode="nearest", grid_mode=True
    ).astype(np.float32)


def interior(image: np.ndarray, border_px: int) -> np.ndarray:
    """The image without `border_px` pixels at every edge (reconstructed full-field first)."""
    if border_px == 0:
        return image
    return np.ascontiguousarray(image[..., border_px:-border_px, border_px:-border_px])


def score_interior(image: np.ndarray, ground_truth: np.ndarray, border_px: int) -> Scores:
    """The assessment's scoring of one SR-grid image (2Y, 2X) against the SR ground truth:
    the interior (``border_px`` raw pixels, i.e. 2 x that on the SR grid, off every edge)
    through `inference.evaluation.score`. `make demo`'s quality summary uses it too."""
    return score(interior(image, 2 * border_px), interior(ground_truth, 2 * border_px))


def _reconstruct(method: str, raw: np.ndarray, cache: dict[str, object]) -> np.ndarray:
    """The SR image of `method` for one raw set (wf, wiener, bundled name or model path)."""
    from inference.reconstruction import WideFieldReconstructor, make_reconstructor

    if method == "wf":
        image = WideFieldReconstructor().reconstruct(raw).image
        return upsample_widefield(image, 2)
    if method == "wiener":
        # parameters are estimated on each field (a fresh reconstructor per set)
        return make_reconstructor("wiener").reconstruct(raw).image
    reconstructor = cache.get(method)
    if reconstructor is None:
        reconstructor = make_reconstructor(method, device="cpu", backend="torch")
        cache[method] = reconstructor
    return reconstructor.reconstruct(raw).image  # type: ignore[attr-defined,no-any-return]


def run_assessment(
    config: AssessmentConfig, progress: Callable[[str], None] | None = None
) -> AssessmentResult:
    """Score every method on `samples` held-out fields per structure and photon level."""
    import torch

    from sim_emulator.training_pairs import make_training_pair

    if config.threads:
        torch.set_num_threads(config.threads)
    result = AssessmentResult(config)
    cache: dict[str, object] = {}
    sr_pixel_nm = config.pixel_size_nm / 2.0
    for s_index, structure in enumerate(config.structures):
        gt_resolutions = []
        for p_index, photons in enumerate(config.photon_counts_e):
            for sample in range(config.samples):
                seed = EmulatorSource.ASSESSMENT_SEED_BASE + 10_000 * s_index + sample
                # the same field at every photon level: only the noise changes along a row
                pair = make_training_pair(
                    structure,  # type: ignore[arg-type]
                    "sim",
                    photon_count_e=photons,
                    size_px=config.size_px,
                    seed=seed,
                )
                gt = interior(pair.sr_gt, 2 * config.border_px)
                if p_index == 0 and config.decorrelation:
                    gt_resolutions.append(float(decorrelation_resolution(gt, sr_pixel_nm)))
                for method in config.methods:
                    try:
                        image = _reconstruct(method, pair.raw, cache)
                    except (ValueError, RuntimeError) as exc:
                        raise ValueError(f"method {method!r}: {exc}") from exc
                    scores = score_interior(image, pair.sr_gt, config.border_px)
                    image = interior(image, 2 * config.border_px)
                    resolution = (
                        float(decorrelation_resolution(image, sr_pixel_nm))
                        if config.decorrelation
                        else math.nan
                    )
                    result.measurements.append(
                        Measurement(
                            structure,
                            photons,
                            seed,
                            method,
                            float(scores.nrmse),
                            float(scores.ms_ssim),
                            resolution,
                        )
                    )
            if progress is not None:
                progress(f"assessed {structure} at {photons:g} photons")
        finite = [r for r in gt_resolutions if math.isfinite(r)]
        result.gt_resolution_nm[structure] = float(np.mean(finite)) if finite else math.nan
    return result


def _fmt(mean: float | str, std: float | str, digits: int) -> str:
    mean_f, std_f = float(mean), float(std)
    if not math.isfinite(mean_f):
        return "n/a"
    return f"{mean_f:.{digits}f} ± {std_f:.{digits}f}"


def markdown_table(result: AssessmentResult) -> str:
    """The matrix as markdown: one table per metric, and the priority region of each network."""
    summary = result.summary()
    lookup = {(r["structure"], r["photon_count_e"], r["method"]): r for r in summary}
    methods = result.config.methods
    lines = []
    for metric, title, digits in (
        ("nrmse", "NRMSE vs SR ground truth (lower is better)", 4),
        ("ms_ssim", "MS-SSIM (higher is better)", 3),
        ("resolution_nm", "Decorrelation resolution, nm (lower is finer)", 0),
    ):
        lines += [f"### {title}", ""]
        lines.append("| structure | photon count (e-) | " + " | ".join(methods) + " |")
        lines.append("|---|---:|" + "---:|" * len(methods))
        for structure in result.config.structures:
            for photons in result.config.photon_counts_e:
                cells = []
                for method in methods:
                    row = lookup.get((structure, photons, method))
                    if row is None:
                        cells.append("")
                    else:
                        cells.append(_fmt(row[f"{metric}_mean"], row[f"{metric}_std"], digits))
                lines.append(f"| {structure} | {photons:g} | " + " | ".join(cells) + " |")
        lines.append("")
    if result.gt_resolution_nm:
        lines.append(
            "Ground-truth decorrelation resolution (nm): "
            + ", ".join(f"{s} {v:.0f}" for s, v in result.gt_resolution_nm.items())
        )
        lines.append("")
    lines += ["### Priority region (mean NRMSE below Wiener SIM)", ""]
    for method, region in result.priority_region().items():
        by_structure: dict[str, list[str]] = {}
        for name, level in region:
            by_structure.setdefault(name, []).append(f"{level:g}")
        text = "; ".join(f"{s}: {', '.join(p)}" for s, p in by_structure.items()) or "none"
        lines.append(f"- {method}: {text}")
    return "\n".join(lines) + "\n"


def plot_assessment(result: AssessmentResult, path: Path) -> None:
    """NRMSE and MS-SSIM against photons, one column per structure, one line per method."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing to close

    structures = result.config.structures
    fig = Figure(figsize=(3.2 * len(structures), 6))
    axes = fig.subplots(2, len(structures), squeeze=False)
    summary = result.summary()
    for column, structure in enumerate(structures):
        for row_index, metric in enumerate(("nrmse", "ms_ssim")):
            ax = axes[row_index][column]
            for method in result.config.methods:
                rows = [r for r in summary if r["structure"] == structure and r["method"] == method]
                ax.errorbar(
                    [float(r["photon_count_e"]) for r in rows],
                    [float(r[f"{metric}_mean"]) for r in rows],
                    yerr=[float(r[f"{metric}_std"]) for r in rows],
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=method,
                )
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(result.config.photon_counts_e)
            ax.set_xticklabels([f"{p:g}" for p in result.config.photon_counts_e], fontsize=7)
            ax.set_xlabel("average photon count (e-)")
            ax.set_ylabel(metric.upper().replace("_", "-"))
            ax.set_title(structure, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def write_assessment(result: AssessmentResult, folder: Path) -> dict[str, Path]:
    """Write assessment.csv (summary), samples.csv (every field), assessment.md and .png."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": folder / "assessment.csv",
        "samples": folder / "samples.csv",
        "markdown": folder / "assessment.md",
        "png": folder / "assessment.png",
    }
    summary = result.summary()
    with files["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(summary[0]) if summary else ["structure"])
        writer.writeheader()
        writer.writerows(summary)
    with files["samples"].open("w", newline="") as handle:
        plain = csv.writer(handle)
        plain.writerow(["structure", "photon_count_e", "seed", "method", *METRICS])
        for m in result.measurements:
            plain.writerow(
                [m.structure, m.photon_count_e, m.seed, m.method, m.nrmse, m.ms_ssim,
                 m.resolution_nm]
            )
    files["markdown"].write_text(markdown_table(result))
    plot_assessment(result, files["png"])
    return files
