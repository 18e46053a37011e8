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
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from acquisition.display_outlet import wide_field_uint16
from acquisition.protocol import ProtocolError
from acquisition.rate_meter import RateMeter
from acquisition.wire import Kind
from gui.autopilot_panel import AutopilotPanel
from gui.composite_panel import CompositePanel
from gui.display_stages import stage
from gui.host_link import HostLink
from gui.image_panel import ImagePanel, link_views
from gui.pattern_check import PatternCheck, PatternChecker
from gui.protocol_editor import DEFAULT_LINES_NM, ProtocolEditor
from gui.status_panel import (
    RECORDING_STATES,
    EventPane,
    StatusPanel,
    format_status,
    free_disk_bytes,
    sr_lag_s,
)
from gui.trust_panel import (
    TrustLimits,
    TrustPanel,
    fallback_reason,
    map_rect_sr,
    trust_rgba,
)

logger = logging.getLogger(__name__)

# control replies, status polls and pattern-check results; it also drains the display topics
# in case a notification was missed. Images do not wait for it: a 25 ms polling tick (40
# wake-ups/s) lost images of a 32-36/s stream whenever two arrived within one tick
CONTROL_PERIOD_MS = 100
STATUS_PERIOD_S = 0.25
PHOTON_PERIOD_S = 1.0  # the DFCAN photon count costs ~30 ms on a 512 x 512 frame
PLAN_DEBOUNCE_MS = 200
# closing during a recording: the acquisition process waits for outstanding SR at most
# FINISH_LIMIT_S (what is still missing is recorded as skipped), then seals the run file; the
# window waits that long plus FINISH_GRACE_S (file close, worker stop) for its confirmation
FINISH_LIMIT_S = 45.0
FINISH_GRACE_S = 25.0
FINISH_TICK_MS = 100
RECORD_START_GRACE_S = 5.0  # status may still say 'live' this long after Record is pressed
MIN_WINDOW_SIZE = (960, 560)
CONTROLS_WIDTH_PX = 370
ORIENTATION_COLOURS = ("#ff7b72", "#7ee787", "#79c0ff")
HISTORY_CHECKS = 200
RAW_SATURATION_ADU = 65_535  # until the camera's bit depth is known: 16-bit clipping
SR_LAG_WARN_S = 3.0  # SR trailing the camera by more than this raises the lag warning
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
        self.text = QtWidgets.QLabel("waiting for a SIM raw set", wordWrap=True)
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
        self._record_path = ""  # the run file the newest Record asked for
        self._last_run_key = ""  # last_run reported by the acquisition process, once shown
        self.close_without_asking = False  # screenshots, benchmarks and tests
        self.finish_limit_s = FINISH_LIMIT_S
        self.finishing = False  # closing: the acquisition process finishes the recording
        self.finish_outcome: dict[str, Any] = {}  # its last_run once confirmed (or 'problem')
        self._finish_started_s = 0.0
        self._stop_sent_s = 0.0
        self._closing_done = False
        self._finish_dialog: QtWidgets.QProgressDialog | None = None
        self._finish_timer = QtCore.QTimer(self)
        self._finish_timer.setInterval(FINISH_TICK_MS)
        self._finish_timer.timeout.connect(self._finish_tick)
        self.pattern_checker = PatternChecker()
        self._views_linked = False
        self._raw_scale = 0.0
        self.qc_message: Any = None  # the newest 'qc' record with a trust map (display channel)
        self.fallbacks: dict[int, str] = {}  # channel: why Wiener SIM replaced the network

        self.raw_panel = ImagePanel("Raw", "grey", saturation_value=RAW_SATURATION_ADU,
                                    value_unit="ADU", paint_stage="raw_paint")
        self.sr_panel = ImagePanel("Super-resolved", "hot", saturation_value=SR_SATURATION,
                                   spectrum=True, paint_stage="sr_paint")
        self.composite = CompositePanel()
        self.pattern = PatternPanel()
        self.editor = ProtocolEditor(lines_nm)
        self.status = StatusPanel()
        self.events = EventPane()

        # Qt properties as keyword arguments
        self.live_button = QtWidgets.QPushButton("▶ Live", checkable=True,
                                                 toolTip="live view (Ctrl+L)")
        self.record_button = QtWidgets.QPushButton(
            "● Record", checkable=True, objectName="record",
            toolTip="record to a new run file / stop (Ctrl+R)")
        self.snapshot_button = QtWidgets.QPushButton(
            "Snapshot", toolTip="save the views as TIFF and PNG (Ctrl+Shift+S)")
        self.load_button = QtWidgets.QPushButton("Load…")
        self.save_button = QtWidgets.QPushButton("Save…")
        self.raw_source = QtWidgets.QComboBox(toolTip="what the raw view shows")
        self.raw_source.addItems(["raw frame", "wide-field"])
        # the enabled channels, by laser line
        self.display_channel = QtWidgets.QComboBox(toolTip="the channel the views show")
        self.link_box = QtWidgets.QCheckBox("link views", checked=True)
        self.record_state = QtWidgets.QLabel(
            "not recording", wordWrap=True,
            textInteractionFlags=QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_folder_button = QtWidgets.QPushButton(
            "Open folder", toolTip="open the folder of the last run file", enabled=False)
        self.last_file = ""  # the newest finished run file
        self.lag_warning = QtWidgets.QLabel(wordWrap=True, objectName="warning")
        self.skip_sr_button = QtWidgets.QPushButton(
            "SR off", toolTip="live view without reconstruction (raw only)")
        self.imc_off_button = QtWidgets.QPushButton(
            "IMC-SR off", toolTip="live view without the IMC-SR split")
        self.lag_box = QtWidgets.QWidget()
        # `--model auto` (domain guard, photon count) made SR with Wiener SIM: why, per channel
        self.fallback_warning = QtWidgets.QLabel(wordWrap=True, objectName="warning")
        self.fallback_warning.hide()
        self.sr_lag_s = 0.0
        self.roi_button = QtWidgets.QPushButton(
            "Draw ROI", checkable=True,
            toolTip="drag a rectangle on the raw view; press again to apply it as the camera ROI")
        self.fit_button = QtWidgets.QPushButton(
            "Fit views", toolTip="show the whole image in every view (Ctrl+0)")
        self.roi_item: pg.RectROI | None = None
        self.actions: dict[str, QtGui.QAction] = {}

        self._update_display_channels()
        self._build_layout()
        self._build_menus()
        self.live_button.clicked.connect(self._live_clicked)
        self.record_button.clicked.connect(self._record_clicked)
        self.open_folder_button.clicked.connect(self.open_last_folder)
        self.roi_button.toggled.connect(self._roi_toggled)
        self.fit_button.clicked.connect(self.fit_views)
        self.skip_sr_button.clicked.connect(lambda: self.editor.set_reconstruction("none"))
        self.imc_off_button.clicked.connect(lambda: self.editor.imc.setChecked(False))
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
        self.editor.pipeline_changed.connect(self._pipeline_edited)
        self.editor.pipeline_changed.connect(self._update_display_channels)
        self.display_channel.currentIndexChanged.connect(lambda _index: self._plan_edited())
        self.restore_settings()
        self._link_toggled(self.link_box.isChecked())
        for panel in (self.raw_panel, self.sr_panel):
            panel.view.sigRangeChangedManually.connect(self._view_moved)
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
        """Controls in a scroll area beside the views (splitters), events in a dock below:
        usable from 1280 x 720 up, every part resizable, nothing drawn over anything else."""
        self.setMinimumSize(*MIN_WINDOW_SIZE)
        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.addWidget(self.raw_panel)
        top.addWidget(self.sr_panel)
        bottom = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        bottom.addWidget(self.composite)
        bottom.addWidget(self.pattern)
        self.views_splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.views_splitter.addWidget(top)
        self.views_splitter.addWidget(bottom)
        self.views_splitter.setStretchFactor(0, 3)
        self.views_splitter.setStretchFactor(1, 2)
        for splitter in (top, bottom, self.views_splitter):
            splitter.setChildrenCollapsible(False)
            splitter.setHandleWidth(6)

        buttons = QtWidgets.QGridLayout()
        for row, pair in enumerate(((self.live_button, self.record_button),
                                    (self.snapshot_button, self.link_box),
                                    (self.load_button, self.save_button),
                                    (self.raw_source, self.display_channel),
                                    (self.roi_button, self.fit_button))):
            for col, widget in enumerate(pair):
                buttons.addWidget(widget, row, col)
        record_box = QtWidgets.QGroupBox("Recording")
        record_layout = QtWidgets.QVBoxLayout(record_box)
        record_layout.addWidget(self.record_state)
        record_layout.addWidget(self.open_folder_button)
        lag_layout = QtWidgets.QVBoxLayout(self.lag_box)
        lag_layout.setContentsMargins(0, 0, 0, 0)
        lag_layout.addWidget(self.lag_warning)
        lag_buttons = QtWidgets.QHBoxLayout()
        lag_buttons.addWidget(self.skip_sr_button)
        lag_buttons.addWidget(self.imc_off_button)
        lag_layout.addLayout(lag_buttons)
        self.lag_box.hide()
        side = QtWidgets.QVBoxLayout()
        side.setContentsMargins(4, 4, 4, 4)
        side.addLayout(buttons)
        side.addWidget(self.lag_box)
        side.addWidget(self.fallback_warning)
        side.addWidget(record_box)
        side.addWidget(self.editor)
        side.addWidget(self.status)
        side.addStretch(1)
        panel = QtWidgets.QWidget()
        panel.setLayout(side)
        self.controls_scroll = QtWidgets.QScrollArea(
            widgetResizable=True, maximumWidth=2 * CONTROLS_WIDTH_PX,
            horizontalScrollBarPolicy=QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.controls_scroll.setWidget(panel)
        scrollbar_px = self.controls_scroll.verticalScrollBar().sizeHint().width()
        self.controls_scroll.setMinimumWidth(max(CONTROLS_WIDTH_PX, panel.minimumSizeHint().width()
                                                 + scrollbar_px + 4))

        self.main_splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.main_splitter.addWidget(self.controls_scroll)
        self.main_splitter.addWidget(self.views_splitter)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.main_splitter)

        self.events_dock = self._dock("Events", self.events)
        self.events_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                                     | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.resizeDocks([self.events_dock], [110], QtCore.Qt.Orientation.Vertical)
        # the autopilot's trend: shown when a recording runs an autopilot
        self.autopilot_panel = AutopilotPanel()
        self.autopilot_dock = self._dock("Autopilot", self.autopilot_panel)
        self.autopilot_dock.hide()
        # live trust: trend per channel and the SR view's trust-map overlay (shown with the
        # first trust record)
        self.trust_panel = TrustPanel()
        self.trust_dock = self._dock("Trust", self.trust_panel)
        self.trust_dock.hide()
        self.trust_panel.overlay_box.toggled.connect(self._trust_overlay_toggled)

    def _dock(self, title: str, widget: QtWidgets.QWidget) -> QtWidgets.QDockWidget:
        """A dock below the views holding ``widget`` (object name: the title in lower case,
        so the window state restores it)."""
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title.lower())
        dock.setWidget(widget)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        return dock

    def _build_menus(self) -> None:
        """Menu bar with the keyboard shortcuts (Live, Record, Snapshot, Fit views, Quit)."""
        keys = QtGui.QKeySequence
        bar = self.menuBar()

        def action(menu: QtWidgets.QMenu, name: str, text: str, shortcut: Any,
                   slot: Any, checkable: bool = False) -> QtGui.QAction:
            act = QtGui.QAction(text, self)
            act.setShortcut(keys(shortcut))
            act.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            act.setCheckable(checkable)
            act.triggered.connect(slot)
            menu.addAction(act)
            self.actions[name] = act
            return act

        file_menu = bar.addMenu("&File")
        action(file_menu, "load", "&Load protocol…", keys.StandardKey.Open, self._load_clicked)
        action(file_menu, "save", "&Save protocol…", keys.StandardKey.Save, self._save_clicked)
        action(file_menu, "folder", "Choose run &folder…", "Ctrl+Shift+O",
               self.editor.choose_folder)
        action(file_menu, "open_folder", "Open last run's folder", "Ctrl+Shift+F",
               self.open_last_folder)
        file_menu.addSeparator()
        action(file_menu, "quit", "&Quit", "Ctrl+Q", self.close)
        run_menu = bar.addMenu("&Acquisition")
        action(run_menu, "live", "&Live", "Ctrl+L",
               lambda: self.live_button.click())
        action(run_menu, "record", "&Record / stop", "Ctrl+R",
               lambda: self.record_button.click())
        action(run_menu, "snapshot", "&Snapshot", "Ctrl+Shift+S", lambda: self.snapshot())
        view_menu = bar.addMenu("&View")
        action(view_menu, "fit", "&Fit views", "Ctrl+0", self.fit_views)
        action(view_menu, "fft", "SR &spectrum (FFT)", "Ctrl+F", self.sr_panel.fft.toggle)
        view_menu.addAction(self.events_dock.toggleViewAction())
        view_menu.addAction(self.autopilot_dock.toggleViewAction())
        view_menu.addAction(self.trust_dock.toggleViewAction())
        overlay = action(view_menu, "trust_map", "&Trust map on the SR view", "Ctrl+T",
                         lambda *_args: self.trust_panel.overlay_box.setChecked(
                             self.actions["trust_map"].isChecked()), checkable=True)
        self.trust_panel.overlay_box.toggled.connect(overlay.setChecked)

    def _view_moved(self, *_args: object) -> None:
        """A pan/zoom by the user holds for every linked view (no re-fit on resize)."""
        if self._views_linked:
            for panel in (self.raw_panel, self.sr_panel):
                panel.auto_fit = False
            self.composite.auto_fit = False

    def fit_views(self) -> None:
        """Show every view's whole image, and keep re-fitting it on resize until panned."""
        for panel in (self.raw_panel, self.sr_panel):  # raw follows SR while linked
            panel.fit()
        self.composite.fit()  # follows SR too while linked
        self.pattern.view.autoRange(padding=0.0)

    def _update_display_channels(self) -> None:
        """The channel chooser lists the enabled channels by laser line (e.g. '488 nm')."""
        names = self.editor.channel_names()
        current = self.display_channel.currentIndex()
        if [self.display_channel.itemText(i) for i in range(self.display_channel.count())] \
                == names:
            return
        self.display_channel.blockSignals(True)
        self.display_channel.clear()
        self.display_channel.addItems(names)
        self.display_channel.setCurrentIndex(min(max(current, 0), len(names) - 1))
        self.display_channel.blockSignals(False)

    def _display_channel_index(self) -> int:
        return max(0, self.display_channel.currentIndex())

    def open_last_folder(self) -> bool:
        """Open the folder of the newest finished run file in the desktop's file manager."""
        if not self.last_file:
            return False
        folder = Path(self.last_file).parent
        return bool(QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(folder))))

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
        self.link.command("live", protocol=data, display_channel=self._display_channel_index())
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
        self.link.command("record", protocol=data, display_channel=self._display_channel_index())
        self._record_requested_s = time.monotonic()
        self._record_path = str(data["output"])
        self.record_button.setChecked(True)
        self.editor.set_editable_while_recording(True)
        self.record_state.setText(f"starting… (inference worker loading)\n{data['output']}")
        self.events.add("info", f"recording to {data['output']}")
        return True

    def stop_record(self, finish_within_s: float | None = None, resume: bool = True) -> None:
        """Stop the recording after the time point in progress; outstanding SR is waited for
        at most ``finish_within_s`` (None: while it keeps arriving)."""
        args: dict[str, Any] = {"resume": resume}
        if finish_within_s is not None:
            args["finish_within_s"] = finish_within_s
        self.link.command("stop_record", **args)
        self.record_button.setText("Stopping…")
        self.record_button.setEnabled(False)
        self.record_state.setText("stopping: finishing the time point, then outstanding SR")

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

    def _pipeline_edited(self) -> None:
        """Mode, reconstruction, IMC-SR, channels or ROI changed: live view restarts."""
        if self.live_button.isChecked() and not self.recording:
            self.events.add("info", "applying the new settings: live view restarts "
                                    "(camera and SR worker)")
            self._plan_timer.start()

    def _apply_plan(self) -> None:
        if self.live_button.isChecked() and not self.record_button.isChecked():
            self.start_live()

    def _link_toggled(self, linked: bool) -> None:
        """Link pan/zoom once both views have an image (an empty view would set the range)."""
        ready = self.sr_panel.image is not None and self.raw_panel.image is not None
        self._views_linked = linked and ready
        link_views([self.sr_panel, self.raw_panel], self._views_linked)
        self.raw_panel.fit_follower = self._views_linked  # the SR view fits both
        composite_ready = self._views_linked and self.composite.channels is not None
        self.composite.view.setXLink(self.sr_panel.view if composite_ready else None)
        self.composite.view.setYLink(self.sr_panel.view if composite_ready else None)
        self.composite.fit_follower = composite_ready
        if self._views_linked:
            self.sr_panel.view.autoRange(padding=0.0)

    def _send_raw_view(self) -> None:
        """Tell the acquisition process what the raw view shows (it publishes only that)."""
        if self.link.control is not None:
            view = "frame" if self.raw_source.currentIndex() == 0 else "wide-field"
            self.link.command("display", raw_view=view)

    def _imc_toggled(self, on: bool) -> None:
        """The composite pane is shown only while IMC-SR is on (the pattern check widens);
        turned on during Live, the pipeline restarts with IMC-SR (see _pipeline_edited)."""
        self.composite.clear()
        self.composite.set_message("IMC-SR starting: waiting for its first result"
                                   if self.live_button.isChecked() else
                                   "IMC-SR on: start Live to see the composite")
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
        with stage("tick"):
            self.ticks += 1
            self.link.tick()
            for topic in self.link.subscribers:  # a safety net: notifications normally do this
                self._display_ready(topic)
            result = self.pattern_checker.take()
            if result is not None:
                self.pattern.show_result(result)
            now = time.monotonic()
            if now - self._last_status_s >= STATUS_PERIOD_S:
                self._last_status_s = now
                self._show_status()

    def _display_ready(self, topic: str) -> None:
        """Take the newest image of ``topic`` (every record of the unconflated 'qc') and show
        it."""
        with stage("tick"):
            with stage("receive"):
                subscriber = self.link.subscribers[topic]
                if topic == "qc":  # unconflated: every record counts (the trend)
                    messages = subscriber.drain()
                else:
                    newest = subscriber.newest()
                    messages = [newest] if newest is not None else []
            for message in messages:
                self._show_message(topic, message)

    def _show_message(self, topic: str, message: Any) -> None:
        if topic == "raw":
            with stage("raw_set"):
                self._show_raw(message)
                self.raw_rate.add(1)
        elif topic == "set":
            with stage("full_set"):
                self._take_set(message)
        elif topic == "sr":
            with stage("sr_set"):
                self.sr_message = message
                scale = (float(message.header.info.get("sr_scale", 1.0))
                         if message.array.dtype == np.uint16 else 1.0)
                self.sr_panel.set_image(message.array, f"t = {message.header.time_point}",
                                        value_scale=scale)
                self._match_raw_scale()
                self.display_rate.add(1)
        elif topic == "qc":
            self._take_qc(message)
        elif topic == "imc":
            if not (message.array.ndim == 3 and message.array.shape[0] == 3):
                return
            first = self.composite.channels is None
            self.composite.set_channels(message.array, f"t = {message.header.time_point}")
            if first and self.link_box.isChecked():
                self._link_toggled(True)

    def _channel_name(self, channel: int, laser_nm: int = 0) -> str:
        names = self.editor.channel_names()
        if laser_nm > 0:
            return f"{laser_nm} nm"
        return names[channel] if 0 <= channel < len(names) else f"channel {channel}"

    def _trust_limits(self, channel: int) -> TrustLimits:
        """The limits the autopilot's trust check uses for ``channel`` (its defaults without)."""
        try:
            channels = self.editor.protocol(Path("unused.h5")).channels
        except ProtocolError:
            return TrustLimits.of(None)
        return TrustLimits.of(channels[channel].autopilot if channel < len(channels) else None)

    def _take_qc(self, message: Any) -> None:
        """A 'qc' record: a trust record for the trend (and the overlay, display channel), and
        the Wiener fallback state of its channel (warning, events)."""
        head = message.header
        info = head.info
        channel = int(head.channel)
        name = self._channel_name(channel, int(head.laser_nm))
        trust = info.get("trust")
        if isinstance(trust, dict):
            if self.trust_dock.isHidden() and not self.trust_panel.history:
                self.trust_dock.show()
            if channel == self._display_channel_index():
                self.trust_panel.set_limits(self._trust_limits(channel))
            self.trust_panel.add_record(channel, name, int(head.time_point), trust)
            self.status.values["trust"].setText(self.trust_panel.describe(channel))
            if channel == self._display_channel_index():
                self.qc_message = message
                self._show_trust_map()
        reason = fallback_reason(info)
        before = self.fallbacks.get(channel)
        if reason:
            self.fallbacks[channel] = reason
            if before is None:
                self.events.add("warning", f"{name}: SR by Wiener SIM instead of the network "
                                           f"from time point {head.time_point}: {reason}")
        elif before is not None:
            del self.fallbacks[channel]
            self.events.add("info", f"{name}: SR by {info.get('model_name', 'the network')} "
                                    f"again from time point {head.time_point}")
        if reason or before is not None:
            self._show_fallbacks()

    def _show_fallbacks(self) -> None:
        lines = [f"⚠ {self._channel_name(c)}: Wiener SIM instead of the network ({reason})"
                 for c, reason in sorted(self.fallbacks.items())]
        self.fallback_warning.setText("\n".join(lines))
        self.fallback_warning.setVisible(bool(lines))

    def _trust_overlay_toggled(self, on: bool) -> None:
        if on:
            self._show_trust_map()
        else:
            self.sr_panel.hide_map()

    def _show_trust_map(self) -> None:
        """The newest trust map of the display channel over the SR view (when the box is on)."""
        message, sr = self.qc_message, self.sr_panel.image
        if not self.trust_panel.overlay_box.isChecked() or message is None or sr is None:
            return
        values = np.asarray(message.array, dtype=np.float32)
        raw = self.raw_panel.image
        raw_shape = (int(raw.shape[0]), int(raw.shape[1])) if raw is not None else None
        rect = map_rect_sr((values.shape[0], values.shape[1]), raw_shape,
                           (int(sr.shape[0]), int(sr.shape[1])))
        limit = self.trust_panel.limits.max_raw_chi2
        middle = 1.0 + (limit - 1.0) / 2
        legend = (f"<span style='color:#fff'>raw χ² t = {message.header.time_point}</span><br>"
                  "<span style='color:#fff'>≤ 1 clear</span><br>"
                  f"<span style='color:#ff9800'>■ {middle:.3g}</span> "
                  f"<span style='color:#e53935'>■ ≥ {limit:g}</span>")
        self.sr_panel.show_map(values, trust_rgba(values, limit), rect, "raw χ²", legend)

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
                                          float(camera["electrons_per_adu"])))

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

    def _update_scale(self) -> None:
        """µm axes and scale bars from the camera's pixel size; saturation from its bit depth."""
        camera = self._camera
        bits = camera.get("bit_depth")
        if isinstance(bits, int) and 8 <= bits <= 16:
            self.raw_panel.set_saturation_value(float(2**bits - 1))
        pixel_nm = camera.get("pixel_size_nm")
        if not isinstance(pixel_nm, int | float) or not pixel_nm > 0:
            return
        raw, sr = self.raw_panel.image, self.sr_panel.image
        raw_um_per_unit = pixel_nm / 1000.0 / (self._raw_scale or 1.0)
        if raw is not None:
            self.raw_panel.set_um_per_unit(raw_um_per_unit)
        if sr is not None and raw is not None and sr.shape[0]:
            self.sr_panel.set_um_per_unit(pixel_nm / 1000.0 * raw.shape[0] / sr.shape[0])

    def _show_lag(self, status: dict[str, Any]) -> None:
        """A warning when SR trails the camera by more than SR_LAG_WARN_S, with the choices."""
        channels = max(1, len(self.editor.channel_names()))
        patterns = 1 if self.editor.mode.currentText() == "WF" else 9
        self.sr_lag_s = sr_lag_s(status, channels * patterns)
        lagging = self.sr_lag_s > SR_LAG_WARN_S and status.get("state") in (
            "live", *RECORDING_STATES)
        if lagging:
            behind = status.get("queue_depth") or 0
            recording = status.get("state") in RECORDING_STATES
            self.lag_warning.setText(
                f"SR is {self.sr_lag_s:.0f} s behind the camera"
                + (f" ({behind} time points)" if recording else "")
                + (". The recording keeps every raw frame; the choices below apply to live "
                   "view after it." if recording else
                   ". Turn SR or IMC-SR off for live view, or lower the frame rate."))
            self.imc_off_button.setVisible(self.editor.imc.isChecked())
            self.skip_sr_button.setEnabled(not recording)
            self.imc_off_button.setEnabled(not recording)
        if lagging != self.lag_box.isVisible():
            self.lag_box.setVisible(lagging)

    def _roi_toggled(self, on: bool) -> None:
        """Draw a rectangle on the raw view; pressed again it becomes the protocol's ROI."""
        image = self.raw_panel.image
        scale = self.raw_panel.pixel_scale
        if on:
            if image is None:
                self.events.add("warning", "start Live first: the ROI is drawn on the raw view")
                self.roi_button.setChecked(False)
                return
            height, width = image.shape[0] * scale, image.shape[1] * scale
            self.roi_item = pg.RectROI([width / 4, height / 4], [width / 2, height / 2],
                                       pen=pg.mkPen("#58a6ff", width=2),
                                       maxBounds=QtCore.QRectF(0, 0, width, height))
            self.raw_panel.view.addItem(self.roi_item)
            self.roi_button.setText("Apply ROI")
            return
        self.roi_button.setText("Draw ROI")
        item, self.roi_item = self.roi_item, None
        if item is None:
            return
        self.raw_panel.view.removeItem(item)
        x, y = item.pos().x() / scale, item.pos().y() / scale
        width, height = item.size().x() / scale, item.size().y() / scale
        self.apply_roi(round(x), round(y), round(width), round(height))

    def apply_roi(self, x_px: int, y_px: int, width_px: int, height_px: int) -> None:
        """A camera ROI relative to the current frame (multiples of 4 px, at least 16)."""
        editor = self.editor
        width = max(16, width_px // 4 * 4)
        height = max(16, height_px // 4 * 4)
        editor.roi_x.setValue(editor.roi_x.value() + max(0, x_px))
        editor.roi_y.setValue(editor.roi_y.value() + max(0, y_px))
        editor.roi_width.setValue(width)
        editor.roi_height.setValue(height)
        self.events.add("info", f"ROI {width} x {height} px at ({editor.roi_x.value()}, "
                                f"{editor.roi_y.value()})")

    def _show_status(self) -> None:
        status = self.link.state.status
        self._camera = status.get("camera", self._camera) or {}
        self._update_scale()
        self._show_lag(status)
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
        autopilot = status.get("autopilot")
        if isinstance(autopilot, dict) and autopilot:
            if self.autopilot_dock.isHidden():
                self.autopilot_dock.show()
            self.autopilot_panel.show_status(autopilot)
        names = status.get("imc_channel_names")
        if isinstance(names, list):
            self.composite.set_channel_names([str(n) for n in names])
        state = str(status.get("state", ""))
        recording = state in RECORDING_STATES
        if recording:
            self._record_requested_s = 0.0
            self.record_button.setChecked(True)
            self._show_recording_state(status)
        elif self.record_button.isChecked() and not status.get("busy") and (
                time.monotonic() - self._record_requested_s > RECORD_START_GRACE_S):
            self.record_button.setChecked(False)  # finished, stopped or failed
            self.record_button.setText("● Record")
            self.record_button.setEnabled(True)
            self.editor.set_editable_while_recording(False)
        self._take_last_run(status.get("last_run"))
        self._last_state = state

    def _show_recording_state(self, status: dict[str, Any]) -> None:
        """starting / recording t of N / stopping (SR outstanding) in the Recording box."""
        state = str(status.get("state"))
        path = str(status.get("file_path") or self._record_path)
        if state == "starting":
            text = "starting… (inference worker loading)"
        elif state == "stopping":
            pending = int(status.get("sr_pending") or 0)
            left = status.get("finish_left_s")
            text = (f"stopping: SR for {pending} raw set(s) outstanding"
                    + (f", at most {float(left):.0f} s more" if left is not None else ""))
            self.record_button.setText("Stopping…")
            self.record_button.setEnabled(False)
        else:
            total = status.get("time_points_total")
            t = int(status.get("time_point", -1)) + 1
            text = f"recording: time point {t}" + (f" of {total}" if total else "")
        self.record_state.setText(f"{text}\n{path}")

    def _take_last_run(self, last_run: Any) -> None:
        """A recording finished: show 'done' with its file (open-folder) or what went wrong."""
        if not isinstance(last_run, dict) or not last_run.get("path"):
            return
        key = json.dumps(last_run, sort_keys=True)
        if key == self._last_run_key:
            return
        self._last_run_key = key
        path = str(last_run["path"])
        if last_run.get("sealed"):
            self.last_file = path
            self.open_folder_button.setEnabled(True)
            self.record_state.setText(
                f"done: {last_run.get('time_points', 0)} time point(s), "
                f"{last_run.get('sr_frames', 0)} SR image(s), file sealed\n{path}")
        elif last_run.get("problem") == "no file":
            self.record_state.setText(f"stopped before the first time point: no run file\n"
                                      f"({last_run.get('error') or 'no error'})")
        else:
            self.last_file = path
            self.open_folder_button.setEnabled(True)
            self.record_state.setText(f"NOT sealed ({last_run.get('problem')}): run "
                                      f"`livesim recover {path}`")

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
        s.setValue("views/trust_map", self.trust_panel.overlay_box.isChecked())
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.setValue("splitters", json.dumps([
            self.main_splitter.sizes(), self.views_splitter.sizes()]))
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
            for key, box in (("views/link", self.link_box),
                             ("views/trust_map", self.trust_panel.overlay_box)):
                if s.contains(key):
                    box.setChecked(str(s.value(key)).lower() in ("true", "1"))
            if s.contains("views/raw_source"):
                self.raw_source.setCurrentIndex(int(str(s.value("views/raw_source"))))
            for key, restore in (("geometry", self.restoreGeometry),
                                 ("window_state", self.restoreState)):
                value = s.value(key)
                if value is not None:
                    restore(value)
            text = s.value("splitters")
            if text:
                main, views = json.loads(str(text))
                self.main_splitter.setSizes([int(n) for n in main])
                self.views_splitter.setSizes([int(n) for n in views])
        except (ValueError, KeyError, TypeError, ProtocolError) as exc:
            self.events.add("warning", f"stored settings ignored: {exc}")

    @property
    def recording(self) -> bool:
        """True while the acquisition process records, starts to or finishes (or Record was
        pressed moments ago and its status has not come back yet)."""
        return self._last_state in RECORDING_STATES or (
            self._record_requested_s > 0.0
            and time.monotonic() - self._record_requested_s < RECORD_START_GRACE_S)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        """Save settings and stop the acquisition process. During a recording the window
        first shows 'finishing the recording' until the run file is sealed (bounded)."""
        if self.finishing and not self._closing_done:
            event.ignore()  # a second Ctrl+Q while finishing: keep waiting (bounded)
            return
        if self._closing_done or not self.recording:
            self._shutdown()
            super().closeEvent(event)
            return
        event.ignore()
        if self.isVisible() and not self.close_without_asking:
            answer = QtWidgets.QMessageBox.question(
                self, "Recording in progress",
                "A recording is running. Stop it after the current time point, seal the run "
                f"file (waiting at most {self.finish_limit_s:.0f} s for outstanding SR) and "
                "quit?")
            if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                return
        self._begin_finishing()

    def _begin_finishing(self) -> None:
        """Ask for the recording to stop with the shared time limit; show progress."""
        self.finishing = True
        self._finish_started_s = time.monotonic()
        self._send_finish()
        self.live_button.setChecked(False)
        self.main_splitter.setEnabled(False)
        for act in self.actions.values():
            act.setEnabled(False)
        self.events.add("info", f"finishing the recording before quitting (at most "
                                f"{self.finish_limit_s + FINISH_GRACE_S:.0f} s)")
        dialog = QtWidgets.QProgressDialog(
            "Finishing the recording…", "", 0, 1000, self,
            windowTitle="livesim — finishing the recording",
            windowModality=QtCore.Qt.WindowModality.WindowModal, minimumDuration=0,
            autoClose=False, autoReset=False, minimumWidth=440)
        dialog.setCancelButton(None)  # type: ignore[arg-type]
        dialog.setValue(0)
        dialog.show()
        self._finish_dialog = dialog
        self._finish_timer.start()

    def _send_finish(self) -> None:
        left_s = self.finish_limit_s - (time.monotonic() - self._finish_started_s)
        self.stop_record(finish_within_s=max(1.0, left_s), resume=False)
        self._stop_sent_s = time.monotonic()

    def _finish_tick(self) -> None:
        """Progress of the finishing recording; close once the run file's fate is known."""
        status = self.link.state.status
        state = str(status.get("state", ""))
        elapsed_s = time.monotonic() - self._finish_started_s
        limit_s = self.finish_limit_s + FINISH_GRACE_S
        last_run = status.get("last_run") or {}
        done = (state not in RECORDING_STATES and not status.get("busy")
                and isinstance(last_run, dict)
                and (last_run.get("path") == self._record_path or not self._record_path)
                and elapsed_s > 2 * STATUS_PERIOD_S)
        if (not done and state not in RECORDING_STATES and not status.get("busy")
                and elapsed_s > RECORD_START_GRACE_S):
            done = True  # the recording had already ended (or never started)
            if not (isinstance(last_run, dict) and last_run.get("path") == self._record_path):
                last_run = {"path": self._record_path, "sealed": False,
                            "problem": "no file" if not Path(self._record_path).exists()
                            else "no report from the acquisition process"}
        if state in ("starting", "recording") and time.monotonic() - self._stop_sent_s > 1.0:
            self._send_finish()  # the stop crossed the start of the recording: say it again
        if done:
            self.finish_outcome = dict(last_run)
        elif not self.link.state.alive:
            self.finish_outcome = {"path": self._record_path, "sealed": False,
                                   "problem": "the acquisition process exited"}
        elif elapsed_s > limit_s:
            self.finish_outcome = {"path": self._record_path, "sealed": False,
                                   "problem": f"no confirmation within {limit_s:.0f} s"}
        else:
            pending = int(status.get("sr_pending") or 0)
            text = (f"Finishing the recording: SR for {pending} raw set(s) outstanding "
                    f"({elapsed_s:.0f} s of at most {limit_s:.0f} s).\n"
                    "The run file is sealed before the window closes; SR not done by the "
                    "limit is recorded as skipped.")
            if self._finish_dialog is not None:
                self._finish_dialog.setLabelText(text)
                self._finish_dialog.setValue(min(999, int(1000 * elapsed_s / limit_s)))
            return
        self._finish_timer.stop()
        if self._finish_dialog is not None:
            self._finish_dialog.close()
            self._finish_dialog = None
        self._report_finish(self.finish_outcome)
        self._closing_done = True
        self.close()

    def _report_finish(self, outcome: dict[str, Any]) -> None:
        path = outcome.get("path") or "the run file"
        if outcome.get("sealed"):
            logger.info("run file sealed: %s", path)
            return
        if outcome.get("problem") == "no file":
            logger.info("the recording stopped before its run file was created")
            return
        text = (f"{path} was not confirmed sealed ({outcome.get('problem')}). Nothing is "
                f"deleted: run `livesim recover {path}` to make it readable (it keeps every "
                "time point written).")
        logger.error(text)
        self.events.add("error", text)
        if not self.close_without_asking:
            QtWidgets.QMessageBox.warning(self, "Run file not sealed", text)

    def _shutdown(self) -> None:
        self.timer.stop()
        self._finish_timer.stop()
        self._unwatch_display()
        self.save_settings()
        self.link.close(timeout_s=15.0 + (self.finish_limit_s if self.recording else 0.0))


def _save_png(path: Path, rgb: np.ndarray) -> None:
    """Write a (Y, X, 3) uint8 image as PNG through Qt."""
    from pyqtgraph.Qt import QtGui

    data = np.ascontiguousarray(rgb)
    height, width = data.shape[:2]
    image = QtGui.QImage(data.data, width, height, 3 * width, QtGui.QImage.Format.Format_RGB888)
    if not image.save(str(path)):
        raise OSError(f"Qt could not write {path}")
