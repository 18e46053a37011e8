"""The dark theme: WCAG 2.1 AA contrast for text and controls, measured on what Qt draws."""

from __future__ import annotations

import numpy as np
import pytest
from pyqtgraph.Qt import QtGui, QtWidgets

from gui.app import THEME, THEME_PAIRS, apply_dark_theme, contrast_ratio


def test_contrast_ratio_matches_wcag_reference_values() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)


@pytest.mark.parametrize(("foreground", "background", "minimum"), THEME_PAIRS)
def test_theme_pairs_pass_aa(foreground: str, background: str, minimum: float) -> None:
    ratio = contrast_ratio(THEME[foreground], THEME[background])
    assert ratio >= minimum, f"{foreground} on {background}: {ratio:.2f} < {minimum}"


def _pixels(widget: QtWidgets.QWidget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    bits = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return bits.reshape(image.height(), image.bytesPerLine())[:, :3 * image.width()].reshape(
        image.height(), image.width(), 3)


def _best_contrast(pixels: np.ndarray, background: str) -> float:
    colours = {"#{:02x}{:02x}{:02x}".format(*(int(v) for v in p)) for p in pixels.reshape(-1, 3)}
    return max(contrast_ratio(c, background) for c in colours)


def test_unchecked_box_and_spin_arrows_are_visible(qapp: QtWidgets.QApplication) -> None:
    apply_dark_theme(qapp)
    box = QtWidgets.QCheckBox("")
    box.resize(box.sizeHint())
    # the unchecked indicator's outline stands out from the window (3:1 for UI components)
    assert _best_contrast(_pixels(box), THEME["window"]) >= 3.0
    spin = QtWidgets.QSpinBox()
    spin.setRange(0, 10)
    spin.setValue(5)
    spin.resize(80, spin.sizeHint().height())
    arrows = _pixels(spin)[:, -14:-2]  # the up/down buttons at the right edge
    assert _best_contrast(arrows, THEME["button"]) >= 3.0
