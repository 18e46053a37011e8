"""Run status (rates, latency, queue, skips, losses, photons, progress, disk) and the event pane."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from pyqtgraph.Qt import QtCore, QtWidgets

from gui.autopilot_panel import autopilot_text

FIELDS = (
    ("state", "state"), ("camera_fps", "camera"), ("sr_fps", "SR"), ("latency", "latency"),
    ("queue", "queue depth"), ("skips", "skipped SR"), ("lost", "lost frames"),
    ("photons", "photon count"), ("progress", "time point"), ("written", "frames written"),
    ("disk_rate", "to disk"), ("file", "file"), ("free", "free disk"), ("display", "display"),
    ("autopilot", "autopilot"), ("trust", "trust"),
)


def _number(value: Any, fmt: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:{fmt}}{unit}"


def format_status(status: dict[str, Any], photon_count: float, display_fps: float,
                  free_bytes: int | None) -> dict[str, str]:
    """The text of every status field from the acquisition process's status reply."""
    total = status.get("time_points_total")
    t = int(status.get("time_point", -1)) + 1
    state = str(status.get("state", "starting"))
    if status.get("busy"):
        state += " (busy)"
    return {
        "state": state,
        "camera_fps": _number(status.get("camera_fps"), ".0f", " frames/s"),
        "sr_fps": _number(status.get("sr_fps"), ".1f", " frames/s"),
        "latency": _number(status.get("latency_ms"), ".0f", " ms"),
        "queue": str(status.get("queue_depth", "–")),
        "skips": str(status.get("sr_skips", "–")),
        "lost": str(status.get("lost_frames", "–")),
        "photons": _number(photon_count, ".0f", " e-"),
        "progress": f"{t} of {total}" if total else (f"{t} (live)" if t > 0 else "–"),
        "written": str(status.get("frames_written", 0)),
        "disk_rate": _number(status.get("mb_per_s"), ".1f", " MB/s"),
        "file": str(status.get("file_path") or "– (not recording)"),
        "free": _number(free_bytes / 1e9 if free_bytes is not None else None, ".1f", " GB"),
        "display": _number(display_fps, ".0f", " updates/s"),
        "autopilot": autopilot_text(status.get("autopilot") or {}),
    }


RECORDING_STATES = ("starting", "recording", "stopping")


def sr_lag_s(status: dict[str, Any], frames_per_time_point: int) -> float:
    """How far SR trails the camera, in seconds: the newest SR image's latency, or (while
    recording) the SR lag in time points at the camera's frame rate, whichever is larger."""
    latency_ms = status.get("latency_ms")
    lag_s = (float(latency_ms) / 1000.0 if isinstance(latency_ms, int | float)
             and math.isfinite(latency_ms) else 0.0)
    if status.get("state") in RECORDING_STATES:
        behind = status.get("queue_depth") or 0
        fps = status.get("camera_fps") or 0.0
        if isinstance(fps, int | float) and fps > 0 and frames_per_time_point > 0:
            lag_s = max(lag_s, float(behind) * frames_per_time_point / float(fps))
    return lag_s


def free_disk_bytes(folder: Path) -> int | None:
    """Free bytes on the file system that holds ``folder`` (its nearest existing parent)."""
    path = folder.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


class StatusPanel(QtWidgets.QGroupBox):
    """A two-column grid of status labels."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Status", parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setVerticalSpacing(1)
        self.values: dict[str, QtWidgets.QLabel] = {}
        for row, (key, name) in enumerate(FIELDS):
            label = QtWidgets.QLabel(name, styleSheet="color: #8a9bb0;")
            value = QtWidgets.QLabel(
                "–", wordWrap=key == "file",
                textInteractionFlags=QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(label, row, 0, QtCore.Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, row, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)

    def show_values(self, values: dict[str, str]) -> None:
        """Update the labels."""
        for key, text in values.items():
            label = self.values.get(key)
            if label is not None and label.text() != text:
                label.setText(text)


LEVEL_COLOURS = {"error": "#ff6b6b", "warning": "#f0c060", "info": "#a0b4c8"}


class EventPane(QtWidgets.QWidget):
    """A red banner with the newest error (dismissable) above a scrolling event log."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.banner = QtWidgets.QLabel(wordWrap=True, styleSheet=(
            "background: #7a1f1f; color: white; padding: 6px; font-weight: bold; "
            "border-radius: 3px;"))
        self.banner.hide()
        self.dismiss = QtWidgets.QPushButton("dismiss")
        self.dismiss.hide()
        self.dismiss.clicked.connect(self.clear_banner)
        self.log = QtWidgets.QPlainTextEdit(readOnly=True, maximumBlockCount=2000,
                                            minimumHeight=60)
        self.errors: list[str] = []
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.banner, 1)
        top.addWidget(self.dismiss)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.log, 1)

    def add(self, level: str, text: str) -> None:
        """Append an event; errors also go to the banner."""
        stamp = time.strftime("%H:%M:%S")
        colour = LEVEL_COLOURS.get(level, "#ccc")
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.log.appendHtml(f"<span style='color:#8a9bb0'>{stamp}</span> "
                            f"<span style='color:{colour}'>{safe}</span>")
        if level == "error":
            self.errors.append(text)
            self.banner.setText(f"⚠ {text}")
            self.banner.show()
            self.dismiss.show()

    def clear_banner(self) -> None:
        """Hide the banner (the log keeps the text)."""
        self.banner.hide()
        self.dismiss.hide()
