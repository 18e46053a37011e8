"""The live window in a real X server (Xvfb, xcb platform), as a microscopist uses it.

These tests need QT_QPA_PLATFORM=xcb and a display: tests/gui/test_xvfb.py starts them under
`xvfb-run` (the whole suite otherwise runs offscreen, where keyboard focus, window geometry and
the platform plugin's system libraries are never exercised). Each window has its own real
acquisition process and inference worker on the emulator (64 px frames).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import pytest
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets
from pytestqt.qtbot import QtBot

from acquisition import run_file
from gui.host_link import HostLink
from gui.main_window import FINISH_GRACE_S, LiveWindow

if os.environ.get("QT_QPA_PLATFORM") != "xcb" or not os.environ.get("DISPLAY"):
    pytest.skip("real-window tests run under xvfb-run with QT_QPA_PLATFORM=xcb "
                "(tests/gui/test_xvfb.py starts them)", allow_module_level=True)

SIZE_PX = 64
WAIT_MS = 120_000
SMALL_SCREEN = (1280, 720)


@pytest.fixture(scope="module")
def window(qapp: QtWidgets.QApplication, tmp_path_factory: pytest.TempPathFactory,
           open_live_window: Callable[..., LiveWindow]) -> Iterator[LiveWindow]:
    win = open_live_window(qapp, tmp_path_factory.mktemp("xcb"), SIZE_PX, SMALL_SCREEN)
    yield win
    if win.isVisible():
        win.close()


def _activate(qtbot: QtBot, window: QtWidgets.QWidget) -> None:
    """Make ``window`` the active window (keyboard shortcuts need one; Xvfb has no window
    manager to give focus on show)."""
    def active() -> bool:
        if QtWidgets.QApplication.activeWindow() is not window:
            window.raise_()
            window.activateWindow()
            return False
        return True

    qtbot.waitUntil(active, timeout=10_000)


def _image_fill(panel: object) -> float:
    """Fraction of the view's limiting side that the whole image covers on screen."""
    view = panel.view  # type: ignore[attr-defined]
    item = panel.item  # type: ignore[attr-defined]
    shown = view.mapViewToDevice(item.mapRectToView(item.boundingRect())).boundingRect()
    return float(max(shown.width() / view.width(), shown.height() / view.height()))


def test_launch_live_and_layout_at_1280x720(window: LiveWindow, qtbot: QtBot) -> None:
    assert QtGui.QGuiApplication.platformName() == "xcb"
    qtbot.waitExposed(window)
    assert (window.width(), window.height()) == SMALL_SCREEN
    _activate(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_L, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert window.live_button.isChecked()  # Ctrl+L: Live
    qtbot.waitUntil(lambda: window.sr_panel.image is not None
                    and window.raw_panel.image is not None, timeout=WAIT_MS)
    qtbot.wait(500)  # a few more frames and a status round
    # the emulated camera is held to its 10 ms exposure: at most 100 frames/s, as shown
    qtbot.waitUntil(lambda: (window.link.state.status.get("camera_fps") or 0) > 0,
                    timeout=WAIT_MS)
    assert window.link.state.status["camera_fps"] <= 1000.0 / 10.0 * 1.1
    # views are usable, not thumbnails: each image view gets a real share of the screen
    for panel in (window.raw_panel, window.sr_panel):
        view = panel.graphics
        assert view.width() >= 250 and view.height() >= 220, (panel.title, view.size())
        assert _image_fill(panel) > 0.9, panel.title
    # the form is readable: every protocol row at least its natural height, nothing cut
    for widget in (window.editor.powers[0], window.editor.exposures[0], window.editor.mode,
                   window.editor.folder):
        assert widget.height() >= widget.minimumSizeHint().height(), widget
    labels = list(window.status.values.values())
    tops = sorted(label.geometry().top() for label in labels)
    line_px = labels[0].fontMetrics().height()
    assert all(b - a >= line_px for a, b in itertools.pairwise(tops))
    shot = os.environ.get("LIVESIM_SCREENSHOT")
    if shot:
        qtbot.waitUntil(lambda: window.pattern.result is not None, timeout=WAIT_MS)
        qtbot.wait(1500)
        assert window.grab().save(shot)


def test_resize_refits_the_views(window: LiveWindow, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.sr_panel.image is not None, timeout=WAIT_MS)
    window.resize(1920, 1060)
    qtbot.waitUntil(lambda: window.sr_panel.graphics.width() > 500, timeout=5_000)
    qtbot.wait(300)
    assert _image_fill(window.sr_panel) > 0.9
    big = window.sr_panel.graphics.size()
    window.resize(*SMALL_SCREEN)
    qtbot.waitUntil(lambda: window.sr_panel.graphics.width() < big.width(), timeout=5_000)
    qtbot.wait(300)
    assert _image_fill(window.sr_panel) > 0.9
    assert _image_fill(window.raw_panel) > 0.9
    # a zoom by the user is kept; Fit views (Ctrl+0) brings the whole image back
    window.sr_panel.view.scaleBy((0.25, 0.25))
    window.sr_panel.view.sigRangeChangedManually.emit([True, True])  # as a wheel zoom does
    window.resize(1300, 740)  # a resize (and new images) keep the user's zoom
    qtbot.wait(500)
    assert not window.raw_panel.auto_fit
    assert _image_fill(window.sr_panel) > 2.0
    window.actions["fit"].trigger()
    qtbot.wait(100)
    assert 0.9 < _image_fill(window.sr_panel) < 1.1


def test_imc_sr_toggled_during_live_shows_the_composite(window: LiveWindow,
                                                        qtbot: QtBot) -> None:
    from inference.worker import BUNDLED_DIR

    if not (BUNDLED_DIR / "imcsr.pt").is_file():
        pytest.skip("the bundled IMC-SR model (imcsr) is not installed")
    assert window.live_button.isChecked()
    window.editor.imc.setChecked(True)  # no Live restart by hand
    assert window.composite.isVisible()
    assert "IMC-SR starting" in window.composite.placeholder.text()
    qtbot.waitUntil(lambda: window.composite.channels is not None, timeout=WAIT_MS)
    assert window.composite.channels.shape == (3, 2 * SIZE_PX, 2 * SIZE_PX)
    assert not window.composite.placeholder.isVisible()
    rgb = window.composite.rgb()
    assert rgb is not None and int(rgb.max()) > 0
    window.editor.imc.setChecked(False)
    assert not window.composite.isVisible()


def test_geometry_and_splitters_are_restored(window: LiveWindow, qtbot: QtBot,
                                             tmp_path: Path) -> None:
    window.resize(1400, 800)
    qtbot.waitUntil(lambda: window.width() == 1400, timeout=5_000)
    window.main_splitter.setSizes([420, 980])
    qtbot.wait(100)
    window.save_settings()
    other = LiveWindow(HostLink(None, f"ipc://{tmp_path}/display"), window.settings)
    try:
        other.show()
        qtbot.waitExposed(other)
        assert other.size() == QtCore.QSize(1400, 800)
        assert abs(other.main_splitter.sizes()[0] - window.main_splitter.sizes()[0]) <= 2
    finally:
        other.close_without_asking = True
        other.close()
    window.resize(*SMALL_SCREEN)


def test_ctrl_q_quits(window: LiveWindow, qtbot: QtBot) -> None:
    process = window.link.process
    assert process is not None
    _activate(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)
    assert process.poll() is not None, "acquisition process still running after Ctrl+Q"


def test_close_during_recording_leaves_a_sealed_file(
    qapp: QtWidgets.QApplication, qtbot: QtBot, tmp_path: Path,
    open_live_window: Callable[..., LiveWindow],
) -> None:
    win = open_live_window(qapp, tmp_path, SIZE_PX, SMALL_SCREEN)
    qtbot.waitExposed(win)
    win.editor.timepoints.setValue(100_000)
    _activate(qtbot, win)
    qtbot.keyClick(win, QtCore.Qt.Key.Key_R, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert win.record_button.isChecked()  # Ctrl+R: Record
    qtbot.waitUntil(lambda: win.link.state.status.get("frames_written", 0) >= 27,
                    timeout=WAIT_MS)
    assert win.link.state.status["state"] == "recording"
    qtbot.waitUntil(lambda: "recording: time point" in win.record_state.text(), timeout=5_000)
    path = Path(win.link.state.status["file_path"])
    _activate(qtbot, win)
    qtbot.keyClick(win, QtCore.Qt.Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    # the window stays up, saying what it does, until the file is sealed
    assert win.finishing and win.isVisible()
    assert win._finish_dialog is not None and win._finish_dialog.isVisible()
    qtbot.waitUntil(lambda: not win.isVisible(),
                    timeout=int((win.finish_limit_s + FINISH_GRACE_S + 10) * 1000))
    assert win.finish_outcome.get("sealed") is True, (win.finish_outcome,
                                                      win.events.log.toPlainText())
    assert win.finish_outcome["path"] == str(path)
    assert win.link.process is not None and win.link.process.poll() is not None
    with h5py.File(path, "r") as h5:  # opens without `livesim recover`
        assert run_file.FAULT_RESERVE not in h5
        kinds = [k.decode() if isinstance(k, bytes) else str(k)
                 for k in h5[run_file.EVENTS]["kind"][()]]
        assert "run_end" in kinds
        n = h5["raw"].shape[0]
        assert 3 <= n < 100_000
        assert h5["raw"][()].reshape(n * 9, -1).max(axis=1).min() > 100  # every frame written
        sr_written = sum(h5["sr"][name].shape[0] for name in h5["sr"])
        skipped = kinds.count("sr_skip")
        assert sr_written + skipped >= n  # every time point: SR image or a recorded skip


def test_close_while_sr_lags_seals_within_the_limit(
    qapp: QtWidgets.QApplication, qtbot: QtBot, tmp_path: Path,
    open_live_window: Callable[..., LiveWindow],
) -> None:
    """IMC-SR on (SR trails acquisition on 2 cores) and a short limit: the file is still
    sealed, SR missing at the limit recorded as skipped, within the limit plus the grace."""
    from inference.worker import BUNDLED_DIR

    if not (BUNDLED_DIR / "imcsr.pt").is_file():
        pytest.skip("the bundled IMC-SR model (imcsr) is not installed")
    win = open_live_window(qapp, tmp_path, SIZE_PX, SMALL_SCREEN)
    qtbot.waitExposed(win)
    win.finish_limit_s = 2.0
    win.editor.imc.setChecked(True)
    win.editor.timepoints.setValue(100_000)
    assert win.start_record()
    qtbot.waitUntil(lambda: win.link.state.status.get("frames_written", 0) >= 9 * 8,
                    timeout=WAIT_MS)
    path = Path(win.link.state.status["file_path"])
    win.close()  # the window's close button
    assert win.finishing
    qtbot.waitUntil(lambda: not win.isVisible(),
                    timeout=int((win.finish_limit_s + FINISH_GRACE_S + 10) * 1000))
    assert win.finish_outcome.get("sealed") is True, (win.finish_outcome,
                                                      win.events.log.toPlainText())
    with h5py.File(path, "r") as h5:
        assert run_file.FAULT_RESERVE not in h5
        log = [(k.decode() if isinstance(k, bytes) else str(k), int(t))
               for k, t in zip(h5[run_file.EVENTS]["kind"][()],
                               h5[run_file.EVENTS]["time_point"][()], strict=True)]
        assert log[-1][0] == "run_end"
        has_sr = h5["timestamps/sr_written"][:, 0] == 1
        skipped = {t for k, t in log if k == "sr_skip"}
        assert all(has_sr[t] or t in skipped for t in range(len(has_sr)))


def test_close_while_the_recording_starts(
    qapp: QtWidgets.QApplication, qtbot: QtBot, tmp_path: Path,
    open_live_window: Callable[..., LiveWindow],
) -> None:
    """Quit right after Record (worker still loading): no run file, the window closes."""
    win = open_live_window(qapp, tmp_path, SIZE_PX, SMALL_SCREEN)
    qtbot.waitExposed(win)
    win.editor.timepoints.setValue(100_000)
    assert win.start_record()
    win.close()
    assert win.finishing
    qtbot.waitUntil(lambda: not win.isVisible(),
                    timeout=int((win.finish_limit_s + FINISH_GRACE_S + 10) * 1000))
    outcome = win.finish_outcome
    path = Path(win._record_path)
    if path.exists():  # the first time point won the race: then it must be sealed
        assert outcome.get("sealed") is True, outcome
    else:
        assert outcome.get("problem") == "no file", outcome
    assert win.link.process is not None and win.link.process.poll() is not None
