"""Start the live-session window: Qt application, dark theme, acquisition process, screenshot."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DARK_STYLE = """
QWidget { background: #15181d; color: #d8dee6; font-size: 12px; }
QGroupBox { border: 1px solid #2c333d; border-radius: 4px; margin-top: 14px; padding: 4px; }
QGroupBox::title { subcontrol-origin: margin; left: 8px; color: #8fb4d9; font-weight: bold; }
QPushButton { background: #252b34; border: 1px solid #3a4350; border-radius: 3px;
              padding: 4px 10px; }
QPushButton:checked { background: #1f6f43; border-color: #2ea36a; }
QPushButton#record:checked { background: #9b2226; border-color: #e04f5f; }
QPushButton:hover { border-color: #5c8ac2; }
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox, QPlainTextEdit {
    background: #0f1115; border: 1px solid #2c333d; border-radius: 2px; padding: 1px 3px; }
QCheckBox::indicator { width: 13px; height: 13px; }
"""


# the window's CPU priority below acquisition's; 0 by default: on this 2-core machine niceness
# 5 cut the SR view from 29.6 to 16 updates/s beside the bench pipeline while the pipeline's
# rate moved within its run-to-run noise (docs/benchmarks.md, GUI)
WINDOW_NICENESS = 0


@dataclass(frozen=True)
class GuiOptions:
    """What `livesim gui` was asked to do."""

    rig: str = "emulator"
    protocol_file: Path | None = None
    size_px: int | None = None  # emulator frame size (sets the protocol's ROI); None: as saved
    structure: str = "microtubules"
    screenshot: Path | None = None
    run_seconds: float = 0.0
    settings_file: Path | None = None
    autostart: bool = False
    imc: bool = False
    model: str | None = None  # reconstruction method name (protocol value), None: as saved
    niceness: int = WINDOW_NICENESS  # > 0: the window yields CPU to acquisition under load
    attach: str | None = None  # display endpoint of someone else's run: watch it read-only


def apply_dark_theme(app: object) -> None:
    """Dark palette for Qt widgets and pyqtgraph."""
    import pyqtgraph as pg

    pg.setConfigOptions(background="#0b0d10", foreground="#c8d0da", antialias=False,
                        imageAxisOrder="row-major")
    app.setStyleSheet(DARK_STYLE)  # type: ignore[attr-defined]


def yield_cpu_to_acquisition(niceness: int = WINDOW_NICENESS) -> None:
    """Lower the calling thread's CPU priority, so that under contention acquisition and
    inference win and the display drops frames instead.

    Call after starting the acquisition process (children inherit the niceness). On Linux
    the niceness is per thread: threads started later inherit it, earlier ones keep theirs.
    """
    if niceness == 0:
        return
    try:
        os.nice(niceness)
    except OSError as exc:
        logger.warning("could not lower the window's CPU priority: %s", exc)


def run_gui(options: GuiOptions) -> int:
    """Open the window (starting the acquisition process); return the Qt exit code."""
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    from gui.host_link import HostLink, HostOptions
    from gui.main_window import LiveWindow

    app = pg.mkQApp("livesim")
    apply_dark_theme(app)
    if options.settings_file is not None:
        settings = QtCore.QSettings(str(options.settings_file), QtCore.QSettings.Format.IniFormat)
    else:
        settings = QtCore.QSettings("livesim", "livesim-gui")
    size = options.size_px or 128
    if options.attach is not None:
        link = HostLink(None, options.attach)
    else:
        link = HostLink.start(HostOptions(rig=options.rig, size_px=(size, size),
                                          structure=options.structure))
    yield_cpu_to_acquisition(options.niceness)  # the acquisition process keeps its own
    window = LiveWindow(link, settings)
    if options.size_px is not None:
        window.editor.roi_width.setValue(options.size_px)
        window.editor.roi_height.setValue(options.size_px)
    if options.protocol_file is not None:
        window.load_protocol(options.protocol_file)
    if options.imc:
        window.editor.imc.setChecked(True)
    if options.model is not None:
        window.editor.set_reconstruction(options.model)
    window.resize(1600, 1000)
    window.show()
    if options.attach is not None:
        window.events.add("info", f"watching {options.attach} (read-only: the run's own "
                                  "process controls acquisition)")
    elif options.autostart or options.screenshot is not None:
        window.start_live()
    if options.run_seconds > 0 or options.screenshot is not None:
        def finish() -> None:
            if options.screenshot is not None:
                options.screenshot.parent.mkdir(parents=True, exist_ok=True)
                if not window.grab().save(str(options.screenshot)):
                    logger.error("could not write the screenshot %s", options.screenshot)
                else:
                    logger.info("screenshot saved to %s", options.screenshot)
            window.close_without_asking = True
            window.close()

        QtCore.QTimer.singleShot(int(max(options.run_seconds, 0.1) * 1000), finish)
    code = int(app.exec())
    return code


def offscreen_if_headless() -> None:
    """Use Qt's offscreen platform when there is no display (CI, screenshots over ssh)."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
