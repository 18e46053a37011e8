"""`livesim bench gui`: display updates/s of the window while the raw pipeline runs beside it.

The pipeline is acquisition's own benchmark pipeline (pre-rendered emulator frames -> engine ->
ZeroMQ -> passthrough worker -> HDF5 recorder) in a separate process: 512 x 512 raw frames,
1024 x 1024 uint16 SR images on the display stream (<= 36/s per topic). It runs twice:
headless, then with the real window (offscreen, Qt's own event loop) attached to its display
stream. An update is a new image received and painted, never a redraw of the same one.
Reported: raw and SR images drawn/s, the SR images/s the pipeline made meanwhile, the
pipeline's raw frames/s in both runs, and where the window's CPU goes (thread CPU per stage).
Flat out the pipeline is CPU-bound on a small machine (the headline); a second mode paces it
at the emulated camera's own frame rate (one frame per exposure), as a rig delivers frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from acquisition.cli.bench.display_cost import DisplayCost, StageClock
from acquisition.session import SessionOptions

if TYPE_CHECKING:
    from pyqtgraph.Qt import QtWidgets

    from gui.main_window import LiveWindow

logger = logging.getLogger(__name__)


STAGE_CLOCK = StageClock()  # the timer on the window's display-stage hook during the bench

SETTLE_S = 1.0  # the window's subscribers connect before the pipeline starts
FEED_HZ = 30.0  # synthetic display feed at the target rate (the stream's cap is 40/s)
WATCH_PERIOD_MS = 250  # the bench's own check of the pipeline and SR updates: its wake-ups
# count in the window process's CPU (20 ms cost ~10 ms CPU a second, 5 ms ~20 ms); the span
# runs between two checks that saw new SR images, so the rates stay exact
FEED_SET_HZ = 2.0  # full raw sets in the feed, as the live GUI's acquisition process sends
PROBE_TIME_POINTS = 60  # sizes the pipeline run (a shorter probe is dominated by start/close)
MIN_TIME_POINTS = 200  # the probe's rate includes start-up and close: never size below this
# the frame bank's exposure (acquisition.cli.bench.pipeline.frame_bank): an exposure-limited camera
# (readout overlapped, as an sCMOS in overlap mode) delivers one frame per exposure, 100/s
PACED_EXPOSURE_MS = 10.0
PACED_MIN_TIME_POINTS = 60
# emulator camera constants, so the feed run also pays for the pattern check and photon count
FEED_CAMERA = {"pixel_size_nm": 62.6, "offset_adu": 100.0, "electrons_per_adu": 1.0}


@dataclass(frozen=True)
class WindowFigures:
    """What the window did over one measured span (first to last new SR image)."""

    span_s: float
    raw_updates: int  # new raw images received and set
    sr_updates: int
    raw_painted: int  # distinct raw images that reached the screen
    sr_painted: int
    process_cpu_s: float  # the window process, all threads
    gui_thread_cpu_s: float
    cost: DisplayCost  # GUI-thread CPU per display stage, painting included
    pattern_cpu_s: float  # the pattern check's own thread (its FFT workers: other threads)
    sr_time_points: int = 0  # time points the SR images spanned (the pipeline's SR output)

    @property
    def sr_made_per_s(self) -> float:
        """SR images the pipeline made per second over the span (time point numbers)."""
        return self.sr_time_points / self.span_s if self.span_s > 0 else 0.0

    @property
    def raw_per_s(self) -> float:
        """New raw images drawn per second."""
        return self.raw_painted / self.span_s if self.span_s > 0 else 0.0

    @property
    def sr_per_s(self) -> float:
        """New SR images drawn per second."""
        return self.sr_painted / self.span_s if self.span_s > 0 else 0.0

    @property
    def pairs(self) -> int:
        """Raw + SR update pairs (the smaller count)."""
        return max(1, min(self.raw_updates, self.sr_updates))

    @property
    def cpu_ms_per_pair(self) -> float:
        """Window process CPU per raw + SR update pair (all threads)."""
        return 1e3 * self.process_cpu_s / self.pairs

    def split_ms(self) -> dict[str, float]:
        """CPU ms per raw + SR update pair, by stage."""
        c = self.cost
        staged = c.receive_s + c.raw_set_s + c.sr_set_s + c.full_set_s
        parts = {"receive": c.receive_s, "raw set_image": c.raw_set_s,
                 "SR set_image": c.sr_set_s, "full set (photons, pattern hand-off)": c.full_set_s,
                 "rest of tick (status, captions)": c.tick_s - staged,
                 "raw paint": c.raw_paint_s, "SR paint": c.sr_paint_s}
        around = c.view_paint_s - c.raw_paint_s - c.sr_paint_s
        parts["views' paint around the images (scene, histograms)"] = around
        parts["event loop, other widgets"] = self.gui_thread_cpu_s - c.tick_s - c.view_paint_s
        parts["pattern check thread"] = self.pattern_cpu_s
        parts["other threads (ZMQ I/O, pattern check FFTs)"] = (
            self.process_cpu_s - self.gui_thread_cpu_s - self.pattern_cpu_s)
        return {name: 1e3 * value / self.pairs for name, value in parts.items()}


@dataclass(frozen=True)
class DisplayBenchResult:
    """Figures of one `livesim bench gui` run."""

    size_px: int
    time_points: int
    headless_fps: float
    with_display_fps: float
    sr_shape: tuple[int, ...]
    during: WindowFigures  # the window while the pipeline runs
    alone: WindowFigures  # the window alone, fed FEED_HZ per topic
    feed_hz: float
    render_sr_cpu_ms: float = float("nan")  # CPU ms to set + paint one SR image in the window
    render_raw_cpu_ms: float = float("nan")  # the same for one raw frame
    sr_view_px: tuple[int, int] = (0, 0)  # the SR view's size on screen
    sr_decimation: int = 1  # image pixels per drawn pixel in the SR view
    publish_uint16_ms: float = float("nan")  # acquisition-side CPU to publish one SR image
    publish_float32_ms: float = float("nan")  # the same, converted to float32 (before #8 work)
    load_average: float = float("nan")
    window_niceness: int = 0
    headless_cpu_ms_per_frame: float = float("nan")  # pipeline + worker CPU per raw frame
    with_display_cpu_ms_per_frame: float = float("nan")
    paced: PacedFigures | None = None  # the same at the emulated camera's frame rate

    @property
    def acquisition_ms_per_pair(self) -> float:
        """Extra pipeline CPU (acquisition + worker) per raw + SR pair drawn while the window
        was attached: publishing to a subscriber, and running beside it."""
        extra_ms = self.with_display_cpu_ms_per_frame - self.headless_cpu_ms_per_frame
        pairs_per_s = min(self.during.raw_per_s, self.during.sr_per_s)
        return extra_ms * self.with_display_fps / pairs_per_s if pairs_per_s > 0 else float("nan")

    @property
    def display_path_ms_per_pair(self) -> float:
        """The whole display path per raw + SR pair: the window's CPU + the pipeline's extra."""
        return self.during.cpu_ms_per_pair + self.acquisition_ms_per_pair

    @property
    def slowdown_pct(self) -> float:
        """How much slower the pipeline ran with the window drawing (negative: faster)."""
        return 100.0 * (1.0 - self.with_display_fps / self.headless_fps)

    def lines(self) -> list[str]:
        """Human-readable report."""
        d, a = self.during, self.alone
        out = [
            f"pipeline: {self.time_points} SIM sets of 9 x {self.size_px}x{self.size_px}, "
            f"passthrough SR {self.sr_shape} (uint16 on the display stream)",
            f"raw frames/s headless        {self.headless_fps:8.0f}",
            f"raw frames/s with the window {self.with_display_fps:8.0f}  "
            f"({self.slowdown_pct:+.1f} % slower; target within 5 %)",
            f"pipeline CPU per raw frame: headless {self.headless_cpu_ms_per_frame:.2f} ms, "
            f"with the window {self.with_display_cpu_ms_per_frame:.2f} ms",
            f"window during the run: SR view {d.sr_per_s:.1f}, raw view {d.raw_per_s:.1f} new "
            f"images drawn/s over {d.span_s:.1f} s (target >= 30); the pipeline made "
            f"{d.sr_made_per_s:.1f} SR images/s then, the display stream offers <= "
            f"{SessionOptions().display_max_hz:.0f}/s per view",
            f"display path CPU per raw+SR pair: window {d.cpu_ms_per_pair:.2f} ms + pipeline "
            f"extra {self.acquisition_ms_per_pair:.2f} ms = {self.display_path_ms_per_pair:.2f} "
            "ms (goal ~2.5)",
            f"window alone, fed {self.feed_hz:.0f} Hz per topic (raw {self.size_px}^2 + SR "
            f"{self.sr_shape} uint16, full sets {FEED_SET_HZ:.0f} Hz, pattern check and photon "
            f"count on): SR view {a.sr_per_s:.1f}, raw view {a.raw_per_s:.1f} drawn/s; "
            f"CPU {a.cpu_ms_per_pair:.1f} ms per pair (one free core: "
            f"~{1000 / a.cpu_ms_per_pair:.0f} pairs/s)",
            "  CPU ms per raw+SR pair, window alone / during the run:",
        ]
        split_a, split_d = a.split_ms(), d.split_ms()
        out += [f"    {name:52s} {split_a[name]:6.2f} / {split_d[name]:6.2f}" for name in split_a]
        out += [
            f"render cost in the window (CPU, set + paint): SR {self.render_sr_cpu_ms:.2f} ms, "
            f"raw {self.render_raw_cpu_ms:.2f} ms; SR view {self.sr_view_px[0]}x"
            f"{self.sr_view_px[1]} px on screen, drawing every {self.sr_decimation}. pixel",
            f"acquisition side, CPU to publish one 1024^2 SR image: uint16 as stored "
            f"{self.publish_uint16_ms:.2f} ms, converted to float32 {self.publish_float32_ms:.2f}"
            " ms",
            f"window niceness {self.window_niceness} (the pipeline's: 0); 1-minute load "
            f"average at the end: {self.load_average:.1f}",
        ]
        if self.paced is not None:
            out += self.paced.lines()
        return out


@dataclass(frozen=True)
class PacedFigures:
    """The pipeline paced at the emulated camera's frame rate, headless and with the window."""

    frames_per_s: float  # the camera's pace
    headless_fps: float
    with_display_fps: float
    headless_cpu_ms_per_frame: float
    with_display_cpu_ms_per_frame: float
    during: WindowFigures

    def lines(self) -> list[str]:
        """Report lines (the flat-out figures above stay the headline)."""
        d = self.during
        change = 100.0 * (1.0 - self.with_display_fps / self.headless_fps)
        return [
            f"PACED at the emulated camera's rate ({self.frames_per_s:.0f} frames/s: one frame "
            f"per {PACED_EXPOSURE_MS:.0f} ms exposure, as a rig delivers them):",
            f"  raw frames/s headless {self.headless_fps:.1f}, with the window "
            f"{self.with_display_fps:.1f} ({change:+.1f} % slower)",
            f"  pipeline CPU per raw frame: headless {self.headless_cpu_ms_per_frame:.2f} ms, "
            f"with the window {self.with_display_cpu_ms_per_frame:.2f} ms",
            f"  window: SR view {d.sr_per_s:.1f}, raw view {d.raw_per_s:.1f} new images drawn/s "
            f"(the camera makes {self.frames_per_s / 9:.1f} SIM sets/s); window CPU "
            f"{d.cpu_ms_per_pair:.2f} ms per pair",
        ]


def _start_pipeline(folder: Path, size_px: int, time_points: int, paced_fps: float = 0.0
                    ) -> subprocess.Popen[str]:
    """A pipeline process (:func:`pipeline_main`) writing into ``folder``."""
    return subprocess.Popen([sys.executable, "-m", "acquisition.cli.bench.display", "--pipeline",
                             "--folder", str(folder), "--size-px", str(size_px),
                             "--time-points", str(time_points), "--paced-fps", str(paced_fps)],
                            stdout=subprocess.PIPE, text=True)


def _pipeline_figures(process: subprocess.Popen[str], timeout_s: float) -> dict[str, float]:
    """raw_fps and cpu_ms_per_frame reported by a pipeline process."""
    out, _ = process.communicate(timeout=timeout_s)
    if process.returncode != 0:
        raise RuntimeError(f"bench pipeline exited with code {process.returncode}")
    report = json.loads(out.strip().splitlines()[-1])
    return {key: float(report[key]) for key in ("raw_fps", "cpu_ms_per_frame")}


class _Meter:
    """Snapshots of the window's counters, to difference over a span."""

    def __init__(self, window: LiveWindow) -> None:
        self.window = window
        self.taken_s = time.monotonic()
        self.raw_updates = window.raw_panel.updates
        self.sr_updates = window.sr_panel.updates
        self.raw_painted = window.raw_panel.item.images_painted
        self.sr_painted = window.sr_panel.item.images_painted
        self.process_cpu_s = time.process_time()
        self.gui_thread_cpu_s = time.thread_time()
        self.cost = STAGE_CLOCK.cost
        self.pattern_cpu_s = window.pattern_checker.cpu_s
        message = window.sr_message
        self.sr_time_point = message.header.time_point if message is not None else 0

    def since(self, start: _Meter) -> WindowFigures:
        return WindowFigures(
            self.taken_s - start.taken_s, self.raw_updates - start.raw_updates,
            self.sr_updates - start.sr_updates, self.raw_painted - start.raw_painted,
            self.sr_painted - start.sr_painted, self.process_cpu_s - start.process_cpu_s,
            self.gui_thread_cpu_s - start.gui_thread_cpu_s, self.cost.minus(start.cost),
            self.pattern_cpu_s - start.pattern_cpu_s, self.sr_time_point - start.sr_time_point)


def run_display_bench(seconds: float = 10.0, sr_px: int = 1024, time_points: int = 0,
                      timeout_s: float = 600.0, niceness: int | None = None,
                      paced: bool = True) -> DisplayBenchResult:
    """Headless pipeline run, then the same with the window drawing its display stream; with
    ``paced`` both again at the emulated camera's frame rate.

    ``niceness``: the window's CPU priority below the pipeline's (None: as `livesim gui`).
    """
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    from gui.app import WINDOW_NICENESS, apply_dark_theme, yield_cpu_to_acquisition
    from gui.display_stages import set_stage_timer
    from gui.host_link import HostLink
    from gui.main_window import LiveWindow

    if sr_px % 2:
        raise ValueError(f"sr_px must be even (2x the raw frame), got {sr_px}")
    size_px = sr_px // 2
    scratch = Path(tempfile.mkdtemp(prefix="livesim-bench-gui-"))
    set_stage_timer(STAGE_CLOCK)
    try:
        for name in ("headless", "window", "paced-headless", "paced-window"):
            (scratch / name).mkdir()
        if time_points <= 0:  # size the run to about `seconds` from a headless probe
            probe = _start_pipeline(scratch / "headless", size_px, PROBE_TIME_POINTS)
            fps = _pipeline_figures(probe, timeout_s)["raw_fps"]
            time_points = max(MIN_TIME_POINTS, int(seconds * fps / 9))
        head = _pipeline_figures(_start_pipeline(scratch / "headless", size_px, time_points),
                                 timeout_s)

        app = pg.mkQApp("livesim-bench")
        apply_dark_theme(app)
        folder = scratch / "window"
        settings = QtCore.QSettings(str(scratch / "settings.ini"),
                                    QtCore.QSettings.Format.IniFormat)
        window = LiveWindow(HostLink(None, f"ipc://{folder}/ep/display"), settings)
        window.resize(1600, 1000)
        window.show()
        _spin(SETTLE_S)
        process = _start_pipeline(folder, size_px, time_points)
        # as `livesim gui` does once its acquisition process runs
        yield_cpu_to_acquisition(WINDOW_NICENESS if niceness is None else niceness)
        during = _watch_window(window, process, timeout_s)
        sr_shape = tuple(window.sr_panel.image.shape) if window.sr_panel.image is not None else ()
        with_window = _pipeline_figures(process, timeout_s)
        alone = _window_alone(app, window, scratch, size_px, seconds, FEED_HZ)
        render = _render_cost_ms(app, window, size_px)
        publish = _publish_cost_ms(scratch, sr_px)
        view = window.sr_panel.view
        view_px = (int(view.width()), int(view.height()))
        decimation = window.sr_panel.decimation
        paced_figures = (_paced_runs(window, scratch, size_px, seconds, timeout_s)
                         if paced else None)
        window.close()
        return DisplayBenchResult(
            size_px, time_points, head["raw_fps"], with_window["raw_fps"], sr_shape, during,
            alone, FEED_HZ, render_sr_cpu_ms=render[0], render_raw_cpu_ms=render[1],
            window_niceness=os.nice(0), sr_view_px=view_px, sr_decimation=decimation,
            publish_uint16_ms=publish[0],
            publish_float32_ms=publish[1], load_average=os.getloadavg()[0],
            headless_cpu_ms_per_frame=head["cpu_ms_per_frame"],
            with_display_cpu_ms_per_frame=with_window["cpu_ms_per_frame"],
            paced=paced_figures)
    finally:
        set_stage_timer(None)
        shutil.rmtree(scratch, ignore_errors=True)


def _watch_window(window: LiveWindow, process: subprocess.Popen[str], timeout_s: float
                  ) -> WindowFigures:
    """Run the event loop until the pipeline process exits; the window's figures between the
    first and the last check that saw a new SR image."""
    first: _Meter | None = None
    last: _Meter | None = None
    seen = window.sr_panel.updates

    def watch() -> bool:
        nonlocal first, last, seen
        if window.sr_panel.updates != seen:
            seen = window.sr_panel.updates
            if first is None:
                first = _Meter(window)
            else:
                last = _Meter(window)
        return process.poll() is not None

    _spin(timeout_s, until=watch)
    if first is None or last is None:
        raise RuntimeError("the window received fewer than two SR images from the pipeline")
    return last.since(first)


def _paced_runs(window: LiveWindow, scratch: Path, size_px: int, seconds: float, timeout_s: float
                ) -> PacedFigures:
    """The pipeline at the camera's own pace (one frame per exposure), headless and then with
    the window attached."""
    from gui.host_link import HostLink

    fps = 1000.0 / PACED_EXPOSURE_MS
    time_points = max(PACED_MIN_TIME_POINTS, int(seconds * fps / 9))
    head = _pipeline_figures(_start_pipeline(scratch / "paced-headless", size_px, time_points,
                                             fps), timeout_s)
    folder = scratch / "paced-window"
    window.set_link(HostLink(None, f"ipc://{folder}/ep/display"))
    window._camera = {}  # as during the flat-out run: no photon count without a camera
    _spin(SETTLE_S)
    process = _start_pipeline(folder, size_px, time_points, fps)
    during = _watch_window(window, process, timeout_s)
    with_window = _pipeline_figures(process, timeout_s)
    return PacedFigures(fps, head["raw_fps"], with_window["raw_fps"], head["cpu_ms_per_frame"],
                        with_window["cpu_ms_per_frame"], during)


def _spin(seconds: float, until: Callable[[], bool] | None = None) -> None:
    """Run Qt's event loop (idle between timers, as the real application) for ``seconds``
    or until ``until()`` is true (checked every WATCH_PERIOD_MS)."""
    from pyqtgraph.Qt import QtCore

    loop = QtCore.QEventLoop()
    deadline = time.monotonic() + seconds

    def check() -> None:
        if time.monotonic() >= deadline or (until is not None and until()):
            loop.quit()

    timer = QtCore.QTimer()
    timer.setInterval(WATCH_PERIOD_MS)
    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()


def _window_alone(app: QtWidgets.QApplication, window: LiveWindow, scratch: Path, size_px: int,
                  seconds: float, feed_hz: float) -> WindowFigures:
    """The window drawing a feed process's images at ``feed_hz`` per topic (nothing else
    running in this bench): how many it can draw and what each costs."""
    from gui.host_link import HostLink

    endpoint = f"ipc://{scratch}/feed"
    window.set_link(HostLink(None, endpoint))
    window._camera = dict(FEED_CAMERA)  # the photon count and pattern check run, as live
    feed = subprocess.Popen([sys.executable, "-m", "acquisition.cli.bench.display", "--feed",
                             "--endpoint", endpoint, "--size-px", str(size_px),
                             "--seconds", str(seconds + 2 * SETTLE_S), "--hz", str(feed_hz)])
    try:
        seen = window.sr_panel.updates  # the feed's start-up (imports, test images) is not
        _spin(60.0, until=lambda: window.sr_panel.updates > seen + 2)  # part of the span
        start = _Meter(window)
        _spin(seconds)
        return _Meter(window).since(start)
    finally:
        feed.wait(seconds + 30.0)


def _render_cost_ms(app: QtWidgets.QApplication, window: LiveWindow, size_px: int, n: int = 40
                    ) -> tuple[float, float]:
    """CPU ms per image set and painted in the window's SR and raw views (levels as live)."""
    import numpy as np

    from acquisition import run_file

    rng = np.random.default_rng(1)
    srs = [run_file.sr_to_stored(rng.random((2 * size_px, 2 * size_px), dtype=np.float32))
           for _ in range(4)]
    raws = [(100 + rng.poisson(50, size=(size_px, size_px))).astype(np.uint16)
            for _ in range(4)]
    costs = []
    for panel, images, scale in ((window.sr_panel, srs, run_file.SR_SCALE),
                                 (window.raw_panel, raws, 1.0)):
        for image in images:  # warm-up: levels, histogram, decimation settle
            panel.set_image(image, value_scale=scale)
            app.processEvents()
        start = time.process_time()
        for i in range(n):
            panel.set_image(images[i % len(images)], value_scale=scale)
            app.processEvents()  # the update path of a new image: only its rect repaints
        costs.append(1e3 * (time.process_time() - start) / n)
    return costs[0], costs[1]


def _publish_cost_ms(scratch: Path, sr_px: int, n: int = 40) -> tuple[float, float]:
    """Publishing thread CPU ms per SR image (a subscriber attached): uint16 with its scale as
    sent now, and the float32 conversion the stream used before."""
    import numpy as np
    import zmq

    from acquisition import run_file
    from acquisition.transport import DisplayPublisher, DisplaySubscriber
    from acquisition.wire import Kind, header_for

    context: zmq.Context = zmq.Context.instance()
    endpoint = f"ipc://{scratch}/publish"
    publisher = DisplayPublisher(context, endpoint)
    subscriber = DisplaySubscriber(context, endpoint, "sr")
    stored = run_file.sr_to_stored(
        np.random.default_rng(2).random((sr_px, sr_px), dtype=np.float32))

    def as_stored() -> None:
        publisher.publish("sr", header_for(Kind.SR_RESULT, "bench", 0, stored,
                                           info={"sr_scale": run_file.SR_SCALE}), stored)

    def as_float32() -> None:
        image = stored.astype(np.float32) * np.float32(run_file.SR_SCALE)
        publisher.publish("sr", header_for(Kind.SR_RESULT, "bench", 0, image), image)

    try:
        time.sleep(0.3)  # slow joiner
        costs = []
        for publish in (as_stored, as_float32):
            total_s = 0.0
            for _ in range(n):
                start = time.thread_time()
                publish()
                total_s += time.thread_time() - start
                subscriber.latest(timeout_ms=1000)
            costs.append(1e3 * total_s / n)
        return costs[0], costs[1]
    finally:
        subscriber.close()
        publisher.close()


def feed_main(endpoint: str, size_px: int, seconds: float, hz: float) -> None:
    """Publish what the window is sent at ``hz`` per topic: a raw frame, a uint16 SR image
    with its scale; full raw sets at FEED_SET_HZ."""
    import numpy as np
    import zmq

    from acquisition import run_file
    from acquisition.transport import DisplayPublisher
    from acquisition.wire import Kind, header_for

    rng = np.random.default_rng(0)
    sets = [(100 + rng.poisson(50, size=(9, size_px, size_px))).astype(np.uint16)
            for _ in range(4)]
    srs = [run_file.sr_to_stored(rng.random((2 * size_px, 2 * size_px), dtype=np.float32))
           for _ in range(4)]
    publisher = DisplayPublisher(zmq.Context.instance(), endpoint)
    try:
        period = 1.0 / hz
        every = max(1, round(hz / FEED_SET_HZ))
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            frames, sr = sets[n % 4], srs[n % 4]
            info = {"acquired_s": time.time()}
            publisher.publish("raw", header_for(Kind.RAW_SET, "feed", n, frames[0],
                                                time_point=n, channel=0, info=info), frames[0])
            if n % every == 0:
                publisher.publish("set", header_for(Kind.RAW_SET, "feed", n, frames,
                                                    time_point=n, channel=0, info=info), frames)
            publisher.publish("sr", header_for(Kind.SR_RESULT, "feed", n, sr, time_point=n,
                                               channel=0,
                                               info={"sr_scale": run_file.SR_SCALE}), sr)
            n += 1
            time.sleep(max(0.0, start + n * period - time.monotonic()))
    finally:
        publisher.close()


def pipeline_main(folder: Path, size_px: int, time_points: int, paced_fps: float = 0.0) -> None:
    """The pipeline process: print its raw frames/s as JSON (start to run file closed);
    ``paced_fps`` > 0 paces the frame source at that rate."""
    from acquisition.cli.bench import pipeline as pipeline_bench

    (folder / "ep").mkdir(parents=True, exist_ok=True)
    bank = pipeline_bench.frame_bank(size_px)
    source = pipeline_bench.BankSource(bank, paced_fps)
    m = pipeline_bench.measure_pipeline(bank, time_points, folder, fsync=False, source=source)
    m.path.unlink(missing_ok=True)
    cpu_s = m.acquisition_cpu_s + m.worker_cpu_s  # first time point to the file closed
    sys.stdout.write(json.dumps({"raw_fps": m.fps, "sr_frames": m.summary.sr_frames,
                                 "cpu_ms_per_frame": 1e3 * cpu_s / max(m.summary.raw_frames, 1)})
                     + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m acquisition.cli.bench.display --pipeline|--feed``: the helper processes."""
    parser = argparse.ArgumentParser(description="livesim GUI bench pipeline process")
    parser.add_argument("--pipeline", action="store_true")
    parser.add_argument("--feed", action="store_true")
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=FEED_HZ)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--size-px", type=int, default=512)
    parser.add_argument("--time-points", type=int, default=100)
    parser.add_argument("--paced-fps", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.feed:
        feed_main(args.endpoint, args.size_px, args.seconds, args.hz)
    elif args.pipeline and args.folder is not None:
        pipeline_main(args.folder, args.size_px, args.time_points, args.paced_fps)
    else:
        parser.error("give --pipeline --folder DIR or --feed --endpoint EP")


if __name__ == "__main__":
    main()
