"""Start the live-session window: Qt application, dark theme, acquisition process, screenshot."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# the dark theme's colours; every text / background pair below passes WCAG 2.1 AA (4.5:1 for
# text, 3:1 for the outlines that show a control's extent and state: tests/gui/test_theme.py)
THEME = {
    "window": "#15181d", "base": "#0f1115", "text": "#d8dee6", "muted": "#8a9bb0",
    "button": "#252b34", "outline": "#7d8da1", "title": "#8fb4d9", "accent": "#58a6ff",
    "on": "#1f6f43", "on_outline": "#2ea36a", "record": "#9b2226", "record_outline": "#e04f5f",
    "warning": "#f0c060", "disabled": "#8a9bb0", "highlight": "#2f5f9e",
}
# (foreground, background, minimum contrast ratio): what the theme draws on what
THEME_PAIRS = (
    ("text", "window", 4.5), ("text", "base", 4.5), ("text", "button", 4.5),
    ("muted", "window", 4.5), ("title", "window", 4.5), ("warning", "window", 4.5),
    ("disabled", "window", 4.5), ("text", "on", 4.5), ("text", "record", 4.5),
    ("text", "highlight", 4.5), ("outline", "window", 3.0), ("outline", "base", 3.0),
    ("accent", "window", 3.0), ("on_outline", "window", 3.0), ("record_outline", "window", 3.0),
)

DARK_STYLE = """
QWidget {{ font-size: 12px; }}
QGroupBox {{ border: 1px solid {outline}; border-radius: 4px; margin-top: 14px; padding: 4px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; color: {title}; font-weight: bold; }}
QPushButton {{ background: {button}; color: {text}; border: 1px solid {outline};
              border-radius: 3px; padding: 4px 10px; }}
QPushButton:checked {{ background: {on}; border-color: {on_outline}; }}
QPushButton#record:checked {{ background: {record}; border-color: {record_outline}; }}
QPushButton:hover {{ border-color: {accent}; }}
QPushButton:disabled {{ color: {disabled}; }}
QCheckBox::indicator {{ width: 13px; height: 13px; border: 1px solid {outline};
                        border-radius: 2px; background: {base}; }}
QCheckBox::indicator:checked {{ background: {accent}; border-color: {accent}; }}
QCheckBox::indicator:disabled {{ border-color: {muted}; }}
QLabel#warning {{ color: {warning}; font-weight: bold; }}
QLabel#note {{ color: {muted}; }}
""".format(**THEME)


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.1 contrast ratio of two '#rrggbb' colours (1 to 21)."""
    def luminance(colour: str) -> float:
        rgb = [int(colour.lstrip("#")[i:i + 2], 16) / 255.0 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# the window's CPU priority below acquisition's; 0 by default: on this 2-core machine niceness
# 5 cut the SR view from 29.6 to 16 updates/s beside the bench pipeline while the pipeline's
# rate moved within its run-to-run noise (docs/benchmarks.md, GUI)
WINDOW_NICENESS = 0


@dataclass(frozen=True)
class GuiOptions:
    """What `livesim gui` was asked to do."""

    rig: str = "emulator"
    roles: str | None = None  # role map: profile names / TOML files, "+"-joined (real rigs)
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


def dark_palette() -> object:
    """Qt's Fusion style draws every control (spin-box arrows, combo arrows, check marks) in
    these colours; the style sheet only adds outlines and the button states."""
    from pyqtgraph.Qt import QtGui

    role = QtGui.QPalette.ColorRole
    group = QtGui.QPalette.ColorGroup
    palette = QtGui.QPalette()
    colours = {role.Window: "window", role.WindowText: "text", role.Base: "base",
               role.AlternateBase: "button", role.Text: "text", role.Button: "button",
               role.ButtonText: "text", role.ToolTipBase: "base", role.ToolTipText: "text",
               role.Highlight: "highlight", role.HighlightedText: "text",
               role.PlaceholderText: "muted", role.Link: "accent", role.BrightText: "warning",
               role.Light: "outline", role.Midlight: "outline", role.Mid: "outline",
               role.Dark: "base", role.Shadow: "base"}
    for r, name in colours.items():
        palette.setColor(r, QtGui.QColor(THEME[name]))
    for r in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(group.Disabled, r, QtGui.QColor(THEME["disabled"]))
    return palette


def apply_dark_theme(app: object) -> None:
    """Dark Fusion palette and outlines for Qt widgets; dark pyqtgraph views."""
    import pyqtgraph as pg

    pg.setConfigOptions(background="#0b0d10", foreground="#c8d0da", antialias=False,
                        imageAxisOrder="row-major")
    app.setStyle("Fusion")  # type: ignore[attr-defined]
    app.setPalette(dark_palette())  # type: ignore[attr-defined]
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


def default_window_size(app: object) -> object:
    """1600 x 1000, or 90 % of a smaller screen's available area (e.g. a 1280 x 720 one)."""
    from pyqtgraph.Qt import QtCore

    screen = app.primaryScreen()  # type: ignore[attr-defined]
    if screen is None:
        return QtCore.QSize(1600, 1000)
    area = screen.availableGeometry()
    return QtCore.QSize(min(1600, int(area.width() * 0.9)), min(1000, int(area.height() * 0.9)))


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
        link = HostLink.start(HostOptions(rig=options.rig, roles=options.roles,
                                          size_px=(size, size),
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
    if settings.value("geometry") is None:  # otherwise restore_settings placed it
        window.resize(default_window_size(app))
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
