"""The window's trust view on its display stream: the trend per channel, the trust-map overlay
on the SR view, and the warning when `--model auto` made SR with Wiener SIM instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from pyqtgraph.Qt import QtCore
from pytestqt.qtbot import QtBot

from acquisition import run_file
from acquisition.display_outlet import DisplayOutlet
from acquisition.transport import DisplayPublisher
from acquisition.wire import Kind, Message, header_for
from gui.host_link import HostLink
from gui.main_window import LiveWindow
from gui.trust_panel import map_rect_sr, trust_rgba

REASON = ("background fraction 0.5111 outside the trained [0, 0.25]; photon count 14.29 e- "
          "above 12 e-")


@pytest.fixture
def attached(qtbot: QtBot, tmp_path: Path) -> Iterator[tuple[LiveWindow, DisplayOutlet]]:
    endpoint = f"ipc://{tmp_path}/display"
    publisher = DisplayPublisher(zmq.Context.instance(), endpoint)
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    window = LiveWindow(HostLink(None, endpoint), settings)
    window.close_without_asking = True
    qtbot.wait(300)  # the subscribers connect
    outlet = DisplayOutlet(publisher, max_hz=1000.0)
    try:
        yield window, outlet
    finally:
        window.close()
        publisher.close()


def sr_result(time_point: int, model: str, flags: list[str],
              chi2_map: np.ndarray | None = None, channel: int = 0) -> Message:
    """A worker's SR result as the acquisition process receives it (128 px SR of 64 px raw)."""
    sr = run_file.sr_to_stored(np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128))
    info: dict[str, object] = {"sr_scale": run_file.SR_SCALE, "photon_count_e": 14.3,
                               "model_name": model, "flags": flags}
    if chi2_map is not None:
        info["trust"] = {"raw_chi2": float(chi2_map.mean()), "resolution_scaled_pearson": 0.95,
                         "beyond_support_fraction": 0.001, "raw_chi2_map": chi2_map.tolist()}
    return Message(header_for(Kind.SR_RESULT, "r", time_point, sr, time_point=time_point,
                              channel=channel, info=info), sr)


def test_wiener_fallback_shows_a_warning_with_its_reason(attached: tuple[LiveWindow,
                                                                          DisplayOutlet],
                                                         qtbot: QtBot) -> None:
    window, outlet = attached
    outlet.offer_result(sr_result(0, "dfcan-sim", ["auto:dfcan-sim: inside the training domain"]))
    qtbot.waitUntil(lambda: window.sr_message is not None, timeout=5_000)
    assert window.fallback_warning.isHidden()
    outlet.offer_result(sr_result(1, "wiener", [f"auto:wiener: {REASON}"]))
    qtbot.waitUntil(lambda: not window.fallback_warning.isHidden(), timeout=5_000)
    text = window.fallback_warning.text()
    assert "Wiener SIM instead of the network" in text and REASON in text
    log = window.events.log.toPlainText()
    assert "SR by Wiener SIM instead of the network from time point 1" in log and REASON in log
    outlet.offer_result(sr_result(2, "dfcan-sim", ["auto:dfcan-sim: inside the training domain"]))
    qtbot.waitUntil(lambda: window.fallback_warning.isHidden(), timeout=5_000)
    assert "SR by dfcan-sim again from time point 2" in window.events.log.toPlainText()


def test_trust_map_overlay_toggles_and_shows_the_map_values(
        attached: tuple[LiveWindow, DisplayOutlet], qtbot: QtBot) -> None:
    window, outlet = attached
    raw = np.full((64, 64), 500, np.uint16)
    outlet.publisher.publish("raw", header_for(Kind.RAW_SET, "r", 0, raw, time_point=0), raw)
    chi2 = np.linspace(0.8, 9.0, 64, dtype=np.float32).reshape(8, 8)  # 64 raw px / 8 px blocks
    outlet.offer_result(sr_result(0, "wiener", [], chi2))
    qtbot.waitUntil(lambda: window.qc_message is not None and window.sr_message is not None
                    and window.raw_panel.image is not None, timeout=5_000)
    assert not window.trust_dock.isHidden()  # shown with the first trust record
    (point,) = window.trust_panel.history[0]
    assert point.time_point == 0 and point.raw_chi2 == pytest.approx(float(chi2.mean()))
    assert not window.sr_panel.map_item.isVisible()  # the overlay is off until asked for
    window.actions["trust_map"].trigger()  # View > Trust map (Ctrl+T)
    assert window.trust_panel.overlay_box.isChecked()
    panel = window.sr_panel
    assert panel.map_item.isVisible() and panel.map_legend.isVisible()
    np.testing.assert_array_equal(panel.map_values, chi2)
    np.testing.assert_array_equal(panel.map_item.image, trust_rgba(chi2, 5.0))
    assert map_rect_sr((8, 8), (64, 64), (128, 128)) == (0.0, 0.0, 128.0, 128.0)
    rect = panel.map_rect
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (0.0, 0.0, 128.0, 128.0)
    # block (row 6, col 3) lies at SR pixels 96-111 (rows) and 48-63 (columns)
    assert panel.map_value(55.0, 100.0) == pytest.approx(float(chi2[6, 3]))
    assert f"raw χ² {chi2[6, 3]:.3g}" in panel.cursor_text(55.0, 100.0)
    rgba = panel.map_item.image
    assert rgba[0, 0, 3] == 0 and rgba[-1, -1, 3] > 150  # clear at chi2 <= 1, red beyond 5
    legend = panel.map_legend.textItem.toPlainText()
    assert "raw χ²" in legend and "≥ 5" in legend and "≤ 1 clear" in legend
    window.trust_panel.overlay_box.setChecked(False)
    assert not panel.map_item.isVisible() and not panel.map_legend.isVisible()
    assert "raw χ²" not in panel.cursor_text(55.0, 100.0)


def test_central_square_of_a_large_field() -> None:
    """A 512 px raw field is checked on its central 128 px: the map covers SR px 384-640."""
    assert map_rect_sr((16, 16), (512, 512), (1024, 1024)) == (384.0, 384.0, 256.0, 256.0)
    assert map_rect_sr((16, 16), None, (1024, 1024)) == (384.0, 384.0, 256.0, 256.0)


def test_trend_limits_come_from_the_channel_autopilot(attached: tuple[LiveWindow,
                                                                       DisplayOutlet],
                                                      qtbot: QtBot) -> None:
    window, outlet = attached
    window.editor.set_autopilot(0, {"target_error": 2.0, "max_raw_chi2": 3.0,
                                    "min_resolution_scaled_pearson": 0.95})
    for t, level in ((0, 1.1), (10, 4.0)):
        outlet.offer_result(sr_result(t, "wiener", [], np.full((8, 8), level, np.float32)))
    qtbot.waitUntil(lambda: len(window.trust_panel.history.get(0, ())) == 2, timeout=5_000)
    panel = window.trust_panel
    assert panel.chi2_limit.value() == 3.0 and panel.pearson_limit.value() == 0.95
    times, values = panel.curves[0][0].getData()
    assert list(times) == [0, 10] and list(values) == pytest.approx([1.1, 4.0])
    assert panel.newest.text().endswith("FAILS")  # 4.0 > 3.0
    assert window.status.values["trust"].text().endswith(
        "t = 10: raw χ² 4 (<= 3), Pearson 0.950 (>= 0.95) - FAILS")
