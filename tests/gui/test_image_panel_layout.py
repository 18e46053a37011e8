"""An image view's layout settles at every size: no resize / re-fit / axis-width feedback loop."""

from __future__ import annotations

import numpy as np
from pyqtgraph.Qt import QtWidgets
from pytestqt.qtbot import QtBot

from gui.image_panel import ImagePanel


def test_fitted_view_settles_at_every_size(qtbot: QtBot) -> None:
    """The view re-fits its image on resize and its µm axis labels follow the fitted range.
    When the left axis's text space also shrank with its labels, views about 340-370 px wide
    flipped between two layouts for ever ('1' vs '1.5' labels: 7.6 vs 19.1 px of text), the
    repaint loop that hung test_window once the protocol form grew a column."""
    panel = ImagePanel("SR", saturation_value=1.0)
    qtbot.addWidget(panel)
    panel.set_image(np.random.default_rng(0).random((128, 128), np.float32))
    panel.set_um_per_unit(0.0313)  # the window's SR grid: 62.6 nm raw pixels / 2
    panel.setMinimumSize(100, 100)
    panel.resize(500, 500)
    panel.show()
    app = QtWidgets.QApplication.instance()
    assert app is not None
    for _ in range(20):
        app.processEvents()
    extra_w = panel.width() - panel.graphics.width()
    extra_h = panel.height() - panel.graphics.height()
    changes = [0]
    panel.view.sigRangeChanged.connect(lambda *_a: changes.__setitem__(0, changes[0] + 1))
    restless = []
    for width_px in range(336, 372):
        for height_px in (340,):
            panel.resize(width_px + extra_w, height_px + extra_h)
            for _ in range(30):  # settle: resize -> re-fit -> axis text -> layout
                app.processEvents()
            changes[0] = 0
            for _ in range(30):
                app.processEvents()
            if changes[0]:
                restless.append((width_px, height_px, changes[0]))
    assert not restless, f"view range still changing at (w px, h px, changes): {restless[:5]}"
