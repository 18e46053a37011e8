"""The window's autopilot display: the status line and the trend plots, from the status the
acquisition process sends (RunAutopilot.status of a real controller)."""

from __future__ import annotations

import numpy as np
import pytest

from acquisition.autopilot import AutopilotSettings, RunAutopilot
from gui.autopilot_panel import AutopilotPanel, autopilot_text
from hardware.sequencing import ChannelSpec, SequencePlan


def run_autopilot_status(counts: list[float], max_power_pct: float = 100.0) -> dict:
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=561, power_pct=40.0, exposure_ms=10.0),))
    settings = AutopilotSettings(target_error=2.0, max_power_pct=max_power_pct)
    pilot = RunAutopilot([settings], plan, np.zeros((32, 32), np.float32), 1.0)
    for count in counts:
        pilot.controllers[0].after_set(count)
        pilot.history[0].append((count, pilot.controllers[0].setting.power_pct, 10.0))
    return pilot.status()


def test_status_line_names_setting_count_and_need() -> None:
    status = run_autopilot_status([120.0, 80.0])
    text = autopilot_text(status)
    assert text.startswith("561 nm ") and "e- (needs " in text
    assert "TARGET NOT MET" not in text
    assert autopilot_text({}) == "off"


def test_unreachable_target_is_flagged_in_the_status_line() -> None:
    status = run_autopilot_status([1.0], max_power_pct=41.0)
    assert status["561"]["target_reachable"] is False
    assert autopilot_text(status).endswith("TARGET NOT MET AT MAX LIGHT")


def test_trend_plots_follow_the_history(qtbot) -> None:
    panel = AutopilotPanel()
    qtbot.addWidget(panel)
    status = run_autopilot_status([120.0, 80.0, 53.0])
    panel.show_status(status)
    count_curve, needed_curve, power_curve = panel.curves["561"]
    _, y = count_curve.getData()
    assert list(y) == pytest.approx([120.0, 80.0, 53.0])
    assert list(power_curve.getData()[1]) == pytest.approx(status["561"]["power_history_pct"])
    assert needed_curve.getData()[1][0] == pytest.approx(status["561"]["required_photon_count_e"])
