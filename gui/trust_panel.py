"""Live trust in the window: per channel the trend of each checked SR image's raw-data
consistency (raw chi2) and resolution-scaled Pearson with their limits, the raw-consistency map
as a semi-transparent overlay on the SR view, and the words for a Wiener fallback.

The records come from the acquisition process's unconflated 'qc' display topic
(acquisition.display_outlet): the worker's trust record (`--trust-every`, docs/trust.md) and
the results that `--model auto` made with Wiener SIM in place of the network, with the reason.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from acquisition import run_file
from acquisition.autopilot import AutopilotSettings
from acquisition.display_outlet import is_fallback
from gui.autopilot_panel import CHANNEL_PENS

HISTORY_POINTS = 2000  # checked time points kept per channel (every 10th set: hours of a run)
LIMIT_PEN = pg.mkPen("#ff6b6b", width=1, style=QtCore.Qt.PenStyle.DashLine)
# the overlay: a block at raw chi2 <= 1 (explained to its noise) is clear, at the limit opaque red
OVERLAY_MAX_ALPHA = 170  # of 255: the SR image stays visible under the reddest block
OVERLAY_STOPS = ((0.0, (255, 235, 59)), (0.5, (255, 152, 0)), (1.0, (229, 57, 53)))


@dataclass(frozen=True)
class TrustLimits:
    """What the live trust check accepts (an autopilot's settings, else their defaults)."""

    max_raw_chi2: float
    min_resolution_scaled_pearson: float

    @classmethod
    def of(cls, settings: AutopilotSettings | None) -> TrustLimits:
        """The limits of a channel's autopilot settings (None: the defaults)."""
        chosen = settings if settings is not None else AutopilotSettings(target_error=1.0)
        return cls(chosen.max_raw_chi2, chosen.min_resolution_scaled_pearson)


@dataclass(frozen=True)
class TrustPoint:
    """One checked SR image."""

    time_point: int
    raw_chi2: float
    resolution_scaled_pearson: float
    beyond_support_fraction: float


def trust_rgba(chi2_map: np.ndarray, max_raw_chi2: float) -> np.ndarray:
    """(my, mx, 4) uint8 overlay colours of a raw-chi2 block map: clear at <= 1, yellow ->
    orange -> red and more opaque up to ``max_raw_chi2``; NaN blocks clear."""
    values = np.asarray(chi2_map, dtype=np.float64)
    span = max(float(max_raw_chi2) - 1.0, 1e-6)
    x = np.clip((np.nan_to_num(values, nan=1.0) - 1.0) / span, 0.0, 1.0)
    positions = [p for p, _ in OVERLAY_STOPS]
    rgba = np.zeros((*values.shape, 4), np.uint8)
    for channel in range(3):
        rgba[..., channel] = np.interp(x, positions, [c[channel] for _, c in OVERLAY_STOPS])
    rgba[..., 3] = np.round(OVERLAY_MAX_ALPHA * x).astype(np.uint8)
    return rgba


def map_rect_sr(map_shape: tuple[int, int], raw_shape: tuple[int, int] | None,
                sr_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """(x, y, width, height) in SR pixels of the field a trust map covers: the central
    QC_MAX_SIZE_PX raw square in blocks of QC_MAP_BLOCK_PX (inference.trust.central_trust_record).
    ``raw_shape`` None: the SR grid is taken as 2x the raw grid."""
    ny, nx = raw_shape if raw_shape is not None else (sr_shape[0] // 2, sr_shape[1] // 2)
    scale = sr_shape[0] / ny if ny else 2.0
    size = run_file.QC_MAX_SIZE_PX
    y0, x0 = max((ny - size) // 2, 0), max((nx - size) // 2, 0)
    block = run_file.QC_MAP_BLOCK_PX
    return (x0 * scale, y0 * scale, map_shape[1] * block * scale, map_shape[0] * block * scale)


def fallback_reason(info: dict[str, Any]) -> str:
    """Why a result was made by Wiener SIM in place of the network ('' if it was not)."""
    return is_fallback(str(info.get("model_name", "")), [str(f) for f in info.get("flags") or ()])


def _finite(value: Any) -> float:
    number = float(value) if isinstance(value, int | float) else math.nan
    return number if math.isfinite(number) else math.nan


class TrustPanel(QtWidgets.QWidget):
    """Two plots over the checked time points, one curve per channel: raw chi2 (limit above)
    and resolution-scaled Pearson (limit below); the newest record in words; the overlay box."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.chi2_plot = pg.PlotWidget()
        self.chi2_plot.setLabel("left", "raw χ²")
        self.pearson_plot = pg.PlotWidget()
        self.pearson_plot.setLabel("left", "res.-scaled Pearson")
        self.pearson_plot.setLabel("bottom", "time point")
        self.pearson_plot.setXLink(self.chi2_plot)
        self.chi2_limit = pg.InfiniteLine(angle=0, pen=LIMIT_PEN, movable=False)
        self.pearson_limit = pg.InfiniteLine(angle=0, pen=LIMIT_PEN, movable=False)
        self.chi2_plot.addItem(self.chi2_limit)
        self.pearson_plot.addItem(self.pearson_limit)
        self.overlay_box = QtWidgets.QCheckBox(
            "trust map on the SR view", toolTip="overlay the raw-consistency map (raw χ² per "
            "8 x 8 raw-px block) of the newest checked SR image (Ctrl+T)")
        self.newest = QtWidgets.QLabel("no trust record yet (worker --trust-every)", wordWrap=True)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.overlay_box)
        top.addWidget(self.newest, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        for plot in (self.chi2_plot, self.pearson_plot):
            plot.setMinimumHeight(80)
            plot.addLegend(offset=(5, 5))
            layout.addWidget(plot)
        self.history: dict[int, deque[TrustPoint]] = {}
        self.names: dict[int, str] = {}
        self.curves: dict[int, tuple[Any, Any]] = {}
        self.limits = TrustLimits.of(None)
        self.set_limits(self.limits)

    def set_limits(self, limits: TrustLimits) -> None:
        """Draw the accepted limits (dashed red)."""
        self.limits = limits
        self.chi2_limit.setValue(limits.max_raw_chi2)
        self.pearson_limit.setValue(limits.min_resolution_scaled_pearson)

    def add_record(self, channel: int, name: str, time_point: int,
                   trust: dict[str, Any]) -> TrustPoint:
        """One checked SR image; a time point before the channel's newest starts a new trend
        (a new run or live view)."""
        point = TrustPoint(time_point, _finite(trust.get("raw_chi2")),
                           _finite(trust.get("resolution_scaled_pearson")),
                           _finite(trust.get("beyond_support_fraction")))
        history = self.history.setdefault(channel, deque(maxlen=HISTORY_POINTS))
        if history and time_point <= history[-1].time_point:
            history.clear()
        history.append(point)
        self.names[channel] = name
        if channel not in self.curves:
            colour = CHANNEL_PENS[len(self.curves) % len(CHANNEL_PENS)]
            pen = pg.mkPen(colour, width=2)
            self.curves[channel] = tuple(
                plot.plot(pen=pen, symbol="o", symbolSize=5, symbolBrush=colour, name=name)
                for plot in (self.chi2_plot, self.pearson_plot))
        times = [p.time_point for p in history]
        chi2_curve, pearson_curve = self.curves[channel]
        chi2_curve.setData(times, [p.raw_chi2 for p in history])
        pearson_curve.setData(times, [p.resolution_scaled_pearson for p in history])
        self.newest.setText(self.describe(channel))
        return point

    def describe(self, channel: int) -> str:
        """The newest record of a channel against the limits, e.g. '488 nm t = 20: raw χ² 1.08
        (<= 5), Pearson 0.997 (>= 0.9)', with FAILS when outside."""
        history = self.history.get(channel)
        if not history:
            return ""
        p, limits = history[-1], self.limits
        fails = (p.raw_chi2 > limits.max_raw_chi2
                 or p.resolution_scaled_pearson < limits.min_resolution_scaled_pearson)
        return (f"{self.names.get(channel, channel)} t = {p.time_point}: raw χ² {p.raw_chi2:.3g} "
                f"(<= {limits.max_raw_chi2:g}), Pearson {p.resolution_scaled_pearson:.3f} "
                f"(>= {limits.min_resolution_scaled_pearson:g})" + (" - FAILS" if fails else ""))
