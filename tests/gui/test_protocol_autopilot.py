"""The protocol form's per-channel autopilot: on/off and target, a loaded protocol's autopilot
table kept as it was, and no live-view restart from either box."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from acquisition.autopilot import AutopilotSettings
from acquisition.protocol import Protocol, ProtocolError
from gui.protocol_editor import ProtocolEditor

LOADED = """
output = "run.h5"
[[channels]]
laser_nm = 488
power_pct = 40.0
exposure_ms = 10.0
autopilot = { target_error = 1.37, min_power_pct = 2.5, max_power_pct = 60.0, \
min_exposure_ms = 5.0, max_exposure_ms = 30.0, max_step = 1.8, dead_band = 0.4, \
trust_margin = 2.0, max_raw_chi2 = 3.5, error_model = { photon_count_e = [10.0, 100.0, 1000.0], \
error = [4.0, 2.0, 1.2] } }
[[channels]]
laser_nm = 560
power_pct = 20.0
"""


def test_toggle_puts_the_autopilot_and_its_target_in_the_protocol(qtbot: QtBot,
                                                                   tmp_path: Path) -> None:
    editor = ProtocolEditor((488, 560))
    qtbot.addWidget(editor)
    assert editor.protocol(tmp_path / "a.h5").channels[0].autopilot is None  # off by default
    assert not editor.autopilot_targets[0].isEnabled()
    editor.autopilots[0].setChecked(True)
    assert editor.autopilot_targets[0].isEnabled()
    editor.autopilot_targets[0].setValue(1.6)
    protocol = editor.protocol(tmp_path / "b.h5")
    autopilot = protocol.channels[0].autopilot
    assert autopilot is not None
    assert autopilot == AutopilotSettings(target_error=1.6)  # the rest: the model's defaults
    assert protocol.model_dump(mode="json")["channels"][0]["autopilot"]["target_error"] == 1.6
    editor.autopilots[0].setChecked(False)
    assert editor.protocol(tmp_path / "c.h5").channels[0].autopilot is None


def test_loaded_autopilot_limits_round_trip_unchanged(qtbot: QtBot, tmp_path: Path) -> None:
    source = tmp_path / "in.toml"
    source.write_text(LOADED)
    expected = Protocol.model_validate(tomllib.loads(LOADED)).channels[0].autopilot
    assert expected is not None and expected.max_power_pct == 60.0
    editor = ProtocolEditor((488, 560))
    qtbot.addWidget(editor)
    editor.load_toml(source)
    assert editor.autopilots[0].isChecked() and not editor.autopilots[1].isChecked()
    assert editor.autopilot_targets[0].value() == pytest.approx(1.37)
    editor.powers[0].setValue(30.0)  # other edits leave the autopilot table alone
    protocol = editor.protocol(tmp_path / "b.h5")
    assert protocol.channels[0].autopilot == expected
    assert protocol.channels[1].autopilot is None
    # saved and loaded again: the same table
    saved = tmp_path / "out.toml"
    editor.save_toml(saved)
    again = ProtocolEditor((488, 560))
    qtbot.addWidget(again)
    again.load_toml(saved)
    assert again.protocol(tmp_path / "c.h5").channels[0].autopilot == expected
    # only the target follows the box
    again.autopilot_targets[0].setValue(2.5)
    changed = again.protocol(tmp_path / "d.h5").channels[0].autopilot
    assert changed == expected.model_copy(update={"target_error": 2.5})


def test_autopilot_boxes_never_restart_live_view(qtbot: QtBot) -> None:
    """The autopilot steers recordings only: its boxes emit no plan or pipeline change (the
    window restarts or re-plans live view on those)."""
    editor = ProtocolEditor((488, 560))
    qtbot.addWidget(editor)
    emitted: list[str] = []
    editor.plan_changed.connect(lambda: emitted.append("plan"))
    editor.pipeline_changed.connect(lambda: emitted.append("pipeline"))
    editor.autopilots[0].setChecked(True)
    editor.autopilot_targets[0].setValue(3.0)
    editor.set_autopilot(0, {"target_error": 1.2, "max_power_pct": 50.0})
    editor.autopilots[0].setChecked(False)
    assert emitted == []


def test_autopilot_that_is_not_a_table_is_named(qtbot: QtBot) -> None:
    editor = ProtocolEditor((488, 560))
    qtbot.addWidget(editor)
    with pytest.raises(ProtocolError, match=r"channels\.0\.autopilot"):
        editor.set_protocol({"channels": [{"laser_nm": 488, "autopilot": 2.0}]})


def test_form_offers_auto_reconstruction(qtbot: QtBot, tmp_path: Path) -> None:
    """`--model auto` (network or Wiener SIM per set, docs/trust.md) from the form."""
    editor = ProtocolEditor((488, 560))
    qtbot.addWidget(editor)
    assert editor.reconstruction.currentText() == "auto"  # the form's default, as the protocol's
    assert editor.protocol(tmp_path / "d.h5").channels[0].reconstruction == "auto"
    editor.set_protocol({"channels": [{"laser_nm": 488, "reconstruction": "wiener"}]})
    editor.set_protocol({"channels": [{"laser_nm": 488}]})  # none named: the default
    assert editor.reconstruction.currentText() == "auto"
    editor.set_reconstruction("wiener")
    editor.set_reconstruction("default")
    assert editor.reconstruction.currentText() == "auto"
    editor.mode.setCurrentText("WF")
    editor.set_reconstruction("auto")
    assert editor.mode.currentText() == "SIM"  # auto reconstructs SIM sets
    assert editor.protocol(tmp_path / "a.h5").channels[0].reconstruction == "auto"
