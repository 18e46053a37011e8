"""Photon-budget autopilot: required photon count from the error model, bounded steps, dead
band, hard limits, the unreachable case, and a closed loop against a bleaching sample."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from acquisition.autopilot import (
    AutopilotController,
    AutopilotSettings,
    ErrorModel,
    LightSetting,
)

# an assessment-like column: NRMSE of one method at photon counts (e-)
MODEL = ErrorModel.from_points([(12, 0.040), (24, 0.028), (48, 0.020), (96, 0.014), (192, 0.010)])


def test_error_model_interpolates_log_log_and_inverts() -> None:
    assert MODEL.predicted_error(48) == pytest.approx(0.020)
    between = MODEL.predicted_error(math.sqrt(48 * 96))
    assert between == pytest.approx(math.sqrt(0.020 * 0.014))
    required = MODEL.required_photon_count_e(0.017)
    assert required is not None and 48 < required < 96
    assert MODEL.predicted_error(required) == pytest.approx(0.017)
    assert MODEL.required_photon_count_e(0.05) == 12
    assert MODEL.required_photon_count_e(0.005) is None


def test_error_model_rejects_bad_points() -> None:
    with pytest.raises(ValidationError, match="must increase"):
        ErrorModel(photon_count_e=(10, 10), error=(0.1, 0.05))
    with pytest.raises(ValidationError, match=">= 2"):
        ErrorModel(photon_count_e=(10,), error=(0.1,))


def test_settings_reject_crossed_limits() -> None:
    with pytest.raises(ValidationError, match="exceeds max_power_pct"):
        AutopilotSettings(target_error=0.02, min_power_pct=50, max_power_pct=10)
    with pytest.raises(ValidationError, match="or neither"):
        AutopilotSettings(target_error=0.02, min_exposure_ms=5)


def controller(**overrides: float) -> AutopilotController:
    overrides.setdefault("photon_margin", 1.0)
    settings = AutopilotSettings(target_error=0.020, **overrides)  # requires 48 e-
    return AutopilotController(settings, MODEL, LightSetting(power_pct=20.0, exposure_ms=10.0))


def test_steps_are_bounded_both_ways() -> None:
    up = controller(max_step=1.5).after_set(photon_count_e=5.0)
    assert up.changed and up.setting.power_pct == pytest.approx(30.0)
    assert "more light" in up.reason and "48 e-" in up.reason
    down = controller(max_step=1.5).after_set(photon_count_e=5000.0)
    assert down.setting.power_pct == pytest.approx(20.0 / 1.5)
    assert "less light" in down.reason


def test_dead_band_holds_the_setting() -> None:
    pilot = controller(dead_band=0.3)
    for count in (48.5, 55.0, 62.0):  # within [48, 62.4]
        decision = pilot.after_set(photon_count_e=count)
        assert not decision.changed and decision.reason == "within the dead band"
    assert pilot.setting == LightSetting(20.0, 10.0)
    assert pilot.after_set(photon_count_e=47.0).changed
    assert controller(dead_band=0.3).after_set(photon_count_e=63.0).changed


def test_power_first_then_exposure_within_its_limits() -> None:
    pilot = controller(max_power_pct=25.0, min_exposure_ms=5.0, max_exposure_ms=15.0)
    decision = pilot.after_set(photon_count_e=10.0)  # wants 1.5x: power 25 % caps, exposure 12
    assert decision.setting.power_pct == pytest.approx(25.0)
    assert decision.setting.exposure_ms == pytest.approx(12.0)
    # less light later: the exposure returns to its nominal value before the power drops
    back = pilot.after_set(photon_count_e=500.0)
    assert back.setting.exposure_ms == pytest.approx(10.0)
    assert back.setting.power_pct == pytest.approx(25.0 * 12.0 / 1.5 / 10.0)


def test_exposure_fixed_without_exposure_limits() -> None:
    pilot = controller(max_power_pct=25.0)
    decision = pilot.after_set(photon_count_e=10.0)
    assert decision.setting == LightSetting(25.0, 10.0)


def test_unreachable_target_is_flagged_at_the_maximum() -> None:
    pilot = controller(max_power_pct=30.0)
    first = pilot.after_set(photon_count_e=10.0)  # 1.5x to 30 %: at the cap, 15 e- < 48
    assert first.setting.power_pct == pytest.approx(30.0)
    assert not first.target_reachable
    assert "cannot be met at the maximum allowed light" in first.reason
    again = pilot.after_set(photon_count_e=15.0)
    assert not again.changed and not again.target_reachable
    impossible = AutopilotController(
        AutopilotSettings(target_error=0.005), MODEL, LightSetting(20.0, 10.0)
    ).after_set(photon_count_e=100.0)
    assert impossible.setting.power_pct == 100.0 and not impossible.target_reachable


def test_failed_trust_check_asks_for_more_light() -> None:
    trusted = controller().after_set(photon_count_e=55.0)
    assert not trusted.changed
    distrusted = controller(trust_margin=1.5).after_set(photon_count_e=55.0, trusted=False)
    assert distrusted.changed and distrusted.required_photon_count_e == pytest.approx(72.0)
    assert distrusted.reason.startswith("trust check failed")


def test_photon_margin_raises_the_required_count() -> None:
    decision = controller(photon_margin=1.25).after_set(photon_count_e=55.0)
    assert decision.required_photon_count_e == pytest.approx(60.0)
    assert decision.changed and "more light" in decision.reason


def test_no_photon_count_leaves_the_setting() -> None:
    decision = controller().after_set(photon_count_e=None)
    assert not decision.changed and decision.reason == "no photon count: unchanged"


def test_closed_loop_on_a_bleaching_sample_uses_less_light_and_stays_in_band() -> None:
    """Sample: photon count = brightness x dose, brightness bleaching with the dose given."""
    pilot = controller(dead_band=0.3, max_step=1.5, max_power_pct=100.0)
    brightness, fixed_brightness = 0.6, 0.6  # e- per %.ms
    bleach_per_dose = 2e-5
    pilot_dose = fixed_dose = 0.0
    counts = []
    for _ in range(200):
        count = brightness * pilot.setting.dose
        counts.append(count)
        pilot_dose += pilot.setting.dose
        brightness *= math.exp(-bleach_per_dose * pilot.setting.dose)
        pilot.after_set(photon_count_e=count)
        fixed_dose += 200.0
        fixed_brightness *= math.exp(-bleach_per_dose * 200.0)
    settled = counts[20:]
    in_target = sum(c >= 48.0 * 0.97 for c in settled) / len(settled)
    assert in_target >= 0.95
    assert pilot_dose < 0.7 * fixed_dose
    assert brightness > fixed_brightness
    assert max(c for c in settled) <= 48.0 * 1.3 * 1.05


def test_run_autopilot_asks_for_more_light_when_the_live_trust_check_fails() -> None:
    import numpy as np

    from acquisition.autopilot import RunAutopilot
    from hardware.sequencing import ChannelSpec, SequencePlan

    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20.0, exposure_ms=10.0),))
    settings = AutopilotSettings(target_error=0.020, error_model=MODEL, photon_margin=1.0)
    y, x = np.mgrid[:32, :32]
    structure = (1.0 + np.cos(2 * np.pi * x / 16.0)) * (1.0 + np.cos(2 * np.pi * y / 16.0))
    probe = RunAutopilot([settings], plan, np.zeros((32, 32), np.float32), 1.0)
    scale = 55.0 / probe.photon_count_e(np.stack([structure] * 9))
    frames = np.stack([structure * scale] * 9).astype(np.float32)  # 55 e- photon count

    def decide(trust: dict[int, tuple[float, float]] | None):
        pilot = RunAutopilot([settings], plan, np.zeros((32, 32), np.float32), 1.0)
        _, ((_, count, decision),) = pilot.after_time_point([(0, frames)], trust)
        return count, decision

    count, trusted = decide(None)
    assert count == pytest.approx(55.0) and not trusted.changed  # 55 e- within [48, 62.4]
    _, consistent = decide({0: (1.4, 0.98)})
    assert not consistent.changed
    for failing in ({0: (9.0, 0.98)}, {0: (1.4, 0.7)}):
        _, distrusted = decide(failing)
        assert distrusted.changed and distrusted.reason.startswith("trust check failed")
        assert distrusted.required_photon_count_e == pytest.approx(72.0)
