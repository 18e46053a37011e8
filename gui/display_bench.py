"""`livesim bench gui`: display updates/s of the window while the raw pipeline runs beside it.

The pipeline is acquisition's own benchmark pipeline (pre-rendered emulator frames -> engine ->
ZeroMQ -> passthrough worker -> HDF5 recorder) in a separate process: 512 x 512 raw frames,
1024 x 1024 SR images on the display stream. It runs twice: headless, then with the real
window (offscreen) attached to its display stream. Reported: the window's raw and SR view
updates per second, and the pipeline's raw frames/s in both runs.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SETTLE_S = 1.0  # the window's subscribers connect before the pipeline starts
FEED_HZ = 60.0  # synthetic display feed: what the window can draw when nothing else runs


@dataclass(frozen=True)
class DisplayBenchResult:
    """Figures of one `livesim bench gui` run."""

    size_px: int
    time_points: int
    headless_fps: float
    with_display_fps: float
    raw_updates_per_s: float
    sr_updates_per_s: float
    display_updates_per_s: float
    sr_shape: tuple[int, ...]
    window_s: float
    capacity_raw_per_s: float = float("nan")
    capacity_sr_per_s: float = float("nan")
    feed_hz: float = 0.0
    cpu_ms_per_update: float = float("nan")  # window process CPU per (raw + SR) update pair
    render_sr_cpu_ms: float = float("nan")  # CPU ms to set + paint one SR image in the window
    render_raw_cpu_ms: float = float("nan")  # the same for one raw frame
    load_average: float = float("nan")
    headless_cpu_ms_per_frame: float = float("nan")  # pipeline + worker CPU per raw frame
    with_display_cpu_ms_per_frame: float = float("nan")

    @property
    def slowdown_pct(self) -> float:
        """How much slower the pipeline ran with the window drawing (negative: faster)."""
        return 100.0 * (1.0 - self.with_display_fps / self.headless_fps)

    def lines(self) -> list[str]:
        """Human-readable report."""
        return [
            f"pipeline: {self.time_points} SIM sets of 9 x {self.size_px}x{self.size_px}, "
            f"passthrough SR {self.sr_shape}",
            f"raw frames/s headless        {self.headless_fps:8.0f}",
            f"raw frames/s with the window {self.with_display_fps:8.0f}  "
            f"({self.slowdown_pct:+.1f} % slower; target within 5 %)",
            f"pipeline CPU per raw frame: headless {self.headless_cpu_ms_per_frame:.2f} ms, "
            f"with the window {self.with_display_cpu_ms_per_frame:.2f} ms",
            f"window: SR view {self.sr_updates_per_s:.1f} updates/s, raw view "
            f"{self.raw_updates_per_s:.1f} updates/s, any view {self.display_updates_per_s:.1f}"
            f"/s over {self.window_s:.1f} s (target >= 30)",
            f"window alone, fed {self.feed_hz:.0f} Hz per topic (raw set 9x{self.size_px}^2 + "
            f"SR {self.sr_shape}): SR view {self.capacity_sr_per_s:.1f} updates/s, raw view "
            f"{self.capacity_raw_per_s:.1f} updates/s; window CPU {self.cpu_ms_per_update:.1f} ms "
            f"per raw+SR update pair (one free core: ~{1000 / self.cpu_ms_per_update:.0f}/s)",
            f"render cost in the window (CPU, set + paint): SR {self.render_sr_cpu_ms:.1f} ms, "
            f"raw {self.render_raw_cpu_ms:.1f} ms -> ~"
            f"{1000 / (self.render_sr_cpu_ms + self.render_raw_cpu_ms):.0f} raw+SR updates/s "
            "on one free core",
            f"1-minute load average at the end: {self.load_average:.1f}",
        ]


def _pipeline_argv(folder: Path, size_px: int, time_points: int) -> list[str]:
    return [sys.executable, "-m", "gui.display_bench", "--pipeline", "--folder", str(folder),
            "--size-px", str(size_px), "--time-points", str(time_points)]


def _pipeline_figures(process: subprocess.Popen[str], timeout_s: float) -> tuple[float, float]:
    """(raw frames/s, CPU ms per raw frame) reported by a pipeline process."""
    out, _ = process.communicate(timeout=timeout_s)
    if process.returncode != 0:
        raise RuntimeError(f"bench pipeline exited with code {process.returncode}")
    report = json.loads(out.strip().splitlines()[-1])
    return float(report["raw_fps"]), float(report["cpu_ms_per_frame"])


def run_display_bench(seconds: float = 10.0, sr_px: int = 1024, time_points: int = 0,
                      timeout_s: float = 600.0) -> DisplayBenchResult:
    """Headless pipeline run, then the same with the window drawing its display stream."""
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    from gui.app import apply_dark_theme
    from gui.host_link import HostLink
    from gui.main_window import LiveWindow

    if sr_px % 2:
        raise ValueError(f"sr_px must be even (2x the raw frame), got {sr_px}")
    size_px = sr_px // 2
    scratch = Path(tempfile.mkdtemp(prefix="livesim-bench-gui-"))
    try:
        (scratch / "headless").mkdir()
        (scratch / "window").mkdir()
        if time_points <= 0:  # size the run to about `seconds` from a short headless probe
            probe = subprocess.Popen(_pipeline_argv(scratch / "headless", size_px, 20),
                                     stdout=subprocess.PIPE, text=True)
            fps, _ = _pipeline_figures(probe, timeout_s)
            time_points = max(20, int(seconds * fps / 9))
        headless = subprocess.Popen(_pipeline_argv(scratch / "headless", size_px, time_points),
                                    stdout=subprocess.PIPE, text=True)
        headless_fps, headless_cpu = _pipeline_figures(headless, timeout_s)

        app = pg.mkQApp("livesim-bench")
        apply_dark_theme(app)
        folder = scratch / "window"
        settings = QtCore.QSettings(str(scratch / "settings.ini"),
                                    QtCore.QSettings.Format.IniFormat)
        link = HostLink(None, f"ipc://{folder}/ep/display")
        window = LiveWindow(link, settings)
        window.resize(1600, 1000)
        window.show()
        settle_until = time.monotonic() + SETTLE_S
        while time.monotonic() < settle_until:
            app.processEvents()
            time.sleep(0.005)
        process = subprocess.Popen(_pipeline_argv(folder, size_px, time_points),
                                   stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout_s
        first_s = last_s = 0.0
        raw0 = sr0 = any0 = 0
        while process.poll() is None and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.001)
            if window.sr_panel.updates and not first_s:
                first_s = time.monotonic()
                raw0, sr0 = window.raw_panel.updates, window.sr_panel.updates
                any0 = window.display_updates
            if first_s:
                last_s = time.monotonic()
        span = max(last_s - first_s, 1e-9)
        raw_rate = (window.raw_panel.updates - raw0) / span
        sr_rate = (window.sr_panel.updates - sr0) / span
        display_rate = (window.display_updates - any0) / span
        sr_shape = tuple(window.sr_panel.image.shape) if window.sr_panel.image is not None else ()
        with_display_fps, with_display_cpu = _pipeline_figures(process, timeout_s)
        capacity = _window_capacity(app, window, scratch, size_px, seconds, FEED_HZ)
        render = _render_cost_ms(app, window, size_px)
        window.close()
        return DisplayBenchResult(size_px, time_points, headless_fps, with_display_fps,
                                  raw_rate, sr_rate, display_rate, sr_shape, span,
                                  capacity[0], capacity[1], FEED_HZ, capacity[2],
                                  render[0], render[1], os.getloadavg()[0], headless_cpu,
                                  with_display_cpu)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _window_capacity(app: Any, window: Any, scratch: Path, size_px: int, seconds: float,
                     feed_hz: float) -> tuple[float, float, float]:
    """Raw and SR view updates/s with a feed process publishing at ``feed_hz`` per topic, and
    the window process's CPU ms per update pair (includes the pattern check thread)."""
    from gui.host_link import HostLink

    endpoint = f"ipc://{scratch}/feed"
    window.link.close()
    window.link = HostLink(None, endpoint)
    feed = subprocess.Popen([sys.executable, "-m", "gui.display_bench", "--feed",
                             "--endpoint", endpoint, "--size-px", str(size_px),
                             "--seconds", str(seconds + SETTLE_S), "--hz", str(feed_hz)])
    try:
        start = time.monotonic() + SETTLE_S
        while time.monotonic() < start:
            app.processEvents()
            time.sleep(0.001)
        raw0, sr0 = window.raw_panel.updates, window.sr_panel.updates
        cpu0 = time.process_time()
        end = start + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.001)
        span = time.monotonic() - start
        cpu_s = time.process_time() - cpu0
        pairs = max(1, min(window.raw_panel.updates - raw0, window.sr_panel.updates - sr0))
        return ((window.raw_panel.updates - raw0) / span,
                (window.sr_panel.updates - sr0) / span, 1e3 * cpu_s / pairs)
    finally:
        feed.wait(seconds + 30.0)


def _render_cost_ms(app: Any, window: Any, size_px: int, n: int = 40) -> tuple[float, float]:
    """CPU ms per image set and painted in the window's SR and raw views (levels as live)."""
    import numpy as np

    rng = np.random.default_rng(1)
    srs = [rng.random((2 * size_px, 2 * size_px), dtype=np.float32) for _ in range(4)]
    raws = [(100 + rng.poisson(50, size=(size_px, size_px))).astype(np.uint16)
            for _ in range(4)]
    costs = []
    for panel, images in ((window.sr_panel, srs), (window.raw_panel, raws)):
        for image in images:  # warm-up: levels, histogram, decimation settle
            panel.set_image(image)
            app.processEvents()
        start = time.process_time()
        for i in range(n):
            panel.set_image(images[i % len(images)])
            panel.graphics.repaint()
        costs.append(1e3 * (time.process_time() - start) / n)
    return costs[0], costs[1]


def feed_main(endpoint: str, size_px: int, seconds: float, hz: float) -> None:
    """Publish emulator-like raw sets and 2x SR images on a display PUB at ``hz`` per topic."""
    import numpy as np
    import zmq

    from acquisition.transport import DisplayPublisher
    from acquisition.wire import Kind, header_for

    rng = np.random.default_rng(0)
    raws = [(100 + rng.poisson(50, size=(9, size_px, size_px))).astype(np.uint16)
            for _ in range(4)]
    srs = [rng.random((2 * size_px, 2 * size_px), dtype=np.float32) for _ in range(4)]
    publisher = DisplayPublisher(zmq.Context.instance(), endpoint)
    try:
        period = 1.0 / hz
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            raw, sr = raws[n % 4], srs[n % 4]
            publisher.publish("raw", header_for(Kind.RAW_SET, "feed", n, raw, time_point=n,
                                                channel=0, info={"acquired_s": time.time()}),
                              raw)
            publisher.publish("sr", header_for(Kind.SR_RESULT, "feed", n, sr, time_point=n,
                                               channel=0), sr)
            n += 1
            time.sleep(max(0.0, start + n * period - time.monotonic()))
    finally:
        publisher.close()


def pipeline_main(folder: Path, size_px: int, time_points: int) -> None:
    """The pipeline process: print its raw frames/s as JSON (start to run file closed)."""
    from acquisition import pipeline_bench

    (folder / "ep").mkdir(parents=True, exist_ok=True)
    bank = pipeline_bench.frame_bank(size_px)
    fps, summary, path, cpu = pipeline_bench.measured_pipeline_run(bank, time_points, folder,
                                                                   fsync=False)
    path.unlink(missing_ok=True)
    sys.stdout.write(json.dumps({"raw_fps": fps, "sr_frames": summary.sr_frames,
                                 "cpu_ms_per_frame": 1e3 * cpu / max(summary.raw_frames, 1)})
                     + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m gui.display_bench --pipeline|--feed``: the bench's helper processes."""
    parser = argparse.ArgumentParser(description="livesim GUI bench pipeline process")
    parser.add_argument("--pipeline", action="store_true")
    parser.add_argument("--feed", action="store_true")
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=FEED_HZ)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--size-px", type=int, default=512)
    parser.add_argument("--time-points", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.feed:
        feed_main(args.endpoint, args.size_px, args.seconds, args.hz)
    elif args.pipeline and args.folder is not None:
        pipeline_main(args.folder, args.size_px, args.time_points)
    else:
        parser.error("give --pipeline --folder DIR or --feed --endpoint EP")


if __name__ == "__main__":
    main()
