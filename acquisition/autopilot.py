"""Photon-budget autopilot: the least light that keeps the super-resolution within its target.

Per channel, between time points (never inside a SIM set), the controller looks at the photon
count the last set delivered and the trust of its SR image, asks the error model which photon
count the chosen reconstruction needs to stay within the target error, and moves laser power
(first) and exposure (second, within limits) towards it:

- **required photon count**: the lowest count whose predicted error (``ErrorModel``, from the
  assessment matrix of the realistic emulator) is within ``target_error``, times
  ``photon_margin`` (one set's error scatters around the model's value), and times
  ``trust_margin`` while the live trust check fails (the reconstruction then needs more light
  than the assessment predicts for this sample);
- **dead band (hysteresis)**: nothing changes while the measured count lies within
  [required, required x (1 + dead_band)]; outside it the light is scaled towards
  required x (1 + dead_band / 2);
- **bounded steps**: one change scales the light by at most ``max_step`` (up or down);
- **hard limits**: power and exposure stay within the protocol's min/max; when the required
  count cannot be reached at the maximum allowed light, the decision says so
  (``target_reachable`` False) and the light stays at the maximum.

Photon count scales with power x exposure (the dose of one frame); bleaching changes the
ratio over time, which the loop follows because it measures every set. Every decision that
changes a setting carries a reason for ``/events``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.photon_count import average_photon_count
from hardware.sequencing import SequencePlan


class ErrorModel(BaseModel):
    """Predicted error of a reconstruction vs photon count: log-log interpolation of measured
    (photon_count_e, error) points, e.g. one method's column of the assessment matrix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    photon_count_e: tuple[float, ...]
    error: tuple[float, ...]

    @model_validator(mode="after")
    def _points(self) -> ErrorModel:
        counts, errors = self.photon_count_e, self.error
        if len(counts) < 2 or len(counts) != len(errors):
            raise ValueError("an error model needs >= 2 (photon_count_e, error) pairs")
        if any(c <= 0 for c in counts) or any(e <= 0 for e in errors):
            raise ValueError("photon counts and errors must be > 0")
        if list(counts) != sorted(set(counts)):
            raise ValueError(f"photon counts must increase: {list(counts)}")
        return self

    @classmethod
    def from_points(cls, points: Sequence[tuple[float, float]]) -> ErrorModel:
        """From (photon_count_e, error) pairs in any order."""
        ordered = sorted(points)
        return cls(
            photon_count_e=tuple(p[0] for p in ordered), error=tuple(p[1] for p in ordered)
        )

    def predicted_error(self, photon_count_e: float) -> float:
        """Error at ``photon_count_e`` (log-log linear; extrapolated from the end segments)."""
        from scipy.interpolate import interp1d

        log_error = interp1d(np.log(self.photon_count_e), np.log(self.error),
                             fill_value="extrapolate", assume_sorted=True)
        return float(np.exp(log_error(math.log(max(photon_count_e, 1e-9)))))

    def required_photon_count_e(self, target_error: float) -> float | None:
        """Lowest photon count whose predicted error is within ``target_error`` (errors fall
        with light); None when even the brightest measured point misses the target."""
        counts, errors = self.photon_count_e, self.error
        if errors[0] <= target_error:
            return counts[0]
        for i in range(1, len(counts)):
            if errors[i] <= target_error:
                x0, x1 = math.log(counts[i - 1]), math.log(counts[i])
                y0, y1 = math.log(errors[i - 1]), math.log(errors[i])
                x = x0 + (math.log(target_error) - y0) * (x1 - x0) / (y1 - y0)
                return math.exp(x)
        return None


# sets of history per channel kept for the GUI's trend
HISTORY_SETS = 500

# Wiener SIM's SR error relative to its own noiseless floor vs photon count (e-), the worst of
# three 96 px fields of the realistic emulator (microtubules) per level (`livesim bench autopilot`)
WIENER_RELATIVE_ERROR = ErrorModel(
    photon_count_e=(1.9, 3.9, 7.9, 15.8, 31.7, 63.4, 126.8),
    error=(4.678, 3.410, 2.449, 1.841, 1.462, 1.248, 1.131),
)


class AutopilotSettings(BaseModel):
    """A channel's autopilot (``autopilot = { target_error = 0.02, ... }`` in the protocol)."""

    model_config = ConfigDict(extra="forbid")

    target_error: float = Field(
        gt=0.0,
        le=100.0,
        description="predicted error to stay within, in the error model's unit (NRMSE, or NRMSE "
        "relative to the reconstruction's own floor)",
    )
    min_power_pct: float = Field(default=0.5, ge=0.0, le=100.0)
    max_power_pct: float = Field(default=100.0, gt=0.0, le=100.0)
    min_exposure_ms: float | None = Field(
        default=None, gt=0.0, description="None: exposure stays at the protocol's value"
    )
    max_exposure_ms: float | None = Field(default=None, gt=0.0)
    max_step: float = Field(default=1.5, gt=1.0, le=10.0, description="largest scale per change")
    dead_band: float = Field(default=0.3, ge=0.0, le=5.0, description="relative hysteresis")
    photon_margin: float = Field(
        default=1.25,
        ge=1.0,
        le=10.0,
        description="light above the error model's required count: one set's error scatters "
        "around the model's value at a given photon count",
    )
    trust_margin: float = Field(
        default=1.5, ge=1.0, le=10.0, description="extra light while the trust check fails"
    )
    max_raw_chi2: float = Field(
        default=5.0, gt=0.0, description="live trust check: raw-data consistency at most this"
    )
    min_resolution_scaled_pearson: float = Field(
        default=0.9, ge=-1.0, le=1.0, description="live trust check: at least this"
    )
    error_model: ErrorModel = Field(
        default=WIENER_RELATIVE_ERROR,
        description="predicted error vs photon count; default: Wiener SIM relative to its floor",
    )

    @model_validator(mode="after")
    def _limits_ordered(self) -> AutopilotSettings:
        if self.min_power_pct > self.max_power_pct:
            raise ValueError(
                f"min_power_pct={self.min_power_pct} exceeds max_power_pct={self.max_power_pct}"
            )
        if (self.min_exposure_ms is None) != (self.max_exposure_ms is None):
            raise ValueError("give both min_exposure_ms and max_exposure_ms, or neither")
        if (
            self.min_exposure_ms is not None
            and self.max_exposure_ms is not None
            and self.min_exposure_ms > self.max_exposure_ms
        ):
            raise ValueError(
                f"min_exposure_ms={self.min_exposure_ms} exceeds "
                f"max_exposure_ms={self.max_exposure_ms}"
            )
        return self


@dataclass(frozen=True)
class LightSetting:
    """What the channel's laser and camera are set to for the next SIM set."""

    power_pct: float
    exposure_ms: float

    @property
    def dose(self) -> float:
        """Power x exposure (%.ms): photon count per set is proportional to it."""
        return self.power_pct * self.exposure_ms


@dataclass(frozen=True)
class AutopilotDecision:
    """The controller's answer after one SIM set."""

    setting: LightSetting
    changed: bool
    reason: str
    required_photon_count_e: float | None
    target_reachable: bool


class AutopilotController:
    """One channel's autopilot. Call :meth:`after_set` once per completed SIM set, between
    sets; apply the returned setting before the next set starts."""

    def __init__(
        self,
        settings: AutopilotSettings,
        error_model: ErrorModel | None,
        start: LightSetting,
    ) -> None:
        self.settings = settings
        self.error_model = error_model or settings.error_model
        self.setting = self._clamped(start.power_pct, start.exposure_ms)
        self.nominal_exposure_ms = self.setting.exposure_ms
        self.last_decision: AutopilotDecision | None = None

    def after_set(self, photon_count_e: float | None, trusted: bool = True) -> AutopilotDecision:
        """Decide the setting for the next set from the photon count of the one just taken
        and whether its SR image passed the live trust check."""
        s = self.settings
        base = self.error_model.required_photon_count_e(s.target_error)
        if base is None:
            return self._record(
                self._setting_for(math.inf), None, False,
                f"no photon count reaches error {s.target_error:g} in the error model: "
                "maximum allowed light",
            )
        required = base * s.photon_margin * (1.0 if trusted else s.trust_margin)
        if photon_count_e is None or not math.isfinite(photon_count_e) or photon_count_e <= 0:
            return self._record(self.setting, required, True, "no photon count: unchanged")
        upper = required * (1.0 + s.dead_band)
        if required <= photon_count_e <= upper:
            return self._record(self.setting, required, True, "within the dead band")
        goal = required * (1.0 + s.dead_band / 2.0)
        scale = min(max(goal / photon_count_e, 1.0 / s.max_step), s.max_step)
        proposed = self._setting_for(self.setting.dose * scale)
        expected = photon_count_e * proposed.dose / self.setting.dose
        at_max = proposed == self._setting_for(math.inf)
        reachable = not (at_max and expected < required)
        reason = (
            f"{'trust check failed, ' if not trusted else ''}photon count "
            f"{photon_count_e:.4g} e- vs required {required:.4g} e- (error target "
            f"{s.target_error:g}): {'more' if scale > 1.0 else 'less'} light"
        )
        if not reachable:
            reason += "; the target cannot be met at the maximum allowed light"
        return self._record(proposed, required, reachable, reason)

    def _record(
        self, setting: LightSetting, required: float | None, reachable: bool, reason: str
    ) -> AutopilotDecision:
        changed = setting != self.setting
        decision = AutopilotDecision(setting, changed, reason, required, reachable)
        self.setting = setting
        self.last_decision = decision
        return decision

    def _clamped(self, power_pct: float, exposure_ms: float) -> LightSetting:
        s = self.settings
        if s.min_exposure_ms is not None and s.max_exposure_ms is not None:
            exposure_ms = min(max(exposure_ms, s.min_exposure_ms), s.max_exposure_ms)
        return LightSetting(min(max(power_pct, s.min_power_pct), s.max_power_pct), exposure_ms)

    def _setting_for(self, dose: float) -> LightSetting:
        """The setting nearest to ``dose``: at the nominal exposure when the power allows (the
        exposure sets the frame rate, the power only the light); the exposure moves only while
        the power is at one of its limits, and only within its own."""
        s = self.settings
        nominal = self.nominal_exposure_ms
        low = s.min_exposure_ms if s.min_exposure_ms is not None else nominal
        high = s.max_exposure_ms if s.max_exposure_ms is not None else nominal
        exposure, power = nominal, dose / nominal
        if power > s.max_power_pct:
            exposure = min(dose / s.max_power_pct, high)
            power = min(dose / exposure, s.max_power_pct)
        elif power < s.min_power_pct:
            exposure = max(dose / max(s.min_power_pct, 1e-9), low)
            power = max(dose / exposure, s.min_power_pct)
        return LightSetting(round(power, 6), round(exposure, 6))


class RunAutopilot:
    """The autopilots of a run's channels, between time points: photon counts from the raw
    sets just taken, new light settings for the next time point's plan (never inside one)."""

    def __init__(
        self,
        settings: Sequence[AutopilotSettings | None],
        plan: SequencePlan,
        offset_adu: np.ndarray,
        electrons_per_adu: float | np.ndarray,
    ) -> None:
        if len(settings) != len(plan.channels):
            raise ValueError(
                f"{len(settings)} autopilot settings for {len(plan.channels)} channels"
            )
        self.plan = plan
        self.offset_adu = np.asarray(offset_adu, dtype=np.float32)
        self.electrons_per_adu = electrons_per_adu
        self.controllers: dict[int, AutopilotController] = {
            c: AutopilotController(s, None, LightSetting(ch.power_pct, ch.exposure_ms))
            for c, (s, ch) in enumerate(zip(settings, plan.channels, strict=True))
            if s is not None
        }
        # per channel: (photon count e-, power %, exposure ms) of the newest sets, for the GUI
        self.history: dict[int, deque[tuple[float, float, float]]] = {
            c: deque(maxlen=HISTORY_SETS) for c in self.controllers
        }

    def photon_count_e(self, frames: np.ndarray) -> float:
        """Average photon count (e-) of a raw set's wide-field image."""
        wide_field = np.asarray(frames, dtype=np.float32).mean(axis=0)
        return float(average_photon_count(wide_field, self.offset_adu, self.electrons_per_adu))

    def after_time_point(
        self,
        sets: Sequence[tuple[int, np.ndarray]],
        trust: Mapping[int, tuple[float, float]] | None = None,
    ) -> tuple[SequencePlan | None, list[tuple[int, float, AutopilotDecision]]]:
        """(the plan for the next time point, or None when nothing changed; per channel with an
        autopilot: (channel, photon count e-, decision)). ``sets``: (channel, frames);
        ``trust``: per channel the newest live trust record (raw_chi2, resolution-scaled
        Pearson) of its SR images, judged against the channel's limits."""
        decisions = []
        channels = list(self.plan.channels)
        for channel, frames in sets:
            controller = self.controllers.get(channel)
            if controller is None:
                continue
            count = self.photon_count_e(frames)
            taken = controller.setting
            record = (trust or {}).get(channel)
            trusted = record is None or (
                record[0] <= controller.settings.max_raw_chi2
                and record[1] >= controller.settings.min_resolution_scaled_pearson
            )
            decision = controller.after_set(count, trusted)
            decisions.append((channel, count, decision))
            self.history[channel].append((count, taken.power_pct, taken.exposure_ms))
            if decision.changed:
                channels[channel] = channels[channel].model_copy(
                    update={"power_pct": decision.setting.power_pct,
                            "exposure_ms": decision.setting.exposure_ms}
                )
        if not any(d.changed for _, _, d in decisions):
            return None, decisions
        self.plan = self.plan.model_copy(update={"channels": tuple(channels)})
        return self.plan, decisions

    def status(self) -> dict[str, dict[str, object]]:
        """Per channel (key: laser line in nm): the current setting, the newest photon count,
        the required count, whether the target is reachable, and the recent history."""
        out: dict[str, dict[str, object]] = {}
        for channel, controller in self.controllers.items():
            last = controller.last_decision
            history = list(self.history[channel])
            out[str(self.plan.channels[channel].laser_nm)] = {
                "power_pct": controller.setting.power_pct,
                "exposure_ms": controller.setting.exposure_ms,
                "photon_count_e": history[-1][0] if history else None,
                "required_photon_count_e": last.required_photon_count_e if last else None,
                "target_reachable": last.target_reachable if last else True,
                "photon_count_history_e": [round(h[0], 3) for h in history],
                "power_history_pct": [round(h[1], 4) for h in history],
            }
        return out
