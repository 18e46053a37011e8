"""The live window as the GUI tests open it: a real acquisition process on the emulated rig."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pyqtgraph.Qt import QtCore, QtWidgets


@pytest.fixture(scope="session")
def open_live_window() -> Callable[..., object]:
    """``open(qapp, folder, size_px=64, screen=(1280, 720))`` -> a shown `LiveWindow` with its
    own acquisition process (emulated rig, ``size_px`` frames, Wiener, 20 %, 10 ms, runs saved
    under ``folder/runs``); closing it never asks."""
    from gui.app import apply_dark_theme
    from gui.host_link import HostLink, HostOptions
    from gui.main_window import LiveWindow

    def open_window(qapp: QtWidgets.QApplication, folder: Path, size_px: int = 64,
                    screen: tuple[int, int] = (1280, 720)) -> LiveWindow:
        apply_dark_theme(qapp)
        settings = QtCore.QSettings(str(folder / "settings.ini"),
                                    QtCore.QSettings.Format.IniFormat)
        link = HostLink.start(HostOptions(size_px=(size_px, size_px), live_interval_s=0.05),
                              folder=folder / "host")
        window = LiveWindow(link, settings)
        editor = window.editor
        editor.roi_width.setValue(size_px)
        editor.roi_height.setValue(size_px)
        editor.reconstruction.setCurrentText("Wiener")
        editor.folder.setText(str(folder / "runs"))
        editor.powers[0].setValue(20.0)
        editor.exposures[0].setValue(10.0)
        window.close_without_asking = True  # no modal question in tests
        window.resize(*screen)
        window.show()
        window.activateWindow()
        return window

    return open_window
