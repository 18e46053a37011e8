"""One live image view: fast drawing, histogram, levels, gamma, percentile auto-contrast.

uint16 / uint8 frames (camera ADU, SR stored as uint16 x scale) are drawn through one 32-bit
colour table per (levels, LUT, saturation): one lookup per drawn pixel into an RGB32 QImage,
which Qt scales without converting (pyqtgraph's Indexed8 path costs Qt a conversion per paint).
Other dtypes take pyqtgraph's own path with explicit levels and the 256-entry uint8 LUT. No
per-frame auto-levels: continuous auto-contrast is evaluated every LEVELS_PERIOD_S and applied
only when the levels move by more than LEVELS_HYSTERESIS of their span; the histogram plot is
refreshed every HISTOGRAM_PERIOD_S (each histogram repaint costs ~5 ms of CPU).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyqtgraph as pg
from pyqtgraph import functions as pg_functions
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from gui.contrast import (
    COLOURMAPS,
    SATURATION_RGB,
    colour_table_rgb32,
    histogram_counts,
    log_power_spectrum,
    lut_for,
    lut_indices,
    nice_length,
    percentile_levels,
)
from gui.display_stages import stage

logger = logging.getLogger(__name__)

LEVELS_PERIOD_S = 0.3  # continuous auto-contrast, captions, saturation count
LEVELS_HYSTERESIS = 0.02  # fraction of the level span a new auto level must move
HISTOGRAM_PERIOD_S = 1.0  # the histogram plot
# decimate when zoomed out as long as the drawn image keeps >= 1 / 1.1 of the screen's pixels
DECIMATION_SLACK = 1.1
FFT_PERIOD_S = 0.3  # the spectrum view is recomputed at most this often


class TableImageItem(pg.ImageItem):
    """ImageItem that draws 2-D uint8/uint16 data through a cached RGB32 colour table.

    ``display_levels`` (in shown units: stored x ``value_scale``), the LUT and
    ``saturation_value`` define the table; it is rebuilt only when one of them changes.
    Anything else (float images) is drawn by pyqtgraph's own path.
    """

    def __init__(self, paint_stage: str = "image_paint") -> None:
        super().__init__(axisOrder="row-major")
        self.paint_stage = paint_stage  # the display stage its paint runs in
        self.value_scale = 1.0
        self.display_levels: tuple[float, float] | None = None
        self.saturation_value: float | None = None
        self._table: np.ndarray | None = None
        self._table_key: tuple[object, ...] = ()
        self._rgb32: np.ndarray | None = None
        self.images_painted = 0  # distinct images that reached the screen
        self._painted_image: np.ndarray | None = None

    def colour_table(self, dtype: np.dtype) -> np.ndarray | None:
        """The current table for ``dtype`` data (None when the item has no levels or LUT)."""
        lut = self.lut
        levels = self.display_levels
        if (levels is None or not isinstance(lut, np.ndarray) or lut.dtype != np.uint8
                or lut.ndim != 2 or lut.shape[1] != 3 or not levels[1] > levels[0]):
            return None
        n_values = 1 << (8 * np.dtype(dtype).itemsize)
        key = (n_values, levels, self.value_scale, self.saturation_value, lut.tobytes())
        if self._table is None or key != self._table_key:
            self._table = colour_table_rgb32(n_values, lut, levels, self.value_scale,
                                             self.saturation_value)
            self._table_key = key
        return self._table

    def paint(self, painter: QtGui.QPainter, *args: object) -> None:
        """Draw (colouring first when the image changed), as a display stage."""
        with stage(self.paint_stage):
            super().paint(painter, *args)
        if self.image is not None and self.image is not self._painted_image:
            self._painted_image = self.image
            self.images_painted += 1

    def render(self) -> None:
        """Colour the image into a reused RGB32 buffer (falls back to pyqtgraph's render)."""
        image = self.image
        table = None
        if image is not None and image.ndim == 2 and image.dtype in (np.uint8, np.uint16):
            table = self.colour_table(image.dtype)
        if image is None or table is None or image.size == 0:
            super().render()
            return
        if self._rgb32 is None or self._rgb32.shape != image.shape:
            self._rgb32 = np.empty(image.shape, np.uint32)
        np.take(table, image, out=self._rgb32, mode="clip")
        self.qimage = pg_functions.ndarray_to_qimage(self._rgb32,
                                                     QtGui.QImage.Format.Format_RGB32)
        self._renderRequired = False
        self._unrenderable = False


class StagedLayoutWidget(pg.GraphicsLayoutWidget):
    """A GraphicsLayoutWidget whose paint events (the scene around the image included) run as
    the ``view_paint`` display stage, so `livesim bench gui` can say where Qt's time goes."""

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt override)
        """Paint the exposed part of the scene."""
        with stage("view_paint"):
            super().paintEvent(event)


class ImagePanel(QtWidgets.QWidget):
    """A titled image view with its histogram/levels and a row of contrast controls."""

    def __init__(self, title: str, colourmap: str = "grey", saturation_value: float | None = None,
                 parent: QtWidgets.QWidget | None = None, value_unit: str = "",
                 spectrum: bool = False, paint_stage: str = "image_paint") -> None:
        super().__init__(parent)
        self.title = title
        self.value_unit = value_unit  # the cursor readout's unit ('ADU'; '' for SR)
        self.um_per_unit = 0.0  # µm per view unit (0: unknown; axes then read in pixels)
        self._last_fft_s = -1e9
        self._scale_key: tuple[float, float] = (0.0, 0.0)
        self.saturation_value = saturation_value  # detector / model maximum; None: no overlay
        self.saturated_px = 0  # pixels at the saturation value (integer frames: <= 0.3 s old)
        self.image: np.ndarray | None = None  # as received (e.g. uint16 SR)
        self.value_scale = 1.0  # shown value per stored unit (uint16 SR: 1 / 65535)
        self.levels: tuple[float, float] = (0.0, 1.0)  # in shown units
        self.updates = 0
        self._last_histogram_s = -1e9
        self._last_levels_s = -1e9
        self._need_auto = True

        self.graphics = StagedLayoutWidget()
        self.graphics.setMinimumSize(160, 160)
        # the view fills every pixel with its background: Qt need not repaint the widgets
        # behind it on each new image (-0.3 to 0.6 ms per raw + SR update pair)
        for widget in (self.graphics, self.graphics.viewport()):
            widget.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.label = self.graphics.addLabel(title, row=0, col=0, colspan=3, justify="left")
        self.view = self.graphics.addViewBox(row=1, col=1, lockAspect=True, invertY=True,
                                             enableMenu=False)
        # µm axes: drawn again only when the view's range changes, not per image. The left
        # axis's text space only grows: if it also shrank (pyqtgraph's default), a view that
        # re-fits its image on resize could loop for ever at some widths (narrower tick labels
        # -> narrower axis -> wider view -> new fitted range -> wider labels -> ...)
        self.axes = {side: pg.AxisItem(side) for side in ("left", "bottom")}
        for side, axis in self.axes.items():
            axis.setStyle(autoReduceTextSpace=False)
            axis.linkToView(self.view)
            axis.setLabel("µm" if side == "bottom" else "")
            self.graphics.addItem(axis, row=1 if side == "left" else 2,
                                  col=0 if side == "left" else 1)
        self.item = TableImageItem(paint_stage)
        self.item.saturation_value = saturation_value
        self.pixel_scale = 1.0  # view units per image pixel (raw drawn on the SR grid)
        self.decimation = 1  # image pixels per drawn pixel (zoomed out: fewer to colour)
        self.view.addItem(self.item)
        self.auto_fit = True  # re-fit the whole image on resize until the user pans or zooms
        self.fit_follower = False  # linked to a view that does the fitting for both
        self.view.sigRangeChangedManually.connect(self._user_moved)
        self.view.sigResized.connect(self._resized)
        # saturated pixels (at the detector's or model's maximum) painted red over the image
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(np.array([[0, 0, 0, 0], [255, 0, 0, 255]], np.uint8))
        self.overlay.setZValue(1)
        self.overlay.setVisible(False)  # shown only while it has pixels: a visible empty item
        self.view.addItem(self.overlay)  # still costs Qt's scene walk ~0.1 ms per paint
        # an optional value map over part of the image (the SR view's trust map): RGBA colours
        # on a rectangle in view units, its values in the cursor readout, a legend in the corner
        self.map_item = pg.ImageItem(axisOrder="row-major")
        self.map_item.setZValue(2)
        self.map_item.setVisible(False)
        self.view.addItem(self.map_item)
        self.map_values: np.ndarray | None = None
        self.map_rect = QtCore.QRectF()
        self.map_name = ""
        self.map_legend = pg.TextItem(anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 170))
        self.map_legend.setParentItem(self.view)  # view pixels: never part of the fitted range
        self.map_legend.setPos(4, 4)
        self.map_legend.setVisible(False)
        self.histogram = pg.HistogramLUTItem(gradientPosition="right", orientation="vertical")
        self.histogram.setImageItem(self.item)
        # the LUT is ours (colour map, gamma), not the gradient's
        self.histogram.gradient.sigGradientChanged.disconnect(self.histogram.gradientChanged)
        self.histogram.gradient.hide()
        self.histogram.setMaximumWidth(90)
        self.graphics.addItem(self.histogram, row=1, col=2)
        self.scale_bar: pg.ScaleBar | None = None
        # the spectrum (FFT) of the image instead of the image, at most every FFT_PERIOD_S
        self.fft_item = pg.ImageItem(axisOrder="row-major")
        self.fft_item.setVisible(False)
        self.view.addItem(self.fft_item)
        self.fft_lut = lut_for("grey")
        # Qt properties as keyword arguments, applied in order (range before value)
        self.fft = QtWidgets.QCheckBox("FFT", toolTip="show the image's power spectrum (log scale)")
        self.fft.setVisible(spectrum)
        self.fft.toggled.connect(self._fft_toggled)
        self.readout = QtWidgets.QLabel(" ", objectName="note",
                                        toolTip="cursor position and pixel value")
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        # the histogram is recomputed on our schedule, not on every setImage
        self.item.sigImageChanged.disconnect(self.histogram.imageChanged)
        self.histogram.sigLevelsChanged.connect(self._levels_dragged)

        self.colourmap = QtWidgets.QComboBox()
        self.colourmap.addItems(list(COLOURMAPS))
        self.colourmap.setCurrentText(colourmap)
        self.gamma = QtWidgets.QDoubleSpinBox(minimum=0.1, maximum=5.0, singleStep=0.1,
                                              value=1.0, prefix="γ ")
        self.ignore_pct = QtWidgets.QDoubleSpinBox(
            minimum=0.0, maximum=10.0, decimals=2, singleStep=0.05, value=0.1, suffix=" %",
            toolTip="auto-contrast ignores this percentage at each end")
        self.auto_button = QtWidgets.QPushButton(
            "Auto", toolTip="set levels once from the percentiles")
        self.continuous = QtWidgets.QCheckBox(
            "cont.", checked=True,
            toolTip="keep auto-contrast on (re-evaluated a few times a second)")
        self.saturation = QtWidgets.QCheckBox(
            "sat.", checked=True, toolTip="paint saturated pixels (detector or model maximum) red")

        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(2, 0, 2, 0)
        for widget in (self.colourmap, self.gamma, self.ignore_pct, self.auto_button,
                       self.continuous, self.saturation, self.fft):
            bar.addWidget(widget)
        bar.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)
        layout.addLayout(bar)

        self.lut = lut_for(colourmap)
        for signal in (self.colourmap.currentTextChanged, self.gamma.valueChanged):
            signal.connect(self._rebuild_lut)
        self.auto_button.clicked.connect(self.auto_contrast)
        self._rebuild_lut()

    # --- image updates ------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, caption: str = "", value_scale: float = 1.0) -> None:
        """Show a new frame (fast path); levels follow auto-contrast only when it is due.

        ``value_scale``: shown value per stored unit, e.g. uint16 SR images carry 1 / 65535.
        """
        if not value_scale > 0.0:
            raise ValueError(f"value_scale must be positive, got {value_scale}")
        data = np.ascontiguousarray(image)
        self.image = data
        if value_scale != self.value_scale:
            self.value_scale = float(value_scale)
            self.item.value_scale = self.value_scale
            self.histogram.axis.setScale(self.value_scale)  # histogram reads in shown units
        now = time.monotonic()
        due = now - self._last_levels_s >= LEVELS_PERIOD_S
        moved = False
        if self._need_auto or (due and self.continuous.isChecked()):
            levels = self._shown(percentile_levels(data, self.ignore_pct.value()))
            moved = self._need_auto or self._levels_moved(levels)
            if moved:
                self.levels = levels
            self._need_auto = False
        self.item.display_levels = self.levels
        self.item.saturation_value = self._saturation_shown()
        self.item.setImage(self._decimated(data), autoLevels=False,
                           levels=self._stored(self.levels), lut=self.lut)
        if self.fft.isChecked() and now - self._last_fft_s >= FFT_PERIOD_S:
            self._last_fft_s = now
            self._show_spectrum()
        self._mark_saturation(data, due)
        if due:
            self._last_levels_s = now
            if caption:  # a label re-layout per frame costs more than the image
                self.label.setText(f"{self.title}  <span style='color:#9ab'>{caption}</span>")
        if now - self._last_histogram_s >= HISTOGRAM_PERIOD_S:
            self._last_histogram_s = now
            self._refresh_histogram()
        elif moved:
            self._show_levels_on_histogram()
        self.updates += 1

    def _levels_moved(self, levels: tuple[float, float]) -> bool:
        """True when auto levels differ from the current ones by more than the hysteresis
        (percentiles jitter from frame to frame; each change recolours and repaints)."""
        tolerance = LEVELS_HYSTERESIS * (self.levels[1] - self.levels[0])
        return (abs(levels[0] - self.levels[0]) > tolerance
                or abs(levels[1] - self.levels[1]) > tolerance)

    def values(self) -> np.ndarray | None:
        """The current image in shown units (float32 when it arrived scaled): snapshots."""
        if self.image is None or self.value_scale == 1.0:
            return self.image
        return self.image.astype(np.float32) * np.float32(self.value_scale)

    def _shown(self, stored: tuple[float, float]) -> tuple[float, float]:
        return stored[0] * self.value_scale, stored[1] * self.value_scale

    def _stored(self, shown: tuple[float, float]) -> tuple[float, float]:
        return shown[0] / self.value_scale, shown[1] / self.value_scale

    def _saturation_shown(self) -> float | None:
        return self.saturation_value if self.saturation.isChecked() else None

    def _mark_saturation(self, data: np.ndarray, due: bool = True) -> None:
        """Count the pixels at the saturation value; the colour table paints integer frames
        (their count is refreshed when ``due``, with the histogram), an overlay float ones."""
        threshold = self._saturation_shown()
        count = 0
        if threshold is not None and not due and data.dtype.kind != "f":
            return  # painted by the colour table; the count is at most LEVELS_PERIOD_S old
        if threshold is not None:
            stored = threshold / self.value_scale
            if data.size and float(data.max()) >= stored:  # one pass when nothing saturates
                mask = data >= stored
                count = int(np.count_nonzero(mask))
                if data.dtype.kind == "f":
                    self.overlay.setImage(mask.view(np.uint8), autoLevels=False, levels=(0, 1))
                    self.overlay.setVisible(True)
        if (not count or data.dtype.kind != "f") and self.overlay.image is not None:
            self.overlay.clear()
            self.overlay.setVisible(False)
        self.saturated_px = count

    def auto_contrast(self) -> None:
        """Set levels once from the current image's percentiles."""
        if self.image is None:
            self._need_auto = True
            return
        self.levels = self._shown(percentile_levels(self.image, self.ignore_pct.value()))
        self._apply_levels()

    def set_levels(self, low: float, high: float) -> None:
        """Fixed levels (turns continuous auto-contrast off)."""
        if not high > low:
            raise ValueError(f"upper level {high} must exceed lower level {low}")
        self.continuous.setChecked(False)
        self.levels = (float(low), float(high))
        self._need_auto = False  # fixed before the first frame: keep them
        self._apply_levels()

    def _apply_levels(self) -> None:
        self.item.display_levels = self.levels
        self.item.setLevels(self._stored(self.levels))
        self._refresh_histogram()

    def _refresh_histogram(self) -> None:
        if self.image is not None:
            self.histogram.plot.setData(*histogram_counts(self.image))
        self._show_levels_on_histogram()

    def _show_levels_on_histogram(self) -> None:
        self.histogram.blockSignals(True)
        try:
            self.histogram.setLevels(*self._stored(self.levels))
        finally:
            self.histogram.blockSignals(False)

    def _levels_dragged(self, histogram: pg.HistogramLUTItem) -> None:
        low, high = histogram.getLevels()
        if high > low:
            self.continuous.setChecked(False)
            self.levels = self._shown((float(low), float(high)))
            self.item.display_levels = self.levels
            self.item.update()

    def _rebuild_lut(self) -> None:
        self.lut = lut_for(self.colourmap.currentText(), self.gamma.value())
        self.item.setLookupTable(self.lut)

    def _decimated(self, data: np.ndarray) -> np.ndarray:
        """Every k-th pixel when k image pixels fall on one screen pixel (as Fiji zoomed out).

        A 1024 x 1024 SR image shown 500 px wide then costs a quarter of the colouring (Qt
        draws unsmoothed, so it would skip those pixels anyway); the levels, saturation count
        and snapshots still use every pixel.
        """
        units_per_screen_px = self.view.viewPixelSize()[0]
        k = (max(1, int(DECIMATION_SLACK * units_per_screen_px / self.pixel_scale))
             if units_per_screen_px else 1)
        if k != self.decimation:
            self.decimation = k
            self.item.setTransform(QtGui.QTransform.fromScale(self.pixel_scale * k,
                                                              self.pixel_scale * k))
        if k == 1:
            return data
        if data.dtype in (np.uint8, np.uint16):  # the colour table reads the strided view
            return data[::k, ::k]
        return np.ascontiguousarray(data[::k, ::k])

    # --- spectrum, scale, cursor --------------------------------------------------------------

    def _fft_toggled(self, on: bool) -> None:
        self.item.setVisible(not on)
        self.fft_item.setVisible(on)
        if on:
            self._show_spectrum()

    def _show_spectrum(self) -> None:
        if self.image is None:
            return
        power = log_power_spectrum(self.image)
        low, high = np.percentile(power[:: max(1, power.shape[0] // 128),
                                        :: max(1, power.shape[1] // 128)], (50.0, 99.9))
        self.fft_item.setImage(power, autoLevels=False,
                               levels=(float(low), float(max(high, low + 1e-3))),
                               lut=self.fft_lut)
        self.fft_item.setTransform(QtGui.QTransform.fromScale(self.pixel_scale,
                                                              self.pixel_scale))

    def set_saturation_value(self, value: float | None) -> None:
        """The detector's (or model's) maximum, e.g. 2**bit_depth - 1 ADU for the camera."""
        if value != self.saturation_value:
            self.saturation_value = value
            self.item.saturation_value = self._saturation_shown()
            if self.image is not None:
                self._mark_saturation(self.image)
                self.item.update()

    def set_um_per_unit(self, um_per_unit: float) -> None:
        """µm per view unit: the axes read in µm and a scale bar shows a round length."""
        if self.image is None or not um_per_unit > 0:
            return
        width_um = self.image.shape[1] * self.pixel_scale * um_per_unit
        key = (um_per_unit, width_um)
        if key == self._scale_key:
            return
        self._scale_key = key
        self.um_per_unit = um_per_unit
        for axis in self.axes.values():
            axis.setScale(um_per_unit)
        length_um = nice_length(width_um)
        if self.scale_bar is None:
            self.scale_bar = pg.ScaleBar(length_um / um_per_unit, offset=(-12, -12))
            self.scale_bar.setParentItem(self.view)
        self.scale_bar.size = length_um / um_per_unit
        self.scale_bar.text.setText(f"{length_um:g} µm")
        self.scale_bar.updateBar()

    def show_map(self, values: np.ndarray, rgba: np.ndarray,
                 rect: tuple[float, float, float, float], name: str, legend_html: str) -> None:
        """Draw ``rgba`` (my, mx, 4) over ``rect`` (x, y, width, height in view units); the
        cursor readout adds ``name`` and the block's value from ``values`` (my, mx)."""
        self.map_values = np.asarray(values, dtype=np.float32)
        self.map_rect = QtCore.QRectF(*rect)
        self.map_name = name
        self.map_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.map_item.setRect(self.map_rect)
        self.map_item.setVisible(True)
        self.map_legend.setHtml(legend_html)
        self.map_legend.setVisible(True)

    def hide_map(self) -> None:
        """Remove the value map (its values leave the readout too)."""
        self.map_values = None
        self.map_item.setVisible(False)
        self.map_legend.setVisible(False)

    def map_value(self, x_unit: float, y_unit: float) -> float | None:
        """The map's value at a view position (None: no map there)."""
        values, rect = self.map_values, self.map_rect
        if values is None or not rect.contains(QtCore.QPointF(x_unit, y_unit)):
            return None
        row = int((y_unit - rect.y()) / rect.height() * values.shape[0])
        col = int((x_unit - rect.x()) / rect.width() * values.shape[1])
        return float(values[min(row, values.shape[0] - 1), min(col, values.shape[1] - 1)])

    def cursor_text(self, x_unit: float, y_unit: float) -> str:
        """'x 1.23 µm  y 4.56 µm  [row, col]  value' at a view position ('' outside)."""
        image = self.image
        if image is None:
            return ""
        col, row = int(x_unit // self.pixel_scale), int(y_unit // self.pixel_scale)
        if not (0 <= row < image.shape[0] and 0 <= col < image.shape[1]):
            return ""
        value = float(image[row, col]) * self.value_scale
        shown = f"{value:.0f}" if self.value_scale == 1.0 and image.dtype.kind in "ui" \
            else f"{value:.4g}"
        where = (f"x {x_unit * self.um_per_unit:.2f} µm  y {y_unit * self.um_per_unit:.2f} µm"
                 if self.um_per_unit > 0 else f"x {x_unit:.1f}  y {y_unit:.1f}")
        unit = f" {self.value_unit}" if self.value_unit else ""
        mapped = self.map_value(x_unit, y_unit)
        extra = f"  {self.map_name} {mapped:.3g}" if mapped is not None else ""
        return f"{where}  [{row}, {col}]  value {shown}{unit}{extra}"

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if not self.view.sceneBoundingRect().contains(scene_pos):
            return
        point = self.view.mapSceneToView(scene_pos)
        text = self.cursor_text(point.x(), point.y())
        self.readout.setText(text or " ")

    def fit(self) -> None:
        """Show the whole image, and keep doing so on resize (until the user pans/zooms)."""
        self.auto_fit = True
        if self.image is not None and not self.fit_follower:
            self.view.autoRange(padding=0.0)

    def _user_moved(self, *_args: object) -> None:
        self.auto_fit = False

    def _resized(self, *_args: object) -> None:
        if self.auto_fit and self.image is not None:
            QtCore.QTimer.singleShot(0, self.fit)

    def set_pixel_scale(self, scale: float) -> None:
        """Draw each image pixel ``scale`` units wide, so a raw view lines up with a 2x SR view."""
        self.pixel_scale = scale
        self.decimation = 1
        self.item.setTransform(QtGui.QTransform.fromScale(scale, scale))
        self.overlay.setTransform(QtGui.QTransform.fromScale(scale, scale))

    def rendered_rgb(self) -> np.ndarray | None:
        """The displayed frame as (Y, X, 3) uint8 (levels, gamma, LUT, saturation): snapshots."""
        values = self.values()
        if values is None:
            return None
        rgb = self.lut[lut_indices(values.astype(np.float32, copy=False), self.levels,
                                   len(self.lut))]
        threshold = self._saturation_shown()
        if threshold is not None:
            rgb[values >= threshold] = SATURATION_RGB
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

