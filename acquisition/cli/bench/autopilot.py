"""Photon-budget autopilot experiment on the emulator: fixed laser power vs the autopilot.

The same sample and seed are imaged twice for ``time_points`` SIM sets: once at a fixed power
(the microscopist's safe, bright choice) and once under :class:`AutopilotController`. Each set
is reconstructed with Wiener SIM using pattern parameters calibrated once on a bright set (the
rig calibration), and its error is measured against the emulator's ground truth. The error
model the autopilot uses is measured first on other fields of the same emulator (the
assessment column of Wiener SIM). Reported: total dose (sum of power x exposure), fluorescence
left at the end (ground-truth brightness relative to the start), SR error over time, the
fraction of time points within the target.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import typer

from acquisition.autopilot import (
    AutopilotController,
    AutopilotSettings,
    ErrorModel,
    LightSetting,
)
from acquisition.cli import options as opt
from acquisition.cli.output_files import check_json_output, write_json
from calibration.otf import OtfModel
from calibration.photon_count import average_photon_count
from calibration.sim_parameters import SimParameters, estimate_sim_parameters
from inference.evaluation import linear_fit, nrmse
from inference.wiener import WienerSim
from sim_emulator.microscope import EmulatorConfig, Microscope

log = logging.getLogger(__name__)

# the border (SR pixels) left out of the error: Wiener's and the emulator's edges
BORDER_SR_PX = 8


@dataclass
class TimePointRecord:
    """One SIM set of one arm of the experiment."""

    time_point: int
    power_pct: float
    exposure_ms: float
    photon_count_e: float
    error: float
    relative_error: float
    fluorescence: float


@dataclass
class AutopilotArm:
    """One arm (fixed power or autopilot): its time points and totals."""

    name: str
    records: list[TimePointRecord] = field(default_factory=list)

    @property
    def total_dose(self) -> float:
        """Sum of power x exposure over the sets (%.ms)."""
        return float(sum(r.power_pct * r.exposure_ms for r in self.records))

    @property
    def fluorescence_left(self) -> float:
        """Ground-truth brightness at the last set relative to the first."""
        return self.records[-1].fluorescence / self.records[0].fluorescence

    def within_target(self, target_error: float, skip: int = 0) -> float:
        """Fraction of sets (after the first ``skip``) whose error is within the target."""
        errors = [r.relative_error for r in self.records[skip:]]
        return float(np.mean([e <= target_error for e in errors])) if errors else 0.0


@dataclass
class AutopilotReport:
    """Both arms, the error model and the settings used."""

    target_error: float
    error_model: list[tuple[float, float]]
    fixed: AutopilotArm
    autopilot: AutopilotArm
    settle_sets: int

    def summary(self) -> dict[str, float]:
        """The figures the docs table shows."""
        return {
            "target_error": self.target_error,
            "fixed_total_dose": self.fixed.total_dose,
            "autopilot_total_dose": self.autopilot.total_dose,
            "dose_saved_fraction": 1.0 - self.autopilot.total_dose / self.fixed.total_dose,
            "fixed_fluorescence_left": self.fixed.fluorescence_left,
            "autopilot_fluorescence_left": self.autopilot.fluorescence_left,
            "fixed_within_target": self.fixed.within_target(self.target_error),
            "autopilot_within_target": self.autopilot.within_target(
                self.target_error, self.settle_sets
            ),
        }

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: summary, error model and every time point of both arms."""
        return {
            "summary": self.summary(),
            "error_model": self.error_model,
            "settle_sets": self.settle_sets,
            "fixed": [asdict(r) for r in self.fixed.records],
            "autopilot": [asdict(r) for r in self.autopilot.records],
        }


def sr_error(microscope: Microscope, raw: np.ndarray, parameters: SimParameters,
             time_s: float, power_pct: float, exposure_ms: float) -> tuple[float, float, float]:
    """(NRMSE of the Wiener SR image vs the ground truth after a linear fit, interior only;
    the same for the noiseless frames of this sample state (the floor); the photon count e-)."""
    c = microscope.config
    offset = microscope.sensor.offset_map_out_adu()
    frames_e = (raw.astype(np.float32) - offset) * np.float32(c.sensor.electrons_per_adu)
    noiseless = microscope.expected_photons(
        time_s, list(range(raw.shape[0])), None, power_pct, exposure_ms
    )
    otf = OtfModel(na=c.optics.na, emission_nm=c.optics.emission_nm)
    wiener = WienerSim(frames_e.shape[1:], parameters, otf)
    truth = microscope.ground_truth(time_s).sr
    inner = (slice(BORDER_SR_PX, -BORDER_SR_PX),) * 2

    def error_of(frames: np.ndarray) -> float:
        sr = wiener.reconstruct(frames)[inner]
        return float(nrmse(linear_fit(sr, truth[inner]), truth[inner]))

    count = float(np.mean(average_photon_count(frames_e, 0.0, 1.0)))
    return error_of(frames_e), error_of(noiseless), count


def calibrated_parameters(config: EmulatorConfig) -> SimParameters:
    """Pattern parameters from one bright set of the same rig (a separate, bright field)."""
    bright = Microscope(config.model_copy(update={"photon_count_e": 2000.0, "seed": 999}))
    raw = bright.render_set(0.0)
    frames_e = (raw.astype(np.float32) - bright.sensor.offset_map_out_adu()) * np.float32(
        bright.config.sensor.electrons_per_adu
    )
    otf = OtfModel(na=config.optics.na, emission_nm=config.optics.emission_nm)
    return estimate_sim_parameters(frames_e, config.optics.pixel_size_nm, otf=otf, offset_adu=0.0)


def measure_error_model(config: EmulatorConfig, parameters: SimParameters,
                        levels_e: tuple[float, ...], fields: int) -> ErrorModel:
    """Relative Wiener SR error vs photon count on ``fields`` other fields per level (the
    assessment); the worst field per level, so the target holds on most fields."""
    points = []
    for level in levels_e:
        relative, counts = [], []
        for index in range(fields):
            scope = Microscope(config.model_copy(update={"photon_count_e": level,
                                                         "seed": 500 + index}))
            raw = scope.render_set(0.0)
            error, floor, count = sr_error(scope, raw, parameters, 0.0,
                                           config.reference_power_pct,
                                           config.reference_exposure_ms)
            relative.append(error / floor)
            counts.append(count)
        points.append((float(np.mean(counts)), float(np.max(relative))))
    return ErrorModel.from_points(points)


def run_arm(name: str, config: EmulatorConfig, parameters: SimParameters, time_points: int,
            interval_s: float, start: LightSetting,
            controller: AutopilotController | None) -> AutopilotArm:
    """Image the same sample for ``time_points`` sets; the controller (if any) sets the light
    between sets, never inside one."""
    scope = Microscope(config)
    arm = AutopilotArm(name)
    setting = start
    for t in range(time_points):
        time_s = t * interval_s
        raw = scope.render_set(time_s, power_pct=setting.power_pct,
                               exposure_ms=setting.exposure_ms)
        error, floor, count = sr_error(scope, raw, parameters, time_s, setting.power_pct,
                                       setting.exposure_ms)
        fluorescence = float(scope.ground_truth(time_s).wf.mean())
        arm.records.append(TimePointRecord(t, setting.power_pct, setting.exposure_ms, count,
                                           error, error / floor, fluorescence))
        if controller is not None:
            decision = controller.after_set(count)
            if decision.changed:
                log.info("t=%d: %s -> %s", t, decision.reason, decision.setting)
            setting = decision.setting
    return arm


def measure_autopilot(size_px: int = 96, time_points: int = 200, interval_s: float = 1.0,
                      structure: str = "microtubules", fixed_power_pct: float = 40.0,
                      target_relative_error: float = 2.0, seed: int = 3,
                      levels_e: tuple[float, ...] = (2, 4, 8, 16, 32, 64, 128),
                      fields: int = 3) -> AutopilotReport:
    """The whole experiment: the fixed arm starts at ``fixed_power_pct`` of a field whose
    reference count (100 %) is 400 e-; the autopilot starts at the same setting."""
    config = EmulatorConfig.model_validate(
        {"size_px": size_px, "structure": structure, "seed": seed, "photon_count_e": 400.0}
    )
    parameters = calibrated_parameters(config)
    model = measure_error_model(config, parameters, levels_e, fields)
    start = LightSetting(fixed_power_pct, config.reference_exposure_ms)
    settings = AutopilotSettings(target_error=target_relative_error, max_power_pct=100.0)
    fixed = run_arm("fixed", config, parameters, time_points, interval_s, start, None)
    pilot = AutopilotController(settings, model, start)
    autopilot = run_arm("autopilot", config, parameters, time_points, interval_s, start, pilot)
    points = list(zip(model.photon_count_e, model.error, strict=True))
    return AutopilotReport(target_relative_error, points, fixed, autopilot, settle_sets=10)


def save_figure(report: AutopilotReport, path: Path) -> Path:
    """Two panels over time: photon count per set, and relative SR error with the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (counts, errors) = plt.subplots(2, 1, figsize=(7.0, 5.5), sharex=True)
    for arm, colour in ((report.fixed, "tab:grey"), (report.autopilot, "tab:blue")):
        t = [r.time_point for r in arm.records]
        counts.plot(t, [r.photon_count_e for r in arm.records], color=colour, label=arm.name)
        errors.plot(t, [r.relative_error for r in arm.records], color=colour, label=arm.name)
    errors.axhline(report.target_error, color="tab:red", linestyle="--", label="target")
    counts.set_yscale("log")
    counts.set_ylabel("photon count (e-)")
    errors.set_ylabel("SR error / its floor")
    errors.set_xlabel("time point")
    counts.legend()
    errors.legend()
    summary = report.summary()
    figure.suptitle(
        f"autopilot: {summary['dose_saved_fraction']:.0%} less dose, "
        f"{summary['autopilot_within_target']:.0%} of sets within target"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def bench_autopilot_command(
    size_px: opt.SizePx = 96,
    time_points: int = typer.Option(200, "--time-points", min=2, help="SIM sets per arm."),
    fixed_power_pct: float = typer.Option(
        40.0, "--power-pct", help="The fixed arm's laser power (and the autopilot's start)."),
    target: float = typer.Option(
        2.0, "--target", help="SR error relative to its floor that the autopilot holds."),
    seed: opt.Seed = 3,
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
    figure: Path | None = typer.Option(None, "--figure", help="Write the PNG figure here."),
) -> None:
    """Fixed power vs the photon-budget autopilot on the same emulated sample."""
    check_json_output(json_out, overwrite)
    report = measure_autopilot(size_px=size_px, time_points=time_points,
                               fixed_power_pct=fixed_power_pct,
                               target_relative_error=target, seed=seed)
    for key, value in report.summary().items():
        typer.echo(f"{key:28s} {value:.4g}")
    if json_out is not None:
        write_json(json_out, report.as_dict(), indent=1)
        typer.echo(f"wrote {json_out}")
    if figure is not None:
        typer.echo(f"wrote {save_figure(report, figure)}")
