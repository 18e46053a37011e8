"""IMC-SR three-colour composite: one colour, visibility and levels per separated structure."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from acquisition.run_file import IMC_DEFAULT_CHANNEL_NAMES
from gui.contrast import composite_levels, composite_rgb

# captions until the stream reports the running model's `channel_names`: the default IMC-SR
# model's structures, in its output order
CHANNEL_NAMES: tuple[str, ...] = IMC_DEFAULT_CHANNEL_NAMES
COLOURS: dict[str, tuple[int, int, int]] = {
    "magenta": (255, 0, 255), "green": (0, 255, 0), "cyan": (0, 200, 255),
    "red": (255, 40, 40), "yellow": (255, 230, 0), "blue": (60, 90, 255), "grey": (200, 200, 200),
}
DEFAULT_COLOURS = ("magenta", "green", "cyan")
AUTO_PERIOD_S = 0.3


class CompositePanel(QtWidgets.QWidget):
    """Additive RGB composite of a (3, Y, X) IMC-SR result; the channel captions are the
    model's structure names (`channel_names`, later `set_channel_names` from the stream)."""

    def __init__(
        self,
        parent: QtWidgets.QWidget | None = None,
        channel_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(parent)
        names = tuple(CHANNEL_NAMES if channel_names is None else channel_names)
        if len(names) != len(DEFAULT_COLOURS):
            raise ValueError(f"channel_names={list(names)}: the composite shows 3 channels")
        self.channels: np.ndarray | None = None
        self.names = list(names)
        self.carries_signal = [True, True, True]  # auto-contrast stretches only these
        self.levels: list[tuple[float, float]] = [(0.0, 1.0)] * 3
        self.updates = 0
        self._last_auto_s = 0.0
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(160, 160)
        self.label = self.graphics.addLabel("IMC-SR composite", row=0, col=0, justify="left")
        self.view = self.graphics.addViewBox(row=1, col=0, lockAspect=True, invertY=True,
                                             enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        # what stands in for the composite (e.g. 'IMC-SR starting'): a label above the view,
        # so it is never drawn outside the view's range
        self.placeholder = QtWidgets.QLabel("IMC-SR off", wordWrap=True, objectName="note")
        self.view.sigRangeChangedManually.connect(self._user_moved)
        self.view.sigResized.connect(self._resized)
        self.auto_fit = True
        self.fit_follower = False  # linked to the SR view, which fits both
        self.visible: list[QtWidgets.QCheckBox] = []
        self.colours: list[QtWidgets.QComboBox] = []
        self.auto: list[QtWidgets.QCheckBox] = []
        self.highs: list[QtWidgets.QDoubleSpinBox] = []
        rows = QtWidgets.QGridLayout()
        rows.setContentsMargins(2, 0, 2, 0)
        for i, name in enumerate(names):
            show = QtWidgets.QCheckBox(name, checked=True)
            colour = QtWidgets.QComboBox()
            colour.addItems(list(COLOURS))
            colour.setCurrentText(DEFAULT_COLOURS[i])
            auto = QtWidgets.QCheckBox("auto", checked=True)
            # Qt properties as keyword arguments, applied in order (range before value)
            high = QtWidgets.QDoubleSpinBox(decimals=3, minimum=0.001, maximum=1e6,
                                            prefix="max ", value=1.0)
            high.valueChanged.connect(lambda value, i=i: self._manual_high(i, value))
            for col, widget in enumerate((show, colour, auto, high)):
                rows.addWidget(widget, i, col)
            for signal in (show.toggled, colour.currentTextChanged):
                signal.connect(self._redraw)
            self.visible.append(show)
            self.colours.append(colour)
            self.auto.append(auto)
            self.highs.append(high)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(rows)

    def set_channels(self, channels: np.ndarray, caption: str = "") -> None:
        """Show a new (3, Y, X) IMC result."""
        data = np.ascontiguousarray(channels, dtype=np.float32)
        if data.ndim != 3 or data.shape[0] != 3:
            raise ValueError(f"IMC composite needs (3, Y, X) channels, got {data.shape}")
        self.channels = data
        now = time.monotonic()
        if now - self._last_auto_s >= AUTO_PERIOD_S or self.updates == 0:
            self._last_auto_s = now
            levels, carries = composite_levels(data, 0.1)
            self.carries_signal = carries
            for i in range(3):
                self.visible[i].setToolTip("" if carries[i] else
                                           "no signal: shown on the brightest channel's scale")
                self._caption(i)
                if self.auto[i].isChecked():
                    self.levels[i] = levels[i]
                    self.highs[i].blockSignals(True)
                    self.highs[i].setValue(self.levels[i][1])
                    self.highs[i].blockSignals(False)
        self.placeholder.setVisible(False)
        self._redraw()
        if caption:
            self.label.setText(f"IMC-SR composite  <span style='color:#9ab'>{caption}</span>")
        self.updates += 1

    def rgb(self) -> np.ndarray | None:
        """The composite as shown: (Y, X, 3) uint8."""
        if self.channels is None:
            return None
        return composite_rgb(self.channels, [COLOURS[c.currentText()] for c in self.colours],
                             self.levels, [v.isChecked() for v in self.visible])

    def _redraw(self) -> None:
        image = self.rgb()
        if image is not None:
            self.item.setImage(image, autoLevels=False, levels=(0, 255))

    def _manual_high(self, index: int, value: float) -> None:
        self.auto[index].setChecked(False)
        low = self.levels[index][0]
        self.levels[index] = (low, max(value, low + 1e-6))
        self._redraw()

    def set_channel_names(self, names: Sequence[str]) -> None:
        """Label the three checkboxes with the IMC-SR model's structure names (the names the
        stream carries; a list of another length is ignored)."""
        if len(names) == len(self.visible):
            self.names = [str(n) for n in names]
            for i in range(len(self.visible)):
                self._caption(i)

    def _caption(self, index: int) -> None:
        text = self.names[index] + ("" if self.carries_signal[index] else " (no signal)")
        if self.visible[index].text() != text:
            self.visible[index].setText(text)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The structure names shown, in channel order."""
        return tuple(self.names)

    def set_message(self, text: str) -> None:
        """Text shown while there is no composite (e.g. 'IMC-SR off')."""
        self.placeholder.setText(text)
        self.placeholder.setVisible(self.channels is None)

    def clear(self) -> None:
        """Forget the current composite (IMC-SR turned off or restarting)."""
        self.channels = None
        self.updates = 0
        self.item.clear()
        self.placeholder.setVisible(True)

    def fit(self) -> None:
        """Show the whole composite, and keep doing so on resize (until panned/zoomed)."""
        self.auto_fit = True
        if self.channels is not None and not self.fit_follower:
            self.view.autoRange(padding=0.0)

    def _user_moved(self, *_args: object) -> None:
        self.auto_fit = False

    def _resized(self, *_args: object) -> None:
        if self.auto_fit and self.channels is not None:
            QtCore.QTimer.singleShot(0, self.fit)
