"""The live-session window on the emulator: real acquisition process, real worker, real Qt.

One window (and one acquisition process) serves the module: starting them costs seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from pyqtgraph.Qt import QtWidgets
from pytestqt.qtbot import QtBot

from acquisition.protocol import Protocol
from gui.main_window import LiveWindow

SIZE_PX = 64
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def window(qapp: QtWidgets.QApplication, tmp_path_factory: pytest.TempPathFactory,
           open_live_window: Callable[..., LiveWindow]) -> Iterator[LiveWindow]:
    win = open_live_window(qapp, tmp_path_factory.mktemp("gui"), SIZE_PX, (1200, 800))
    assert win.start_live()
    yield win
    win.close()
    link = win.link
    assert link.process is not None
    assert link.process.poll() is not None, "acquisition process still running after close"


def test_raw_and_sr_images_appear_and_change(window: LiveWindow, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.sr_message is not None, timeout=WAIT_MS)
    first_raw, first_sr = window.raw_message, window.sr_message
    assert first_raw.array.shape == (SIZE_PX, SIZE_PX)  # the raw view gets one frame
    qtbot.waitUntil(lambda: window.set_message is not None, timeout=WAIT_MS)
    assert window.set_message.array.shape == (9, SIZE_PX, SIZE_PX)  # full sets at 2 Hz
    assert window.sr_message.array.dtype == np.uint16  # SR as stored, with its scale
    assert window.sr_message.header.info["sr_scale"] == pytest.approx(1 / 65535)
    assert window.sr_panel.image is not None
    assert window.sr_panel.image.shape == (2 * SIZE_PX, 2 * SIZE_PX)
    qtbot.waitUntil(lambda: window.sr_message.header.time_point > first_sr.header.time_point
                    and window.raw_message.header.time_point > first_raw.header.time_point,
                    timeout=WAIT_MS)
    assert not np.array_equal(window.raw_message.array, first_raw.array)
    assert not np.array_equal(window.sr_message.array, first_sr.array)
    # the SR image has structure (not flat), and the view shows it with explicit levels
    sr = window.sr_panel.image
    assert sr is not None
    assert float(sr.std()) > 0.01 * float(abs(sr).max())
    low, high = window.sr_panel.levels
    assert high > low
    assert window.sr_panel.item.lut.shape == (256, 3)


def test_status_reports_live_rates(window: LiveWindow, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.link.state.status.get("sr_fps", 0) > 0, timeout=WAIT_MS)
    status = window.link.state.status
    assert status["state"] == "live"
    assert status["camera_fps"] > 9  # at least one 9-frame set per second
    assert 0 < status["latency_ms"] < 30_000
    window._show_status()
    assert window.status.values["camera_fps"].text().endswith("frames/s")
    assert window.status.values["photons"].text() != "–"


def _photon_count(window: LiveWindow, qtbot: QtBot, power_pct: float, exposure_ms: float) -> float:
    """Set power and exposure in the panel; the count of a raw set acquired a second later."""
    window.editor.powers[0].setValue(power_pct)
    window.editor.exposures[0].setValue(exposure_ms)
    changed_wall_s = time.time()

    def fresh() -> bool:  # photon counts come from the full sets
        if window.set_message is None:
            return False
        head = window.set_message.header
        return (head.info.get("acquired_s", 0.0) > changed_wall_s + 1.0
                and abs(head.exposure_ms - exposure_ms) < 1e-6)

    qtbot.waitUntil(fresh, timeout=WAIT_MS)
    window._last_photon_s = 0.0  # recompute from the next raw set
    qtbot.waitUntil(lambda: window._last_photon_s > 0 and fresh(), timeout=WAIT_MS)
    return window.photon_count


def test_laser_power_changes_measured_photon_count(window: LiveWindow, qtbot: QtBot) -> None:
    low = _photon_count(window, qtbot, 20.0, 10.0)
    high = _photon_count(window, qtbot, 80.0, 10.0)
    # the emulator's signal is linear in power: 4x power, about 4x photons (noise, background)
    assert 3.0 < high / low < 5.0, (low, high)


def test_exposure_changes_measured_photon_count(window: LiveWindow, qtbot: QtBot) -> None:
    short = _photon_count(window, qtbot, 20.0, 10.0)
    long = _photon_count(window, qtbot, 20.0, 30.0)
    assert 2.3 < long / short < 3.7, (short, long)
    _photon_count(window, qtbot, 20.0, 10.0)


def test_snapshot_writes_tiff_data_and_png(window: LiveWindow, tmp_path: Path,
                                           qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.sr_panel.image is not None, timeout=WAIT_MS)
    files = window.snapshot(tmp_path)
    tifs = sorted(p for p in files if p.suffix == ".tif")
    pngs = sorted(p for p in files if p.suffix == ".png")
    assert [p.name.rsplit("_", 1)[1] for p in tifs] == ["raw.tif", "sr.tif"]
    assert len(pngs) == 2 and all(p.stat().st_size > 100 for p in pngs)
    sr = tifffile.imread(next(p for p in tifs if p.name.endswith("sr.tif")))
    assert sr.shape == (2 * SIZE_PX, 2 * SIZE_PX) and sr.dtype == np.float32


def test_wide_field_raw_view_is_published_on_request(window: LiveWindow, qtbot: QtBot) -> None:
    from acquisition.wire import Kind

    qtbot.waitUntil(lambda: window.raw_message is not None, timeout=WAIT_MS)
    window.raw_source.setCurrentIndex(1)  # the acquisition process now sends the mean
    qtbot.waitUntil(lambda: window.raw_message.header.kind is Kind.WIDEFIELD, timeout=WAIT_MS)
    assert window.raw_message.array.shape == (SIZE_PX, SIZE_PX)
    window.raw_source.setCurrentIndex(0)
    qtbot.waitUntil(lambda: window.raw_message.header.kind is Kind.RAW_SET, timeout=WAIT_MS)


def test_live_trust_trend_and_overlay_from_the_emulated_run(window: LiveWindow,
                                                           qtbot: QtBot) -> None:
    """The worker's live trust records (every 10th SR image) reach the trend, and the newest
    map the SR view's overlay."""
    qtbot.waitUntil(lambda: len(window.trust_panel.history.get(0, ())) >= 2, timeout=WAIT_MS)
    points = list(window.trust_panel.history[0])
    assert all(b.time_point > a.time_point for a, b in itertools.pairwise(points))
    for point in points:  # Wiener SIM of the emulator: explained by its raw data
        assert 0.5 < point.raw_chi2 < 3.0, point
        assert point.resolution_scaled_pearson > 0.9, point
    times, chi2 = window.trust_panel.curves[0][0].getData()
    assert list(times)[:2] == [p.time_point for p in points][:2]
    assert list(chi2)[:2] == pytest.approx([p.raw_chi2 for p in points][:2])
    window.trust_panel.overlay_box.setChecked(True)
    try:
        panel = window.sr_panel
        assert panel.map_item.isVisible()
        assert panel.map_values is not None and panel.map_values.shape == (8, 8)  # 64 px / 8
        np.testing.assert_array_equal(panel.map_values, window.qc_message.array)
        rect = panel.map_rect
        assert (rect.width(), rect.height()) == (2 * SIZE_PX, 2 * SIZE_PX)
    finally:
        window.trust_panel.overlay_box.setChecked(False)
    assert not window.sr_panel.map_item.isVisible()


def test_record_produces_valid_hdf5(window: LiveWindow, qtbot: QtBot) -> None:
    window.editor.timepoints.setValue(4)
    before = set(Path(window.editor.folder.text()).glob("*.h5"))
    shown: list[tuple[int, float, float]] = []  # what the trust trend received
    add_record = window.trust_panel.add_record

    def keep(channel: int, name: str, time_point: int, trust: dict) -> object:
        point = add_record(channel, name, time_point, trust)
        shown.append((time_point, point.raw_chi2, point.resolution_scaled_pearson))
        return point

    window.trust_panel.add_record = keep  # type: ignore[method-assign]
    assert window.start_record()
    assert not window.editor.isEnabled()  # no protocol edits while recording
    done = "recording done: 4 time points (completed)"
    qtbot.waitUntil(lambda: any(done in t for t in _texts(window)), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.link.state.status.get("state") == "live", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.record_button.isChecked(), timeout=5_000)
    assert window.editor.isEnabled()
    files = set(Path(window.editor.folder.text()).glob("*.h5")) - before
    assert len(files) == 1
    path = next(iter(files))
    # done: the file, sealed, with Open folder; the outcome in words, not a dict
    qtbot.waitUntil(lambda: window.record_state.text().startswith("done: 4 time point(s)"),
                    timeout=5_000)
    assert "file sealed" in window.record_state.text() and str(path) in window.record_state.text()
    assert window.last_file == str(path) and window.open_folder_button.isEnabled()
    line = next(t for t in _texts(window) if done in t)
    assert "events: run end 1" in line and "{" not in line
    with h5py.File(files.pop(), "r") as h5:
        raw = h5["raw"]
        assert raw.shape == (4, 1, 9, SIZE_PX, SIZE_PX) and raw.dtype == np.uint16
        assert raw[()].reshape(36, -1).max(axis=1).min() > 100  # every frame written
        assert len(h5["sr"]) == 1
        qc_chi2 = h5["qc/raw_chi2"][:, 0]
        qc_pearson = h5["qc/resolution_scaled_pearson"][:, 0]
    window.trust_panel.add_record = add_record  # type: ignore[method-assign]
    # the window's trend showed the run file's trust record (t = 0: every 10th set is checked)
    assert np.isfinite(qc_chi2[0]) and not np.isfinite(qc_chi2[1:]).any()
    assert (0, pytest.approx(float(qc_chi2[0]), rel=1e-5),
            pytest.approx(float(qc_pearson[0]), rel=1e-5)) in shown


def test_record_with_the_autopilot_box_runs_the_autopilot(window: LiveWindow,
                                                          qtbot: QtBot) -> None:
    """The form's autopilot box reaches the recording: every time point gets an 'autopilot'
    row in /events and the window shows the autopilot's state."""
    from acquisition import run_file

    window.editor.timepoints.setValue(4)
    window.editor.autopilots[0].setChecked(True)
    window.editor.autopilot_targets[0].setValue(2.0)
    before = set(Path(window.editor.folder.text()).glob("*.h5"))
    try:
        assert window.start_record()
        qtbot.waitUntil(lambda: window.autopilot_dock.isVisible(), timeout=WAIT_MS)
        assert window.status.values["autopilot"].text().startswith("488 nm ")
        done = "recording done: 4 time points (completed)"
        qtbot.waitUntil(lambda: sum(done in t for t in _texts(window)) >= 1
                        and not window.record_button.isChecked(), timeout=WAIT_MS)
    finally:
        window.editor.autopilots[0].setChecked(False)
    path = (set(Path(window.editor.folder.text()).glob("*.h5")) - before).pop()
    with h5py.File(path, "r") as h5:
        channel = json.loads(h5.attrs["protocol"])["channels"][0]
        events = [(e["kind"].decode(), int(e["time_point"]), e["detail"].decode())
                  for e in h5[run_file.EVENTS][()]]
    assert channel["autopilot"]["target_error"] == 2.0
    rows = [(t, json.loads(detail)) for kind, t, detail in events if kind == "autopilot"]
    assert [t for t, _ in rows] == [0, 1, 2, 3]
    assert all(row["photon_count_e"] > 0 and row["reason"] for _, row in rows)
    window.autopilot_dock.hide()


@pytest.mark.slow  # a second recording (its own worker start-up): opt in with --runslow
def test_record_stop_closes_a_valid_file(window: LiveWindow, qtbot: QtBot) -> None:
    window.editor.timepoints.setValue(100_000)
    before = set(Path(window.editor.folder.text()).glob("*.h5"))
    assert window.start_record()
    qtbot.waitUntil(lambda: window.link.state.status.get("frames_written", 0) >= 27,
                    timeout=WAIT_MS)
    # while recording the views keep showing the run: raw sets and SR images
    raw_updates, sr_updates = window.raw_panel.updates, window.sr_panel.updates
    qtbot.waitUntil(lambda: window.raw_panel.updates > raw_updates + 2
                    and window.sr_panel.updates > sr_updates + 2, timeout=WAIT_MS)
    assert window.link.state.status["state"] == "recording"
    assert window.link.state.status["file_path"].endswith(".h5")
    window.record_button.click()  # stop
    qtbot.waitUntil(lambda: any("recording done" in t and "(stopped)" in t
                                for t in _texts(window)), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.record_button.isChecked(), timeout=WAIT_MS)
    line = next(t for t in _texts(window) if "(stopped)" in t)
    n = int(line.split("recording done: ")[1].split(" time points")[0])
    assert 3 <= n < 100_000
    files = set(Path(window.editor.folder.text()).glob("*.h5")) - before
    with h5py.File(files.pop(), "r") as h5:  # closed cleanly: opens without recovery
        raw = h5["raw"]
        assert raw.shape[0] == n
        assert raw[()].reshape(n * 9, -1).max(axis=1).min() > 100
    window.editor.timepoints.setValue(100)


def _texts(window: LiveWindow) -> list[str]:
    return window.events.log.toPlainText().splitlines()


def test_worker_crash_shows_error_and_window_keeps_running(window: LiveWindow,
                                                           qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.link.state.status.get("worker_pid") is not None
                    and window.link.state.status.get("worker_ready"), timeout=WAIT_MS)
    pid = int(window.link.state.status["worker_pid"])
    errors_before = len(window.events.errors)
    ticks_before = window.ticks
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: any("worker" in e for e in window.events.errors[errors_before:]),
                    timeout=WAIT_MS)
    assert window.events.banner.isVisibleTo(window)
    assert "worker" in window.events.banner.text()
    # the control timer keeps firing (10 ticks/s): not frozen
    qtbot.waitUntil(lambda: window.ticks > ticks_before + 10, timeout=5_000)
    # the supervisor restarts the worker and SR resumes
    restarted = window.sr_message.header.time_point if window.sr_message else -1
    qtbot.waitUntil(lambda: window.sr_message is not None
                    and window.sr_message.header.time_point > restarted + 2, timeout=WAIT_MS)


def test_settings_persist(window: LiveWindow) -> None:
    window.editor.exposures[0].setValue(12.5)
    window.sr_panel.gamma.setValue(0.7)
    window.editor.set_autopilot(0, {"target_error": 1.7, "max_power_pct": 30.0})
    window.trust_panel.overlay_box.setChecked(True)
    window.save_settings()
    window.editor.exposures[0].setValue(10.0)
    window.sr_panel.gamma.setValue(1.0)
    window.editor.set_autopilot(0, None)
    window.trust_panel.overlay_box.setChecked(False)
    window.restore_settings()
    assert window.editor.exposures[0].value() == pytest.approx(12.5)
    assert window.sr_panel.gamma.value() == pytest.approx(0.7)
    autopilot = window.editor.protocol(Path("x.h5")).channels[0].autopilot
    assert autopilot is not None
    assert (autopilot.target_error, autopilot.max_power_pct) == (1.7, 30.0)
    assert window.trust_panel.overlay_box.isChecked()
    window.editor.exposures[0].setValue(10.0)
    window.editor.set_autopilot(0, None)
    window.trust_panel.overlay_box.setChecked(False)


def test_protocol_save_and_load_round_trip(window: LiveWindow, tmp_path: Path) -> None:
    window.editor.powers[0].setValue(37.5)
    path = tmp_path / "protocol.toml"
    assert window.save_protocol(path)
    loaded = Protocol.from_toml(path, output=str(tmp_path / "other.h5"))
    assert loaded.channels[0].power_pct == pytest.approx(37.5)
    assert loaded.channels[0].reconstruction == "wiener"
    assert loaded.roi is not None and loaded.roi.width == SIZE_PX
    window.editor.powers[0].setValue(20.0)
    assert window.load_protocol(path)
    assert window.editor.powers[0].value() == pytest.approx(37.5)
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "sim"\n[[channels]]\nlaser_nm = 9999\noutput = "x.h5"\n')
    errors = len(window.events.errors)
    assert not window.load_protocol(bad)
    assert "laser_nm" in window.events.errors[errors]
    window.editor.powers[0].setValue(20.0)


@pytest.mark.slow  # restarts the worker with the IMC-SR stage: opt in with --runslow
def test_imc_sr_composite_end_to_end(window: LiveWindow, qtbot: QtBot) -> None:
    from inference.worker import BUNDLED_DIR

    if not (BUNDLED_DIR / "imcsr.pt").is_file():
        pytest.skip("the bundled IMC-SR model (imcsr) is not installed")
    window.editor.imc.setChecked(True)
    try:
        assert window.start_live()
        qtbot.waitUntil(lambda: window.composite.channels is not None, timeout=WAIT_MS)
        channels = window.composite.channels
        assert channels is not None and channels.shape == (3, 2 * SIZE_PX, 2 * SIZE_PX)
        flat = channels.reshape(3, -1)
        correlation = np.corrcoef(flat)
        assert np.all(correlation[np.triu_indices(3, 1)] < 0.99)  # three different images
        rgb = window.composite.rgb()
        assert rgb is not None and rgb.shape == (2 * SIZE_PX, 2 * SIZE_PX, 3)
    finally:
        window.editor.imc.setChecked(False)
        window.start_live()


@pytest.mark.slow  # restarts the worker with the bundled network: opt in with --runslow
def test_auto_fallback_to_wiener_warns_end_to_end(window: LiveWindow, qtbot: QtBot) -> None:
    """`auto` with the bundled network on the emulator: the worker's Wiener fallback reaches the
    window as a warning naming the reason; back on Wiener SIM the warning goes."""
    from inference.worker import BUNDLED_DIR

    if not (BUNDLED_DIR / "dfcan-sim.pt").is_file():
        pytest.skip("the bundled dfcan-sim model is not installed")
    window.editor.set_reconstruction("auto")
    try:
        assert window.start_live()
        qtbot.waitUntil(lambda: 0 in window.fallbacks, timeout=WAIT_MS)
        reason = window.fallbacks[0]
        assert reason and reason in window.fallback_warning.text()
        assert window.fallback_warning.isVisibleTo(window)
        assert "SR by Wiener SIM instead of the network from time point" in \
            window.events.log.toPlainText()
    finally:
        window.editor.set_reconstruction("wiener")
        window.start_live()
    qtbot.waitUntil(lambda: not window.fallbacks, timeout=WAIT_MS)
    assert window.fallback_warning.isHidden()
