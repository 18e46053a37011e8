"""The live-session window: raw / wide-field, SR, IMC composite, pattern check, status, controls.

Images are drawn as they arrive: a QSocketNotifier per display topic wakes the window, which
takes the newest image without waiting. A slower QTimer ticks the link to the acquisition
process (replies, status). Nothing in the window ever waits on acquisition or inference.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from acquisition.live_pipeline import wide_field_uint16
from acquisition.protocol import ProtocolError
from acquisition.rate_meter import RateMeter
from acquisition.wire import Kind
from gui.composite_panel import CompositePanel
from gui.display_cost import DisplayCost, thread_cpu_s
from gui.host_link import HostLink
from gui.image_panel import ImagePanel, link_views
from gui.pattern_check import PatternCheck, PatternChecker
from gui.protocol_editor import DEFAULT_LINES_NM, ProtocolEditor
from gui.status_panel import EventPane, StatusPanel, format_status, free_disk_bytes

logger = logging.getLogger(__name__)

# control replies, status polls and pattern-check results; it also drains the display topics
# in case a notification was missed. Images do not wait for it: a 25 ms polling tick (40
# wake-ups/s) lost images of a 32-36/s stream whenever two arrived within one tick
CONTROL_PERIOD_MS = 100
STATUS_PERIOD_S = 0.25
PHOTON_PERIOD_S = 1.0  # the DFCAN photon count costs ~30 ms on a 512 x 512 frame
PLAN_DEBOUNCE_MS = 200
CLOSE_RECORDING_TIMEOUT_S = 120.0  # the acquisition process drains and closes the run file
RECORD_START_GRACE_S = 5.0  # status may still say 'live' this long after Record is pressed
ORIENTATION_COLOURS = ("#ff7b72", "#7ee787", "#79c0ff")
HISTORY_CHECKS = 200
RAW_SATURATION_ADU = 65_535  # 16-bit camera clipping
SR_SATURATION = 1.0  # top of the models' output range


class PatternPanel(QtWidgets.QWidget):
    """Raw power spectrum with the detected carrier peaks and the modulation per orientation."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(160, 160)
        self.label = self.graphics.addLabel("Pattern check", row=0, col=0, justify="left")
        self.view = self.graphics.addViewBox(row=1, col=0, lockAspect=True, invertY=True,
                                             enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.peaks = pg.ScatterPlotItem(size=16, pen=pg.mkPen("#00e5ff", width=2),
                                        brush=None, symbol="o")
        self.view.addItem(self.peaks)
        self.trend = self.graphics.addPlot(row=1, col=1, title="modulation depth")
        self.trend.setLabel("bottom", "check #")
        self.trend.getAxis("bottom").setTickSpacing(major=10, minor=5)
        self.trend.setYRange(0.0, 1.05)
        self.trend.showGrid(y=True, alpha=0.2)
        self.trend.addLegend(offset=(-5, -5))
        self.curves = [self.trend.plot(pen=pg.mkPen(colour, width=2), name=f"o{i + 1}")
                       for i, colour in enumerate(ORIENTATION_COLOURS)]
        self.history: list[list[float]] = [[] for _ in ORIENTATION_COLOURS]
        self.checks = 0
        self.text = QtWidgets.QLabel("waiting for a SIM raw set")
        self.text.setWordWrap(True)
        self.lut = np.ascontiguousarray(
            (pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=False)
             ).astype(np.uint8))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.text)
        self.result: PatternCheck | None = None

    def show_result(self, result: PatternCheck) -> None:
        """Draw a finished pattern check."""
        self.result = result
        power = result.log_power
        low, high = np.percentile(power, (50.0, 99.95))
        self.item.setImage(power, autoLevels=False, levels=(float(low), float(high)),
                           lut=self.lut)
        pens = [pg.mkPen(ORIENTATION_COLOURS[(i // 2) % len(ORIENTATION_COLOURS)], width=2)
                for i in range(len(result.peaks_xy_px))]
        self.peaks.setData([p[0] + 0.5 for p in result.peaks_xy_px],
                           [p[1] + 0.5 for p in result.peaks_xy_px], pen=pens)
        if result.error:
            self.text.setText(f"<span style='color:#f0c060'>{result.error}</span>")
            return
        self.checks += 1
        for curve, history, m in zip(self.curves, self.history, result.modulations,
                                     strict=False):
            history.append(m)
            del history[:-HISTORY_CHECKS]
            start = self.checks - len(history)
            curve.setData(np.arange(start, self.checks) + 1, np.asarray(history))
        parts = []
        for i, (m, period, angle) in enumerate(zip(result.modulations, result.periods_nm,
                                                   result.angles_deg, strict=True)):
            colour = "#7ee787" if m >= 0.5 else ("#f0c060" if m >= 0.25 else "#ff6b6b")
            name = ORIENTATION_COLOURS[i % len(ORIENTATION_COLOURS)]
            parts.append(f"<span style='color:{name}'>o{i + 1}</span>: "
                         f"<b style='color:{colour}'>m = {m:.2f}</b> "
                         f"{period:.0f} nm {angle:+.0f}°")
        self.text.setText(" &nbsp; ".join(parts))


class LiveWindow(QtWidgets.QMainWindow):
    """The microscopist's window onto a live session."""

    def __init__(self, link: HostLink, settings: QtCore.QSettings,
                 lines_nm: tuple[int, ...] = DEFAULT_LINES_NM,
                 control_period_ms: int = CONTROL_PERIOD_MS) -> None:
        super().__init__()
        self.link = link
        link.on_event = self._on_host_event
        self.settings = settings
        self.setWindowTitle("livesim — live SIM session")
        self.ticks = 0
        self.display_updates = 0  # new raw, SR or IMC images shown
        self.display_rate = RateMeter()  # new SR images/s (raw images/s: raw_rate)
        self.raw_rate = RateMeter()
        self.photon_count = float("nan")
        self.raw_message: Any = None
        self.set_message: Any = None  # the newest full raw set (pattern check, photon count)
        self.sr_message: Any = None
        self._last_status_s = 0.0
        self._last_photon_s = 0.0
        self._camera: dict[str, Any] = {}
        self._last_state = ""
        self._record_requested_s = 0.0
        self.close_without_asking = False  # screenshots, benchmarks and tests
        self.pattern_checker = PatternChecker()
        self.cost = DisplayCost()  # GUI-thread CPU per display stage (bench figures)
        self._views_linked = False
        self._raw_scale = 0.0

        self.raw_panel = ImagePanel("Raw", "grey", saturation_value=RAW_SATURATION_ADU)
        self.sr_panel = ImagePanel("Super-resolved", "hot", saturation_value=SR_SATURATION)
        self.composite = CompositePanel()
        self.pattern = PatternPanel()
        self.editor = ProtocolEditor(lines_nm)
        self.status = StatusPanel()
        self.events = EventPane()

        self.live_button = QtWidgets.QPushButton("▶ Live")
        self.live_button.setCheckable(True)
        self.record_button = QtWidgets.QPushButton("● Record")
        self.record_button.setCheckable(True)
        self.record_button.setObjectName("record")
        self.snapshot_button = QtWidgets.QPushButton("Snapshot")
        self.load_button = QtWidgets.QPushButton("Load…")
        self.save_button = QtWidgets.QPushButton("Save…")
        self.raw_source = QtWidgets.QComboBox()
        self.raw_source.addItems(["raw frame", "wide-field"])
        self.display_channel = QtWidgets.QSpinBox()
        self.display_channel.setRange(0, 3)
        self.display_channel.setPrefix("channel ")
        self.link_box = QtWidgets.QCheckBox("link views")
        self.link_box.setChecked(True)

        self._build_layout()
        self.live_button.clicked.connect(self._live_clicked)
        self.record_button.clicked.connect(self._record_clicked)
        self.snapshot_button.clicked.connect(lambda: self.snapshot())
        self.load_button.clicked.connect(self._load_clicked)
        self.save_button.clicked.connect(self._save_clicked)
        self.link_box.toggled.connect(self._link_toggled)
        self.raw_source.currentIndexChanged.connect(lambda _index: self._send_raw_view())
        self.editor.imc.toggled.connect(self._imc_toggled)
        self._plan_timer = QtCore.QTimer(self)
        self._plan_timer.setSingleShot(True)
        self._plan_timer.setInterval(PLAN_DEBOUNCE_MS)
        self._plan_timer.timeout.connect(self._apply_plan)
        self.editor.plan_changed.connect(self._plan_edited)
        self.display_channel.valueChanged.connect(lambda _value: self._plan_edited())
        self.restore_settings()
        self._link_toggled(self.link_box.isChecked())
        self._imc_toggled(self.editor.imc.isChecked())
        self._send_raw_view()

        self._notifiers: list[QtCore.QSocketNotifier] = []
        self._watch_display()
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(control_period_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def set_link(self, link: HostLink) -> None:
        """Watch another acquisition process or display stream (the current link is closed)."""
        self._unwatch_display()
        self.link.close()
        self.link = link
        link.on_event = self._on_host_event
        self._watch_display()

    def _watch_display(self) -> None:
        """One notifier per display topic: an image is drawn when it arrives, not on a tick."""
        for topic, subscriber in self.link.subscribers.items():
            notifier = QtCore.QSocketNotifier(subscriber.fd, QtCore.QSocketNotifier.Type.Read,
                                              self)
            notifier.activated.connect(lambda *_args, t=topic: self._display_ready(t))
            self._notifiers.append(notifier)

    def _unwatch_display(self) -> None:
        for notifier in self._notifiers:
            notifier.setEnabled(False)
            notifier.deleteLater()
        self._notifiers.clear()

    def _build_layout(self) -> None:
        views = QtWidgets.QGridLayout()
        views.setSpacing(6)
        views.addWidget(self.raw_panel, 0, 0)
        views.addWidget(self.sr_panel, 0, 1)
        bottom = QtWidgets.QHBoxLayout()
        bottom.setSpacing(6)
        bottom.addWidget(self.composite, 1)
        bottom.addWidget(self.pattern, 1)
        views.addLayout(bottom, 1, 0, 1, 2)
        views.setRowStretch(0, 3)
        views.setRowStretch(1, 2)
        centre = QtWidgets.QWidget()
        centre.setLayout(views)

        buttons = QtWidgets.QGridLayout()
        buttons.addWidget(self.live_button, 0, 0)
        buttons.addWidget(self.record_button, 0, 1)
        buttons.addWidget(self.snapshot_button, 1, 0)
        buttons.addWidget(self.link_box, 1, 1)
        buttons.addWidget(self.load_button, 2, 0)
        buttons.addWidget(self.save_button, 2, 1)
        buttons.addWidget(self.raw_source, 3, 0)
        buttons.addWidget(self.display_channel, 3, 1)
        side = QtWidgets.QVBoxLayout()
        side.addLayout(buttons)
        side.addWidget(self.editor)
        side.addWidget(self.status)
        side.addWidget(self.events, 1)
        panel = QtWidgets.QWidget()
        panel.setLayout(side)
        panel.setFixedWidth(380)

        root = QtWidgets.QHBoxLayout()
        root.setContentsMargins(6, 6, 6, 6)
        root.addWidget(panel)
        root.addWidget(centre, 1)
        holder = QtWidgets.QWidget()
        holder.setLayout(root)
        self.setCentralWidget(holder)

    # --- controls -----------------------------------------------------------------------------

    def _protocol_data(self) -> dict[str, Any] | None:
        try:
            return self.editor.protocol().model_dump(mode="json")
        except ProtocolError as exc:
            self.events.add("error", str(exc))
            return None

    def start_live(self) -> bool:
        """Ask the acquisition process for live view with the panel's protocol."""
        data = self._protocol_data()
        if data is None:
            self.live_button.setChecked(False)
            return False
        self.link.command("live", protocol=data, display_channel=self.display_channel.value())
        self.live_button.setChecked(True)
        return True

    def stop_live(self) -> None:
        """Stop live view."""
        self.link.command("stop_live")
        self.live_button.setChecked(False)

    def start_record(self) -> bool:
        """Record the panel's protocol to a new HDF5 run file."""
        data = self._protocol_data()
        if data is None:
            self.record_button.setChecked(False)
            return False
        self.link.command("record", protocol=data, display_channel=self.display_channel.value())
        self._record_requested_s = time.monotonic()
        self.record_button.setChecked(True)
        self.editor.set_editable_while_recording(True)
        self.events.add("info", f"recording to {data['output']}")
        return True

    def stop_record(self) -> None:
        """Stop the recording after the time point in progress."""
        self.link.command("stop_record")

    def _live_clicked(self, checked: bool) -> None:
        if checked:
            self.start_live()
        else:
            self.stop_live()

    def _record_clicked(self, checked: bool) -> None:
        if checked:
            self.start_record()
        else:
            self.stop_record()

    def _plan_edited(self) -> None:
        if self.live_button.isChecked():
            self._plan_timer.start()

    def _apply_plan(self) -> None:
        if self.live_button.isChecked() and not self.record_button.isChecked():
            self.start_live()

    def _link_toggled(self, linked: bool) -> None:
        """Link pan/zoom once both views have an image (an empty view would set the range)."""
        ready = self.sr_panel.image is not None and self.raw_panel.image is not None
        self._views_linked = linked and ready
        link_views([self.sr_panel, self.raw_panel], self._views_linked)
        composite_ready = self._views_linked and self.composite.channels is not None
        self.composite.view.setXLink(self.sr_panel.view if composite_ready else None)
        self.composite.view.setYLink(self.sr_panel.view if composite_ready else None)
        if self._views_linked:
            self.sr_panel.view.autoRange(padding=0.0)

    def _send_raw_view(self) -> None:
        """Tell the acquisition process what the raw view shows (it publishes only that)."""
        if self.link.control is not None:
            view = "frame" if self.raw_source.currentIndex() == 0 else "wide-field"
            self.link.command("display", raw_view=view)

    def _imc_toggled(self, on: bool) -> None:
        """The composite pane is shown only while IMC-SR is on (the pattern check widens)."""
        self.composite.set_message("waiting for IMC-SR results")
        self.composite.setVisible(on)

    def load_protocol(self, path: Path) -> bool:
        """Load a protocol TOML into the panel (errors go to the event pane)."""
        try:
            self.editor.load_toml(path)
        except ProtocolError as exc:
            self.events.add("error", str(exc))
            return False
        self.events.add("info", f"protocol loaded from {path}")
        return True

    def save_protocol(self, path: Path) -> bool:
        """Save the panel's protocol as TOML."""
        try:
            self.editor.save_toml(path)
        except (ProtocolError, OSError) as exc:
            self.events.add("error", f"could not save protocol to {path}: {exc}")
            return False
        self.events.add("info", f"protocol saved to {path}")
        return True

    def _load_clicked(self) -> None:
        name, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load protocol", "",
                                                        "Protocol (*.toml)")
        if name:
            self.load_protocol(Path(name))

    def _save_clicked(self) -> None:
        name, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save protocol", "protocol.toml",
                                                        "Protocol (*.toml)")
        if name:
            self.save_protocol(Path(name))

    def snapshot(self, folder: Path | None = None) -> list[Path]:
        """Save the SR, raw and composite views: data as TIFF, what is shown as PNG."""
        import tifffile

        folder = Path(folder or self.editor.folder.text()).expanduser()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        written: list[Path] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, panel in (("sr", self.sr_panel), ("raw", self.raw_panel)):
                if panel.image is None:
                    continue
                tif = folder / f"snapshot_{stamp}_{name}.tif"
                tifffile.imwrite(tif, panel.values())  # SR in [0, 1] float32, raw in ADU
                rgb = panel.rendered_rgb()
                png = folder / f"snapshot_{stamp}_{name}.png"
                if rgb is not None:
                    _save_png(png, rgb)
                    written.append(png)
                written.append(tif)
            composite = self.composite.rgb()
            if composite is not None:
                png = folder / f"snapshot_{stamp}_imc.png"
                _save_png(png, composite)
                written.append(png)
        except OSError as exc:
            self.events.add("error", f"snapshot failed: {exc}")
            return written
        self.events.add("info", f"snapshot: {len(written)} file(s) in {folder}")
        return written

    # --- the display loop ---------------------------------------------------------------------

    def _tick(self) -> None:
        """Control tick: replies and status, pattern-check results; drains missed images."""
        cost = self.cost
        tick_start = thread_cpu_s()
        self.ticks += 1
        self.link.tick()
        drained_s = 0.0
        for topic in self.link.subscribers:  # a safety net: notifications normally do this
            drained_s += self._display_ready(topic)
        result = self.pattern_checker.take()
        if result is not None:
            self.pattern.show_result(result)
        now = time.monotonic()
        if now - self._last_status_s >= STATUS_PERIOD_S:
            self._last_status_s = now
            self._show_status()
        cost.tick_s += thread_cpu_s() - tick_start - drained_s

    def _display_ready(self, topic: str) -> float:
        """Take the newest image of ``topic`` (if any) and show it; returns the CPU s spent."""
        cost = self.cost
        start = thread_cpu_s()
        message = self.link.subscribers[topic].newest()
        received = thread_cpu_s()
        cost.receive_s += received - start
        if message is not None:
            self._show_message(topic, message)
        spent = thread_cpu_s() - start
        cost.tick_s += spent
        return spent

    def _show_message(self, topic: str, message: Any) -> None:
        cost = self.cost
        start = thread_cpu_s()
        if topic == "raw":
            self._show_raw(message)
            self.raw_rate.add(1)
            cost.raw_set_s += thread_cpu_s() - start
        elif topic == "set":
            self._take_set(message)
            cost.full_set_s += thread_cpu_s() - start
            return
        elif topic == "sr":
            self.sr_message = message
            scale = (float(message.header.info.get("sr_scale", 1.0))
                     if message.array.dtype == np.uint16 else 1.0)
            self.sr_panel.set_image(message.array, f"t = {message.header.time_point}",
                                    value_scale=scale)
            self._match_raw_scale()
            self.display_rate.add(1)
            cost.sr_set_s += thread_cpu_s() - start
        elif topic == "imc":
            if not (message.array.ndim == 3 and message.array.shape[0] == 3):
                return
            first = self.composite.channels is None
            self.composite.set_channels(message.array, f"t = {message.header.time_point}")
            if first and self.link_box.isChecked():
                self._link_toggled(True)
        else:
            return
        self.display_updates += 1

    def _show_raw(self, message: Any) -> None:
        """Draw a 'raw' image: one frame or the wide-field mean (a full set from an older
        publisher is reduced here and also serves as the pattern check's set)."""
        self.raw_message = message
        frames = message.array
        wide = message.header.kind is Kind.WIDEFIELD
        if frames.ndim == 3:
            wide = self.raw_source.currentIndex() == 1
            image = wide_field_uint16(frames) if wide else frames[0]
            self._take_set(message)
        else:
            image = frames
        laser = f"  {message.header.laser_nm} nm" if message.header.laser_nm > 0 else ""
        view = "  wide-field" if wide else ""
        self.raw_panel.set_image(image, f"t = {message.header.time_point}{laser}{view}")

    def _take_set(self, message: Any) -> None:
        """A full raw set: photon count (once a second) and the pattern check (own thread)."""
        frames = message.array
        self.set_message = message
        camera = self._camera
        now = time.monotonic()
        if camera and now - self._last_photon_s >= PHOTON_PERIOD_S:
            self._last_photon_s = now
            self.photon_count = self._photon_count(frames, camera)
        if camera and frames.ndim == 3 and frames.shape[0] >= 9:
            self.pattern_checker.offer(frames, float(camera["pixel_size_nm"]),
                                       float(camera["offset_adu"]))

    @staticmethod
    def _photon_count(frames: np.ndarray, camera: dict[str, Any]) -> float:
        from calibration.photon_count import average_photon_count

        image = frames[0] if frames.ndim == 3 else frames
        return float(average_photon_count(image, float(camera["offset_adu"]),
                                          float(camera["photons_per_count"])))

    def _match_raw_scale(self) -> None:
        """Draw raw pixels at the SR grid's scale so linked views show the same field."""
        raw, sr = self.raw_panel.image, self.sr_panel.image
        if raw is None or sr is None or raw.shape[0] == 0:
            return
        scale = sr.shape[0] / raw.shape[0]
        if scale != self._raw_scale:
            self._raw_scale = scale
            self.raw_panel.set_pixel_scale(scale)
            self.raw_panel.view.autoRange(padding=0.0)
            self._views_linked = False
        if self.link_box.isChecked() and not self._views_linked:
            self._link_toggled(True)

    def _show_status(self) -> None:
        status = self.link.state.status
        self._camera = status.get("camera", self._camera) or {}
        free = status.get("free_disk_bytes")
        if free is None:
            free = free_disk_bytes(Path(self.editor.folder.text()))
        if self.link.control is None:
            status = {**status, "state": "watching (read-only)"}
        if not self.link.state.alive:
            status = {**status, "state": f"acquisition process exited "
                                         f"({self.link.state.exit_code})"}
        drawn_per_s = max(self.display_rate.rate_per_s(), self.raw_rate.rate_per_s())
        self.status.show_values(format_status(status, self.photon_count, drawn_per_s, free))
        names = status.get("imc_channel_names")
        if isinstance(names, list):
            self.composite.set_channel_names([str(n) for n in names])
        state = str(status.get("state", ""))
        recording = state in ("recording", "starting")
        if recording:
            self._record_requested_s = 0.0
            self.record_button.setChecked(True)
        elif self.record_button.isChecked() and not status.get("busy") and (
                time.monotonic() - self._record_requested_s > RECORD_START_GRACE_S):
            self.record_button.setChecked(False)  # finished, stopped or failed
            self.editor.set_editable_while_recording(False)
        self._last_state = state

    def _on_host_event(self, level: str, text: str) -> None:
        self.events.add(level, text)

    # --- settings -----------------------------------------------------------------------------

    def save_settings(self) -> None:
        """Persist protocol, view settings and geometry (QSettings)."""
        s = self.settings
        s.setValue("protocol", json.dumps(self.editor.protocol_data(Path("unused.h5"))))
        s.setValue("views/raw", json.dumps(self.raw_panel.settings()))
        s.setValue("views/sr", json.dumps(self.sr_panel.settings()))
        s.setValue("views/link", self.link_box.isChecked())
        s.setValue("views/raw_source", self.raw_source.currentIndex())
        s.setValue("geometry", self.saveGeometry())
        s.sync()

    def restore_settings(self) -> None:
        """Restore what :meth:`save_settings` stored; bad entries are reported, not fatal."""
        s = self.settings
        try:
            text = s.value("protocol")
            if text:
                data = json.loads(str(text))
                data.pop("output", None)
                self.editor.set_protocol(data)
            for key, panel in (("views/raw", self.raw_panel), ("views/sr", self.sr_panel)):
                text = s.value(key)
                if text:
                    panel.apply_settings(json.loads(str(text)))
            if s.contains("views/link"):
                self.link_box.setChecked(str(s.value("views/link")).lower() in ("true", "1"))
            if s.contains("views/raw_source"):
                self.raw_source.setCurrentIndex(int(str(s.value("views/raw_source"))))
            geometry = s.value("geometry")
            if geometry is not None:
                self.restoreGeometry(geometry)
        except (ValueError, KeyError, TypeError, ProtocolError) as exc:
            self.events.add("warning", f"stored settings ignored: {exc}")

    @property
    def recording(self) -> bool:
        """True while the acquisition process records (or starts to)."""
        return self._last_state in ("recording", "starting")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        """Save settings and stop the acquisition process (a recording is finished first)."""
        if self.recording and self.isVisible() and not self.close_without_asking:
            answer = QtWidgets.QMessageBox.question(
                self, "Recording in progress",
                "A recording is running. Stop it after the current time point, close the run "
                "file and quit?")
            if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.timer.stop()
        self._unwatch_display()
        self.save_settings()
        self.link.close(timeout_s=CLOSE_RECORDING_TIMEOUT_S if self.recording else 15.0)
        super().closeEvent(event)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    """Write a (Y, X, 3) uint8 image as PNG through Qt."""
    from pyqtgraph.Qt import QtGui

    data = np.ascontiguousarray(rgb)
    height, width = data.shape[:2]
    image = QtGui.QImage(data.data, width, height, 3 * width, QtGui.QImage.Format.Format_RGB888)
    if not image.save(str(path)):
        raise OSError(f"Qt could not write {path}")
