"""The photon-budget autopilot's trend: photon count per set against what the target needs,
and the laser power it set, per channel (shown while a recording runs an autopilot)."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from pyqtgraph.Qt import QtWidgets

# one colour per channel, in order of appearance (laser lines are keys of the status)
CHANNEL_PENS = ("#4fc3f7", "#aed581", "#ffb74d", "#e57373")


def autopilot_text(autopilot: dict[str, Any]) -> str:
    """One status line: per laser line the setting, the newest count and the required one."""
    if not autopilot:
        return "off"
    parts = []
    for line_nm, state in autopilot.items():
        count, needed = state.get("photon_count_e"), state.get("required_photon_count_e")
        text = (f"{line_nm} nm {float(state['power_pct']):.3g} % x "
                f"{float(state['exposure_ms']):.3g} ms")
        if count is not None:
            text += f", {float(count):.0f} e-"
        if needed is not None:
            text += f" (needs {float(needed):.0f})"
        if not state.get("target_reachable", True):
            text += " - TARGET NOT MET AT MAX LIGHT"
        parts.append(text)
    return "; ".join(parts)


class AutopilotPanel(QtWidgets.QWidget):
    """Two stacked plots over the recent sets: photon count (with the required count dashed)
    and laser power."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.counts = pg.PlotWidget()
        self.counts.setLabel("left", "photon count", units="e-")
        self.power = pg.PlotWidget()
        self.power.setLabel("left", "power", units="%")
        self.power.setLabel("bottom", "set")
        self.power.setXLink(self.counts)
        for plot in (self.counts, self.power):
            plot.setMinimumHeight(80)
            plot.addLegend(offset=(5, 5))
            layout.addWidget(plot)
        self.curves: dict[str, tuple[Any, Any, Any]] = {}

    def show_status(self, autopilot: dict[str, Any]) -> None:
        """Redraw from the acquisition process's ``autopilot`` status."""
        for index, (line_nm, state) in enumerate(autopilot.items()):
            if line_nm not in self.curves:
                pen = pg.mkPen(CHANNEL_PENS[index % len(CHANNEL_PENS)], width=2)
                dashed = pg.mkPen(CHANNEL_PENS[index % len(CHANNEL_PENS)], width=1,
                                  style=pg.QtCore.Qt.PenStyle.DashLine)
                self.curves[line_nm] = (
                    self.counts.plot(pen=pen, name=f"{line_nm} nm"),
                    self.counts.plot(pen=dashed, name=f"{line_nm} nm needed"),
                    self.power.plot(pen=pen, name=f"{line_nm} nm"),
                )
            count_curve, needed_curve, power_curve = self.curves[line_nm]
            counts = [float(v) for v in state.get("photon_count_history_e", [])]
            powers = [float(v) for v in state.get("power_history_pct", [])]
            count_curve.setData(counts)
            power_curve.setData(powers)
            needed = state.get("required_photon_count_e")
            if needed is not None and counts:
                needed_curve.setData([0, len(counts) - 1], [float(needed)] * 2)
