"""View pieces without the acquisition process: contrast, LUTs, IMC composite, pattern check,
rates, protocol TOML, the event log relay."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from acquisition.protocol import Protocol
from acquisition.rate_meter import RateMeter
from acquisition.session_host import EventLog, LogRecordRelay
from gui.composite_panel import CompositePanel
from gui.contrast import composite_rgb, make_lut, percentile_levels
from gui.image_panel import ImagePanel
from gui.pattern_check import check_patterns
from gui.protocol_editor import protocol_to_toml


def test_percentile_levels_ignore_hot_pixels() -> None:
    rng = np.random.default_rng(1)
    image = rng.uniform(100, 200, size=(256, 256)).astype(np.float32)
    image[::37, ::41] = 60_000  # hot pixels: ~0.07 % of the image
    low, high = percentile_levels(image, ignore_pct=0.1)
    assert 100 <= low < 101 and 199 < high <= 200
    _, high0 = percentile_levels(image, ignore_pct=0.0)
    assert high0 == 60_000
    with pytest.raises(ValueError, match="ignore_pct"):
        percentile_levels(image, 60.0)


def test_lut_gamma_and_saturation() -> None:
    lut = make_lut((0, 255, 0), gamma=0.5, saturation=True)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and lut.flags.c_contiguous
    assert tuple(lut[-1]) == (255, 0, 0)  # clipped pixels in red
    assert lut[64, 1] == round(255 * (64 / 255) ** 0.5)  # gamma lifts the dim end
    assert lut[64, 0] == 0 and lut[64, 2] == 0
    assert tuple(make_lut()[-1]) == (255, 255, 255)


def test_image_panel_fast_path_levels_and_saturation(qtbot: object) -> None:
    panel = ImagePanel("Raw", saturation_value=65_535)
    image = np.full((64, 64), 100, np.uint16)
    image[10:20, 10:20] = 1000
    image[40, 40] = 65_535  # one saturated camera pixel
    image[41, 41] = 5_000  # bright, above the upper level, but not saturated
    panel.set_levels(100.0, 1000.0)
    panel.set_image(image)
    assert panel.item.lut is panel.lut and panel.item.lut.shape == (256, 3)
    assert tuple(panel.item.levels) == (100.0, 1000.0)
    assert panel.saturated_px == 1
    rgb = panel.rendered_rgb()
    assert rgb is not None
    assert tuple(rgb[40, 40]) == (255, 0, 0)  # saturated: highlighted
    assert tuple(rgb[41, 41]) == (255, 255, 255)  # clipped by the display only: white
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    drawn = drawn_rgb(panel)  # what Qt paints: the colour table, saturation included
    assert np.array_equal(drawn, rgb)
    assert panel.overlay.image is None  # integer frames need no overlay
    panel.saturation.setChecked(False)
    panel.set_image(image)
    assert panel.saturated_px == 0
    assert tuple(panel.rendered_rgb()[40, 40]) == (255, 255, 255)  # type: ignore[index]
    assert tuple(drawn_rgb(panel)[40, 40]) == (255, 255, 255)
    panel.deleteLater()


def drawn_rgb(panel: ImagePanel) -> np.ndarray:
    """The (Y, X, 3) pixels of the QImage the panel's image item paints."""
    from pyqtgraph import functions as pg_functions
    from pyqtgraph.Qt import QtGui

    panel.item.render()
    qimage = panel.item.qimage.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    return pg_functions.ndarray_from_qimage(qimage)[..., :3].copy()


def test_float_frames_keep_the_saturation_overlay(qtbot: object) -> None:
    panel = ImagePanel("SR", saturation_value=1.0)
    image = np.full((32, 32), 0.25, np.float32)
    image[5, 6] = 1.0
    panel.set_levels(0.0, 0.5)
    panel.set_image(image)
    assert panel.saturated_px == 1
    overlay = panel.overlay.image
    assert overlay is not None and int(overlay.sum()) == 1 and overlay[5, 6] == 1
    assert panel.overlay.isVisible()
    image[5, 6] = 0.9
    panel.set_image(image)
    assert panel.saturated_px == 0 and panel.overlay.image is None
    assert not panel.overlay.isVisible()  # an empty overlay costs Qt nothing per paint
    panel.deleteLater()


def test_uint16_sr_with_scale_shows_what_float_sr_showed(qtbot: object) -> None:
    """The display stream's uint16 SR (value x 1/65535 in header info) draws as float SR did."""
    from acquisition import run_file
    from acquisition.wire import Kind, header_for, pack_display, unpack_display

    rng = np.random.default_rng(3)
    sr = rng.random((128, 128), dtype=np.float32) * 0.8
    sr[7, 9] = 1.0  # at the model's maximum: saturated
    stored = run_file.sr_to_stored(sr)
    header = header_for(Kind.SR_RESULT, "r", 1, stored, time_point=1,
                        info={"sr_scale": run_file.SR_SCALE})
    _, message = unpack_display(pack_display("sr", header, stored))
    assert message.array.dtype == np.uint16
    assert message.header.info["sr_scale"] == run_file.SR_SCALE
    as_float = ImagePanel("float", "hot", saturation_value=1.0)
    as_uint16 = ImagePanel("uint16", "hot", saturation_value=1.0)
    for panel in (as_float, as_uint16):
        panel.set_levels(0.1, 0.7)
    as_float.set_image(sr)
    as_uint16.set_image(message.array, value_scale=message.header.info["sr_scale"])
    assert as_uint16.levels == as_float.levels == (0.1, 0.7)
    assert as_uint16.saturated_px == as_float.saturated_px == 1
    shown_float, shown_uint16 = as_float.rendered_rgb(), as_uint16.rendered_rgb()
    assert shown_float is not None and shown_uint16 is not None
    # uint16 rounding (1.5e-5) may move a pixel across a LUT step boundary, never further
    index_step = np.abs(shown_float.astype(int) - shown_uint16.astype(int)).max(axis=2)
    assert np.mean(index_step == 0) > 0.99 and index_step.max() <= 12
    assert tuple(shown_uint16[7, 9]) == (255, 0, 0)
    assert np.array_equal(drawn_rgb(as_uint16), shown_uint16)  # screen == snapshot
    values = as_uint16.values()
    assert values is not None and values.dtype == np.float32
    assert np.abs(values - sr).max() <= 0.5 * run_file.SR_SCALE + 1e-7
    # auto-contrast on uint16 data gives levels in shown units
    as_uint16.auto_contrast()
    low, high = as_uint16.levels
    assert 0.0 <= low < high <= 1.0
    for panel in (as_float, as_uint16):
        panel.deleteLater()


def test_auto_levels_leave_out_the_tapered_edge() -> None:
    image = np.full((100, 100), 0.2, np.float32)  # background of an SR image
    image[:3, :] = 0.0  # a reconstruction's tapered edge
    image[50, 50] = 1.0
    low, _ = percentile_levels(image, ignore_pct=1.0)
    assert low == pytest.approx(0.2)
    low_all, _ = percentile_levels(image, ignore_pct=1.0, margin_fraction=0.0)
    assert low_all == 0.0


def _structures(size_px: int = 32) -> np.ndarray:
    """Ground-truth SR images of three different structures from the emulator."""
    from sim_emulator.microscope import EmulatorConfig, Microscope

    images = [Microscope(EmulatorConfig(size_px=size_px, structure=name, seed=1))
              .ground_truth(0.0).sr for name in ("ccps", "microtubules", "f-actin")]
    return np.stack([im / im.max() for im in images]).astype(np.float32)


def test_imc_composite_shows_three_distinct_channels(qtbot: object) -> None:
    channels = _structures()
    panel = CompositePanel()
    panel.set_channels(channels)
    rgb = panel.rgb()
    assert rgb is not None and rgb.shape == (*channels.shape[1:], 3)
    colours = {"magenta": (1, 0, 1), "green": (0, 1, 0), "cyan": (0, 200 / 255, 1)}
    for i, name in enumerate(("magenta", "green", "cyan")):
        # pixels where this structure alone is bright show its colour, not the others'
        alone = (channels[i] > 0.5) & np.all(np.delete(channels, i, axis=0) < 0.05, axis=0)
        assert alone.sum() >= 3, f"structure {i} has no pixels of its own"
        mean = rgb[alone].mean(axis=0) / 255.0
        expected = np.asarray(colours[name])
        direction = mean / np.linalg.norm(mean)
        assert float(direction @ (expected / np.linalg.norm(expected))) > 0.98, (name, mean)
    panel.visible[1].setChecked(False)  # hide microtubules: no green left anywhere
    hidden = panel.rgb()
    assert hidden is not None
    only_green_pixels = (channels[1] > 0.5) & (channels[2] < 0.05) & (channels[0] < 0.05)
    assert hidden[only_green_pixels].max() < 20
    panel.deleteLater()


def test_composite_rgb_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="one colour"):
        composite_rgb(np.zeros((3, 4, 4)), [(1, 1, 1)], [(0, 1)], [True])


def test_pattern_check_finds_the_emulator_carriers() -> None:
    from sim_emulator.microscope import EmulatorConfig, Microscope

    config = EmulatorConfig(size_px=64, seed=2)
    scope = Microscope(config)
    raw = np.stack([scope.render_frame(0.0, p, 488, 100.0, 10.0) for p in range(9)])
    result = check_patterns(raw, config.optics.pixel_size_nm, config.sensor.offset_adu)
    assert not result.error
    assert len(result.peaks_xy_px) == 6 and len(result.modulations) == 3
    expected_nm = config.patterns.period_nm or 0.0
    if not expected_nm:  # default: 0.9 of the detection cutoff
        expected_nm = 1.0 / (0.9 * config.optics.cutoff_cycles_per_nm)
    for period in result.periods_nm:
        assert period == pytest.approx(expected_nm, rel=0.03)
    assert all(0.3 < m <= 1.2 for m in result.modulations)
    # peaks sit symmetrically about the centre of the shifted spectrum
    centre = np.array([32.0, 32.0])
    peaks = np.asarray(result.peaks_xy_px)
    assert np.allclose(peaks[0::2] - centre, -(peaks[1::2] - centre))


def test_pattern_check_reports_wide_field_input() -> None:
    result = check_patterns(np.zeros((1, 16, 16), np.uint16), 62.6, 100.0)
    assert "SIM raw set" in result.error and not result.peaks_xy_px


def test_rate_meter_counts_over_its_window() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(21):
        meter.add(9, now_s=10.0 + i * 0.1)  # 10 sets/s of 9 frames
    assert meter.rate_per_s(now_s=12.0) == pytest.approx(90.0, rel=0.01)
    assert meter.rate_per_s(now_s=20.0) == 0.0  # nothing lately


def test_protocol_toml_round_trip(tmp_path: Path) -> None:
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "power_pct": 12.5, "exposure_ms": 7.0,
                      "reconstruction": "wiener"},
                     {"laser_nm": 560, "power_pct": 30.0, "exposure_ms": 15.0,
                      "reconstruction": "none"}],
        "mode": "sim", "timepoints": 17, "interval_s": 1.5, "imc": True,
        "roi": {"x": 0, "y": 0, "width": 96, "height": 64},
        "output": str(tmp_path / "a.h5")})
    path = tmp_path / "p.toml"
    path.write_text(protocol_to_toml(protocol.model_dump(mode="json")))
    again = Protocol.from_toml(path)
    assert again == protocol


def test_log_records_become_rate_limited_events() -> None:
    events = EventLog()
    relay = LogRecordRelay(events)
    log = logging.getLogger("test.gui.relay")
    log.addHandler(relay)
    log.propagate = False
    try:
        for i in range(5):
            log.warning("saturated frame %d", i)
        log.error("camera stopped")
    finally:
        log.removeHandler(relay)
    texts = [e["text"] for e in events.since(0)]
    assert texts == ["test.gui.relay: saturated frame 0", "test.gui.relay: camera stopped"]
    assert [e["level"] for e in events.since(0)] == ["warning", "error"]
    assert events.since(events.since(0)[-1]["id"]) == []


def test_editor_matches_mode_to_reconstruction(qtbot: object, tmp_path: Path) -> None:
    from gui.protocol_editor import ProtocolEditor

    editor = ProtocolEditor()
    editor.folder.setText(str(tmp_path))
    editor.reconstruction.setCurrentText("DFCAN-SISR")
    protocol = editor.protocol()
    assert protocol.mode == "wf" and protocol.n_patterns == 1
    assert protocol.channels[0].reconstruction == "dfcan-sisr"
    editor.reconstruction.setCurrentText("Wiener")
    assert editor.protocol().mode == "sim"
    assert editor.protocol().output.parent == tmp_path
    editor.deleteLater()


def test_acquisition_process_failure_shows_its_cause(qtbot: QtBot, tmp_path: Path) -> None:
    from gui.host_link import HostLink, HostOptions

    bad = tmp_path / "rig.cfg"
    bad.write_text("Device,Camera,NoSuchLibrary,NoSuchCamera\n")
    events: list[tuple[str, str]] = []
    link = HostLink.start(HostOptions(rig=str(bad)), on_event=lambda *e: events.append(e),
                          folder=tmp_path / "host")
    try:
        def dead() -> bool:
            link.tick()
            return not link.state.alive

        qtbot.waitUntil(dead, timeout=60_000)
        errors = [text for level, text in events if level == "error"]
        assert len(errors) == 1 and "acquisition process exited with code 1" in errors[0]
        assert "NoSuchLibrary" in errors[0] or "rig.cfg" in errors[0], errors[0]
    finally:
        link.close()


def test_attach_reads_the_display_endpoint_from_a_run_file(tmp_path: Path) -> None:
    import h5py

    from acquisition import run_file
    from gui.host_link import display_endpoint_of_run

    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as h5:
        run_file.write_metadata(h5, {"endpoints": {"raw": "ipc:///x/raw",
                                                   "display": "ipc:///x/display"}})
    assert display_endpoint_of_run(path) == "ipc:///x/display"
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as h5:
        run_file.write_metadata(h5, {"protocol": {}})
    with pytest.raises(ValueError, match="no display endpoint"):
        display_endpoint_of_run(bare)
    with pytest.raises(ValueError, match="cannot read"):
        display_endpoint_of_run(tmp_path / "missing.h5")


def test_rig_fault_shows_in_the_window_and_live_goes_on(qtbot: QtBot, tmp_path: Path) -> None:
    from pyqtgraph.Qt import QtCore

    from gui.host_link import HostLink, HostOptions
    from gui.main_window import LiveWindow

    link = HostLink.start(HostOptions(size_px=(32, 32), faults_json='{"drop_frame_every": 40}'),
                          folder=tmp_path / "host")
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    window = LiveWindow(link, settings)
    try:
        window.editor.roi_width.setValue(32)
        window.editor.roi_height.setValue(32)
        window.editor.set_reconstruction("none")  # no worker: the rig alone
        window.editor.folder.setText(str(tmp_path / "runs"))
        assert window.start_live()
        qtbot.waitUntil(lambda: any(e.startswith("rig:") for e in window.events.errors),
                        timeout=60_000)
        error = next(e for e in window.events.errors if e.startswith("rig:"))
        assert "frame" in error  # the dropped camera frame is named
        assert window.events.banner.isVisibleTo(window)
        seen = window.raw_message.header.time_point if window.raw_message else -1
        ticks = window.ticks
        qtbot.waitUntil(lambda: window.raw_message is not None
                        and window.raw_message.header.time_point > seen + 3, timeout=60_000)
        assert window.ticks > ticks  # the window kept drawing; live view went on
    finally:
        window.close_without_asking = True
        window.close()


def test_continuous_auto_levels_ignore_jitter(qtbot: object,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto-contrast follows a real change of the image, not frame-to-frame percentile jitter
    (each change recolours the frame and repaints the histogram)."""
    import gui.image_panel as image_panel

    clock = {"now": 1000.0}
    monkeypatch.setattr(image_panel.time, "monotonic", lambda: clock["now"])
    panel = ImagePanel("Raw")
    ramp = np.linspace(100, 1100, 64 * 64).reshape(64, 64)
    panel.set_image(ramp.astype(np.uint16))
    first = panel.levels
    clock["now"] += 0.5  # auto-contrast due again
    panel.set_image((ramp * 1.01).astype(np.uint16))  # 1 % brighter: jitter
    assert panel.levels == first
    clock["now"] += 0.5
    panel.set_image((ramp * 1.5).astype(np.uint16))  # 50 % brighter: follow it
    assert panel.levels[1] == pytest.approx(1.5 * first[1], rel=0.01)
    assert panel.item.display_levels == panel.levels
    panel.deleteLater()


def test_window_draws_images_as_they_arrive_without_its_timer(qtbot: QtBot,
                                                               tmp_path: Path) -> None:
    """Display images are drawn on arrival (socket notifier), not on a polling tick."""
    import time

    import zmq
    from pyqtgraph.Qt import QtCore

    from acquisition import run_file
    from acquisition.transport import DisplayPublisher
    from acquisition.wire import Kind, header_for
    from gui.host_link import HostLink
    from gui.main_window import LiveWindow

    endpoint = f"ipc://{tmp_path}/display"
    publisher = DisplayPublisher(zmq.Context.instance(), endpoint)
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    window = LiveWindow(HostLink(None, endpoint), settings)
    try:
        window.timer.stop()  # no control tick: only the notifiers can draw
        qtbot.wait(300)  # the subscribers connect
        sr = run_file.sr_to_stored(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
        raw = np.full((32, 32), 500, np.uint16)
        for n in range(3):
            publisher.publish("raw", header_for(Kind.RAW_SET, "r", n, raw, time_point=n), raw)
            publisher.publish("sr", header_for(Kind.SR_RESULT, "r", n, sr, time_point=n,
                                               info={"sr_scale": run_file.SR_SCALE}), sr)
            def drawn(count: int = n + 1) -> bool:
                return window.sr_panel.updates == count and window.raw_panel.updates == count

            qtbot.waitUntil(drawn, timeout=5_000)
            time.sleep(0.05)
        assert window.ticks == 0
        assert window.sr_message.header.time_point == 2
        assert window.sr_panel.value_scale == run_file.SR_SCALE
    finally:
        window.close_without_asking = True
        window.close()
        publisher.close()


def test_display_stages_are_timed_only_by_an_installed_clock(qtbot: QtBot) -> None:
    from pyqtgraph.Qt import QtWidgets

    from acquisition.cli.bench.display_cost import DisplayCost, StageClock
    from gui.display_stages import set_stage_timer, stage

    panel = ImagePanel("SR", "hot", saturation_value=65_535, paint_stage="sr_paint")
    qtbot.addWidget(panel)
    panel.resize(300, 300)
    panel.show()
    qtbot.waitExposed(panel)
    clock = StageClock()
    set_stage_timer(clock)
    try:
        with stage("tick"):
            with stage("tick"), stage("receive"):  # a drain inside a tick: counted once
                sum(range(200_000))  # some CPU to time
            with stage("not_a_stage"):  # another panel's paint: not counted
                pass
        assert 0 < clock.cost.receive_s <= clock.cost.tick_s
        ticked = clock.cost.tick_s
        for value in (100, 2000, 100):
            panel.set_image(np.full((256, 256), value, np.uint16))
            QtWidgets.QApplication.processEvents()  # the update path: a paint event
        painted = clock.cost
        assert painted.tick_s == ticked  # nothing else counted as a tick
        assert 0 < painted.sr_paint_s <= painted.view_paint_s
        assert painted.raw_paint_s == 0.0
        assert panel.item.images_painted >= 2
    finally:
        set_stage_timer(None)
    with stage("receive"):  # uninstalled: a no-op, nothing counted
        sum(range(200_000))
    assert clock.cost == painted
    assert painted.minus(DisplayCost()) == painted
