"""One live image view: pyqtgraph fast path, histogram, levels, gamma, percentile auto-contrast.

The image goes to ImageItem as a C-contiguous array with explicit levels and a 256-entry uint8
LUT (no per-frame auto-levels). The histogram and continuous auto-contrast are refreshed at
most every HISTOGRAM_PERIOD_S, not per frame.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtGui, QtWidgets

from gui.contrast import COLOURMAPS, SATURATION_RGB, lut_for, percentile_levels

logger = logging.getLogger(__name__)

HISTOGRAM_PERIOD_S = 0.3


class ImagePanel(QtWidgets.QWidget):
    """A titled image view with its histogram/levels and a row of contrast controls."""

    def __init__(self, title: str, colourmap: str = "grey", saturation_value: float | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.saturation_value = saturation_value  # detector / model maximum; None: no overlay
        self.saturated_px = 0
        self.image: np.ndarray | None = None
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.updates = 0
        self._last_histogram_s = 0.0
        self._need_auto = True

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(160, 160)
        self.label = self.graphics.addLabel(title, row=0, col=0, colspan=2, justify="left")
        self.view = self.graphics.addViewBox(row=1, col=0, lockAspect=True, invertY=True,
                                             enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.pixel_scale = 1.0  # view units per image pixel (raw drawn on the SR grid)
        self.decimation = 1  # image pixels per drawn pixel (zoomed out: fewer to colour)
        self.view.addItem(self.item)
        # saturated pixels (at the detector's or model's maximum) painted red over the image
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(np.array([[0, 0, 0, 0], [255, 0, 0, 255]], np.uint8))
        self.overlay.setZValue(1)
        self.view.addItem(self.overlay)
        self.histogram = pg.HistogramLUTItem(gradientPosition="right", orientation="vertical")
        self.histogram.setImageItem(self.item)
        # the LUT is ours (colour map, gamma), not the gradient's
        self.histogram.gradient.sigGradientChanged.disconnect(self.histogram.gradientChanged)
        self.histogram.gradient.hide()
        self.histogram.setMaximumWidth(90)
        self.graphics.addItem(self.histogram, row=1, col=1)
        # the histogram is recomputed on our schedule, not on every setImage
        self.item.sigImageChanged.disconnect(self.histogram.imageChanged)
        self.histogram.sigLevelsChanged.connect(self._levels_dragged)

        self.colourmap = QtWidgets.QComboBox()
        self.colourmap.addItems(list(COLOURMAPS))
        self.colourmap.setCurrentText(colourmap)
        self.gamma = QtWidgets.QDoubleSpinBox()
        self.gamma.setRange(0.1, 5.0)
        self.gamma.setSingleStep(0.1)
        self.gamma.setValue(1.0)
        self.gamma.setPrefix("γ ")
        self.ignore_pct = QtWidgets.QDoubleSpinBox()
        self.ignore_pct.setRange(0.0, 10.0)
        self.ignore_pct.setDecimals(2)
        self.ignore_pct.setSingleStep(0.05)
        self.ignore_pct.setValue(0.1)
        self.ignore_pct.setSuffix(" %")
        self.ignore_pct.setToolTip("auto-contrast ignores this percentage at each end")
        self.auto_button = QtWidgets.QPushButton("Auto")
        self.auto_button.setToolTip("set levels once from the percentiles")
        self.continuous = QtWidgets.QCheckBox("cont.")
        self.continuous.setToolTip("keep auto-contrast on (re-evaluated a few times a second)")
        self.continuous.setChecked(True)
        self.saturation = QtWidgets.QCheckBox("sat.")
        self.saturation.setToolTip("paint saturated pixels (detector or model maximum) red")
        self.saturation.setChecked(True)

        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(2, 0, 2, 0)
        for widget in (self.colourmap, self.gamma, self.ignore_pct, self.auto_button,
                       self.continuous, self.saturation):
            bar.addWidget(widget)
        bar.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(bar)

        self.lut = lut_for(colourmap)
        for signal in (self.colourmap.currentTextChanged, self.gamma.valueChanged):
            signal.connect(self._rebuild_lut)
        self.auto_button.clicked.connect(self.auto_contrast)
        self._rebuild_lut()

    # --- image updates ------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, caption: str = "") -> None:
        """Show a new frame (fast path); levels follow auto-contrast only when it is due."""
        data = np.ascontiguousarray(image)
        self.image = data
        now = time.monotonic()
        due = now - self._last_histogram_s >= HISTOGRAM_PERIOD_S
        if self._need_auto or (due and self.continuous.isChecked()):
            self.levels = percentile_levels(data, self.ignore_pct.value())
            self._need_auto = False
        self.item.setImage(self._decimated(data), autoLevels=False, levels=self.levels,
                           lut=self.lut)
        self._mark_saturation(data)
        if due:
            self._last_histogram_s = now
            self._refresh_histogram()
        if caption and due:  # a label re-layout per frame costs more than the image
            self.label.setText(f"{self.title}  <span style='color:#9ab'>{caption}</span>")
        self.updates += 1

    def _mark_saturation(self, data: np.ndarray) -> None:
        """Overlay the pixels at the saturation value (cleared when there are none)."""
        if self.saturation_value is None or not self.saturation.isChecked():
            if self.saturated_px:
                self.overlay.clear()
                self.saturated_px = 0
            return
        mask = data >= self.saturation_value
        count = int(np.count_nonzero(mask))
        if count:
            self.overlay.setImage(mask.view(np.uint8), autoLevels=False, levels=(0, 1))
        elif self.saturated_px:
            self.overlay.clear()
        self.saturated_px = count

    def auto_contrast(self) -> None:
        """Set levels once from the current image's percentiles."""
        if self.image is None:
            self._need_auto = True
            return
        self.levels = percentile_levels(self.image, self.ignore_pct.value())
        self.item.setLevels(self.levels)
        self._refresh_histogram()

    def set_levels(self, low: float, high: float) -> None:
        """Fixed levels (turns continuous auto-contrast off)."""
        if not high > low:
            raise ValueError(f"upper level {high} must exceed lower level {low}")
        self.continuous.setChecked(False)
        self.levels = (float(low), float(high))
        self.item.setLevels(self.levels)
        self._refresh_histogram()

    def _refresh_histogram(self) -> None:
        self.histogram.blockSignals(True)
        try:
            self.histogram.imageChanged(autoLevel=False)
            self.histogram.setLevels(*self.levels)
        finally:
            self.histogram.blockSignals(False)

    def _levels_dragged(self, histogram: pg.HistogramLUTItem) -> None:
        low, high = histogram.getLevels()
        if high > low:
            self.continuous.setChecked(False)
            self.levels = (float(low), float(high))

    def _rebuild_lut(self) -> None:
        self.lut = lut_for(self.colourmap.currentText(), self.gamma.value())
        self.item.setLookupTable(self.lut)

    def _decimated(self, data: np.ndarray) -> np.ndarray:
        """Every k-th pixel when k image pixels fall on one screen pixel (as Fiji zoomed out).

        A 1024 x 1024 SR image shown 500 px wide then costs a quarter of the colouring; the
        levels, histogram, saturation overlay and snapshots still use every pixel.
        """
        units_per_screen_px = self.view.viewPixelSize()[0]
        k = max(1, int(units_per_screen_px / self.pixel_scale)) if units_per_screen_px else 1
        if k != self.decimation:
            self.decimation = k
            self.item.setTransform(QtGui.QTransform.fromScale(self.pixel_scale * k,
                                                              self.pixel_scale * k))
        if k == 1:
            return data
        return np.ascontiguousarray(data[::k, ::k])

    def set_pixel_scale(self, scale: float) -> None:
        """Draw each image pixel ``scale`` units wide, so a raw view lines up with a 2x SR view."""
        self.pixel_scale = scale
        self.decimation = 1
        self.item.setTransform(QtGui.QTransform.fromScale(scale, scale))
        self.overlay.setTransform(QtGui.QTransform.fromScale(scale, scale))

    def rendered_rgb(self) -> np.ndarray | None:
        """The displayed frame as (Y, X, 3) uint8 (levels, gamma, LUT, saturation): snapshots."""
        if self.image is None:
            return None
        low, high = self.levels
        scaled = np.clip((self.image.astype(np.float32) - low) / (high - low), 0.0, 1.0)
        index = np.round(scaled * (len(self.lut) - 1)).astype(np.intp)
        rgb = self.lut[index]
        if self.saturation_value is not None and self.saturation.isChecked():
            rgb[self.image >= self.saturation_value] = SATURATION_RGB
        return np.ascontiguousarray(rgb)

    def settings(self) -> dict[str, object]:
        """What persists between sessions."""
        return {"colourmap": self.colourmap.currentText(), "gamma": self.gamma.value(),
                "ignore_pct": self.ignore_pct.value(), "continuous": self.continuous.isChecked(),
                "saturation": self.saturation.isChecked()}

    def apply_settings(self, values: dict[str, object]) -> None:
        """Restore :meth:`settings` output (unknown or bad values are ignored with a log line)."""
        try:
            if values.get("colourmap") in COLOURMAPS:
                self.colourmap.setCurrentText(str(values["colourmap"]))
            if "gamma" in values:
                self.gamma.setValue(float(values["gamma"]))  # type: ignore[arg-type]
            if "ignore_pct" in values:
                self.ignore_pct.setValue(float(values["ignore_pct"]))  # type: ignore[arg-type]
            for key, box in (("continuous", self.continuous), ("saturation", self.saturation)):
                if key in values:
                    box.setChecked(str(values[key]).lower() in ("true", "1"))
        except (TypeError, ValueError) as exc:
            logger.warning("%s: ignoring stored view settings %s: %s", self.title, values, exc)


def link_views(panels: list[ImagePanel], linked: bool) -> None:
    """Link (or unlink) pan/zoom of image views; SR views are 2x the raw grid, so link ranges."""
    first = panels[0].view
    for panel in panels[1:]:
        panel.view.setXLink(first if linked else None)
        panel.view.setYLink(first if linked else None)

