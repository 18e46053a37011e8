"""Viewer basics and honest status, without an acquisition process: scale bar and µm axes,
cursor readout, saturation from the camera's bit depth, SR spectrum, IMC channels stretched only
when they carry signal, the SR lag warning, ROI drawing, channel names in nm, live settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pyqtgraph.Qt import QtCore
from pytestqt.qtbot import QtBot

from gui.composite_panel import CompositePanel
from gui.contrast import composite_levels, log_power_spectrum, nice_length
from gui.host_link import HostLink
from gui.image_panel import ImagePanel
from gui.main_window import SR_LAG_WARN_S, LiveWindow
from gui.status_panel import sr_lag_s


def test_nice_length_picks_1_2_5_steps() -> None:
    assert nice_length(12.3) == 2.0  # a fifth of 12.3 µm is 2.46: 2 µm
    assert nice_length(41.0) == 5.0
    assert nice_length(0.7) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="positive"):
        nice_length(0.0)


def test_spectrum_of_a_grating_peaks_at_its_frequency() -> None:
    _y, x = np.mgrid[0:64, 0:64]
    grating = 100.0 + 50.0 * np.cos(2 * np.pi * x / 8.0)  # 8 px period along x
    power = log_power_spectrum(grating)
    assert power.shape == (64, 64)
    row, col = np.unravel_index(int(np.argmax(power)), power.shape)
    assert row == 32 and abs(col - 32) == 64 // 8


def test_empty_imc_channel_is_not_stretched() -> None:
    rng = np.random.default_rng(0)
    bright = rng.random((2, 64, 64)).astype(np.float32)
    empty = (0.011 * rng.random((1, 64, 64))).astype(np.float32)  # max 0.011: no lysosomes
    levels, carries = composite_levels(np.concatenate([bright, empty]))
    assert carries == [True, True, False]
    brightest = max(levels[0][1], levels[1][1])
    assert levels[2][1] == pytest.approx(brightest)  # on the bright channels' scale
    assert levels[0][1] < 1.0 and levels[2][1] > 0.9


def test_composite_panel_marks_and_dims_an_empty_channel(qtbot: QtBot) -> None:
    panel = CompositePanel(channel_names=["microtubules", "ER", "lysosomes"])
    qtbot.addWidget(panel)
    rng = np.random.default_rng(1)
    data = rng.random((3, 32, 32)).astype(np.float32)
    data[2] *= 0.011
    panel.set_channels(data)
    assert panel.visible[2].text() == "lysosomes (no signal)"
    assert panel.channel_names == ("microtubules", "ER", "lysosomes")
    rgb = panel.rgb()
    assert rgb is not None
    only_cyan = CompositePanel(channel_names=["a", "b", "c"])
    qtbot.addWidget(only_cyan)
    only_cyan.visible[0].setChecked(False)
    only_cyan.visible[1].setChecked(False)
    only_cyan.set_channels(data)
    cyan = only_cyan.rgb()
    assert cyan is not None and float(cyan.mean()) < 5.0  # not a cyan frame of noise


def test_sr_lag_from_latency_and_from_time_points_behind() -> None:
    assert sr_lag_s({"state": "live", "latency_ms": 5_000.0}, 9) == pytest.approx(5.0)
    assert sr_lag_s({"state": "live", "latency_ms": float("nan")}, 9) == 0.0
    # 900 time points of 9 frames at 90 frames/s behind: 90 s
    recording = {"state": "recording", "latency_ms": 2_000.0, "queue_depth": 900,
                 "camera_fps": 90.0}
    assert sr_lag_s(recording, 9) == pytest.approx(90.0)


def test_cursor_readout_scale_bar_and_bit_depth_saturation(qtbot: QtBot) -> None:
    panel = ImagePanel("Raw", "grey", saturation_value=65_535.0, value_unit="ADU")
    qtbot.addWidget(panel)
    panel.resize(400, 400)
    image = np.full((32, 32), 300, np.uint16)
    image[1, 2] = 1234
    image[10:12, 10:12] = 4095  # clipped by a 12-bit camera
    panel.set_pixel_scale(2.0)  # raw drawn on a 2x SR grid
    panel.set_image(image)
    assert panel.saturated_px == 0  # 4095 is far from 16-bit clipping
    panel.set_saturation_value(4095.0)  # the camera reports bit_depth 12
    panel.set_image(image)
    assert panel.saturated_px == 4
    rgb = panel.rendered_rgb()
    assert rgb is not None and tuple(rgb[10, 10]) == (255, 0, 0)
    panel.set_um_per_unit(0.05)  # 100 nm camera pixels drawn 2 units wide
    text = panel.cursor_text(5.0, 3.0)  # view units -> pixel (row 1, col 2)
    assert text == "x 0.25 µm  y 0.15 µm  [1, 2]  value 1234 ADU"
    assert panel.cursor_text(-1.0, 3.0) == ""
    assert panel.scale_bar is not None
    assert panel.scale_bar.text.textItem.toPlainText() == "0.5 µm"  # a fifth of 3.2 µm
    assert panel.axes["bottom"].scale == pytest.approx(0.05)


def test_sr_spectrum_view(qtbot: QtBot) -> None:
    panel = ImagePanel("SR", "hot", saturation_value=1.0, spectrum=True)
    qtbot.addWidget(panel)
    y, _x = np.mgrid[0:64, 0:64]
    panel.set_image((0.5 + 0.4 * np.cos(2 * np.pi * y / 16.0)).astype(np.float32))
    panel.fft.setChecked(True)
    assert panel.fft_item.isVisible() and not panel.item.isVisible()
    shown = panel.fft_item.image
    assert shown is not None and shown.shape == (64, 64)
    row, col = np.unravel_index(int(np.argmax(shown)), shown.shape)
    assert col == 32 and abs(row - 32) == 4
    panel.fft.setChecked(False)
    assert panel.item.isVisible()


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path) -> Iterator[LiveWindow]:
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    win = LiveWindow(HostLink(None, f"ipc://{tmp_path}/display"), settings)
    win.close_without_asking = True
    win.resize(1280, 720)
    yield win
    win.close()


def test_menu_shortcuts(window: LiveWindow) -> None:
    shortcuts = {name: act.shortcut().toString() for name, act in window.actions.items()}
    assert shortcuts["quit"] == "Ctrl+Q"
    assert shortcuts["live"] == "Ctrl+L"
    assert shortcuts["record"] == "Ctrl+R"
    assert shortcuts["snapshot"] == "Ctrl+Shift+S"
    assert shortcuts["fit"] == "Ctrl+0"
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles == ["&File", "&Acquisition", "&View"]


def test_display_channels_named_by_laser_line(window: LiveWindow) -> None:
    editor = window.editor
    editor.lasers[0].setCurrentText("488 nm")
    editor.enabled[1].setChecked(True)
    editor.lasers[1].setCurrentText("640 nm")
    names = [window.display_channel.itemText(i) for i in range(window.display_channel.count())]
    assert names == ["488 nm", "640 nm"]
    window.display_channel.setCurrentIndex(1)
    assert window._display_channel_index() == 1


def test_sr_lag_warning_offers_the_choices(window: LiveWindow) -> None:
    window.show()
    window.editor.imc.setChecked(True)
    status = {"state": "live", "latency_ms": 1000.0 * (SR_LAG_WARN_S + 2)}
    window._show_lag(status)
    assert window.lag_box.isVisible()
    assert "SR is 5 s behind the camera" in window.lag_warning.text()
    window.imc_off_button.click()
    assert not window.editor.imc.isChecked()
    window.skip_sr_button.click()
    assert window.editor.reconstruction.currentText() == "none"
    window._show_lag({"state": "live", "latency_ms": 200.0})
    assert not window.lag_box.isVisible()


def test_roi_drawn_on_the_raw_view_becomes_the_protocol_roi(window: LiveWindow) -> None:
    window.raw_panel.set_pixel_scale(2.0)
    window.raw_panel.set_image(np.full((128, 128), 200, np.uint16))
    window.roi_button.setChecked(True)
    roi = window.roi_item
    assert roi is not None
    roi.setPos((20.0, 40.0))  # view units: 2 per camera pixel
    roi.setSize((100.0, 64.0))
    window.roi_button.setChecked(False)
    editor = window.editor
    assert (editor.roi_x.value(), editor.roi_y.value()) == (10, 20)
    assert (editor.roi_width.value(), editor.roi_height.value()) == (48, 32)
    assert editor.protocol_data()["roi"] == {"x": 10, "y": 20, "width": 48, "height": 32}


def test_pipeline_settings_restart_live_view(window: LiveWindow, qtbot: QtBot) -> None:
    sent: list[str] = []
    window.start_live = lambda: sent.append("live") or True  # type: ignore[method-assign]
    window.live_button.setChecked(True)
    window.editor.imc.setChecked(True)
    assert window.composite.isVisibleTo(window)
    assert "IMC-SR starting" in window.composite.placeholder.text()
    qtbot.waitUntil(lambda: sent == ["live"], timeout=2_000)  # one restart for the change
    assert any("live view restarts" in line
               for line in window.events.log.toPlainText().splitlines())
    window.editor.set_reconstruction("wiener")
    qtbot.waitUntil(lambda: sent == ["live", "live"], timeout=2_000)


def test_protocol_toml_keeps_nested_tables_and_drops_unset_fields(tmp_path: Path) -> None:
    import tomllib

    from acquisition.protocol import Protocol
    from gui.protocol_editor import protocol_to_toml

    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "wiener",
                      "autopilot": {"target_error": 0.05, "max_power_pct": 60.0}},
                     {"laser_nm": 560, "reconstruction": "wiener"}],
        "output": str(tmp_path / "run.h5")})
    text = protocol_to_toml(protocol.model_dump(mode="json"))
    assert "None" not in text
    again = Protocol.parse_checked(tomllib.loads(text), source="round trip")
    autopilot = again.channels[0].autopilot
    assert autopilot is not None and autopilot.target_error == pytest.approx(0.05)
    assert autopilot.max_power_pct == pytest.approx(60.0)
    assert again.channels[1].autopilot is None
