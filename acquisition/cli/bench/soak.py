"""`livesim soak`: a long emulated time-lapse at the fastest sustainable rate, watched for leaks.

The real pipeline (emulated rig through pymmcore-plus, engine, ZeroMQ, supervised worker,
SWMR recorder) runs back to back (interval 0) for a fixed wall-clock time. The soak reports
raw frames lost (must be 0), SR sets skipped, resident memory of the acquisition process and
the worker over time (growth after warm-up must stay under 5 %), the run file's size against
the bytes its datasets hold, and SR latency percentiles.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_json_output, write_json

logger = logging.getLogger(__name__)

RSS_GROWTH_LIMIT_PCT = 5.0
MAX_TIME_POINTS_PER_S = 600  # the protocol needs a count: enough for 600 time points/s


@dataclass(frozen=True)
class SoakOptions:
    """What to soak: duration, frame size, reconstruction, where the run file goes."""

    minutes: float = 30.0
    size_px: int = 64
    reconstruction: str = "wiener"
    exposure_ms: float = 2.0
    render_mode: str = "fast"  # emulated camera: fresh noise on pre-rendered patterns
    folder: Path | None = None  # run file location (a temporary folder when None)
    keep_file: bool = False
    sample_every_s: float = 5.0
    warmup_fraction: float = 0.2  # RSS growth is measured from the end of this share of the run
    fsync: bool = True
    max_pending_sets: int = 16  # raw sets in flight to the worker before SR is skipped
    trim_display_log: bool = True  # clear the emulator's display log at every sample


@dataclass(frozen=True)
class RssSample:
    """Resident memory of both processes at one moment."""

    elapsed_s: float
    time_points: int
    acquisition_mb: float
    worker_mb: float
    python_blocks: int = 0  # sys.getallocatedblocks(): flat while RSS grows = a C-level leak


@dataclass
class SoakReport:
    """Figures of one soak run."""

    options: SoakOptions
    duration_s: float = 0.0
    time_points: int = 0
    raw_frames: int = 0
    raw_frames_lost: int = 0
    sr_frames: int = 0
    sr_skipped: int = 0
    gaps: int = 0
    worker_restarts: int = 0
    rejected_messages: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    rss: list[RssSample] = field(default_factory=list)
    file_bytes: int = 0
    dataset_bytes: int = 0
    events: dict[str, int] = field(default_factory=dict)
    error: str = ""
    path: str = ""
    object_growth: dict[str, int] = field(default_factory=dict)  # GC objects, warm-up -> end

    def rss_growth_pct(self, which: str = "acquisition") -> float:
        """Growth from the end of warm-up to the end (medians of the first/last quarter after)."""
        values = [getattr(s, f"{which}_mb") for s in self.rss
                  if s.elapsed_s >= self.options.warmup_fraction * self.duration_s]
        values = [v for v in values if v > 0]
        if len(values) < 4:
            return float("nan")
        quarter = max(1, len(values) // 4)
        first = statistics.median(values[:quarter])
        last = statistics.median(values[-quarter:])
        return 100.0 * (last - first) / first

    @property
    def passed(self) -> bool:
        """No raw frame lost, no error, memory growth within the limit for both processes."""
        growth = [self.rss_growth_pct("acquisition"), self.rss_growth_pct("worker")]
        return (self.raw_frames_lost == 0 and not self.error and self.time_points > 0
                and all(not g > RSS_GROWTH_LIMIT_PCT for g in growth))

    def lines(self) -> list[str]:
        """The human-readable report the command prints."""
        o = self.options
        rate = self.raw_frames / self.duration_s if self.duration_s else 0.0
        lines = [
            f"soak: {self.duration_s / 60:.1f} min, {o.size_px}x{o.size_px} px linear SIM, "
            f"exposure {o.exposure_ms} ms, reconstruction {o.reconstruction!r}, "
            f"fsync {o.fsync}, at most {o.max_pending_sets} sets in flight to the worker",
            f"time points {self.time_points}, raw frames {self.raw_frames} "
            f"({rate:.1f} frames/s sustained)",
            f"raw frames lost: {self.raw_frames_lost} (must be 0); gaps recorded {self.gaps}",
            f"SR frames {self.sr_frames}, SR skipped {self.sr_skipped}, worker restarts "
            f"{self.worker_restarts}, rejected messages {self.rejected_messages}",
            "SR latency ms: " + ", ".join(f"{k} {v:.0f}" for k, v in self.latency_ms.items()),
            f"RSS growth after warm-up: acquisition {self.rss_growth_pct('acquisition'):+.1f} %,"
            f" worker {self.rss_growth_pct('worker'):+.1f} % (limit {RSS_GROWTH_LIMIT_PCT} %)",
            f"file {self.file_bytes / 1e6:.1f} MB on disk vs {self.dataset_bytes / 1e6:.1f} MB "
            f"stored in its datasets (ratio {self.file_ratio:.3f}: HDF5 overhead)",
            f"events: {self.events}",
        ]
        if self.rss:
            lines.append("RSS over time (s, time points, acquisition MB, worker MB, "
                         "Python blocks):")
            step = max(1, len(self.rss) // 12)
            for s in [*self.rss[::step], self.rss[-1]][: 14]:
                lines.append(f"  {s.elapsed_s:7.0f} {s.time_points:8d} {s.acquisition_mb:8.1f} "
                             f"{s.worker_mb:8.1f} {s.python_blocks:9d}")
        if self.error:
            lines.append(f"error: {self.error}")
        if self.object_growth:
            lines.append("Python objects grown after warm-up (type: count): " + ", ".join(
                f"{k}: {v:+d}" for k, v in self.object_growth.items()))
        lines.append("PASS" if self.passed else "FAIL")
        return lines

    @property
    def file_ratio(self) -> float:
        """File size on disk over the bytes held by its datasets (HDF5 overhead)."""
        return self.file_bytes / self.dataset_bytes if self.dataset_bytes else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every figure and option, RSS growth of both processes, the verdict."""
        growth = {which: self.rss_growth_pct(which) for which in ("acquisition", "worker")}
        return {**asdict(self), "rss_growth_pct": growth, "passed": self.passed}


def rss_mb(pid: int | None) -> float:
    """Resident set size of a process in MB from /proc (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def object_counts() -> Counter[str]:
    """Live GC-tracked Python objects by type name (a leak of Python objects shows here)."""
    return Counter(type(o).__name__ for o in gc.get_objects())


def largest_growth(before: Counter[str], after: Counter[str], n: int = 8) -> dict[str, int]:
    """The ``n`` types whose object counts grew most from ``before`` to ``after``."""
    grown = after.copy()
    grown.subtract(before)
    return {k: v for k, v in grown.most_common(n) if v > 0}


def count_lost_frames(path: Path) -> tuple[int, int]:
    """(raw frames recorded, raw frames lost) from the run file's sequence numbers.

    Every frame of the run has a run-wide sequence number; a lost frame is one whose number
    is missing from ``/timestamps/sequence`` (a -1 slot or a number never seen).
    """
    import h5py
    import numpy as np

    with h5py.File(path, "r") as h5:
        sequence = h5["timestamps/sequence"][()].ravel()
    seen = sequence[sequence >= 0]
    expected = int(seen.max()) + 1 if seen.size else 0
    return int(seen.size), expected - int(np.unique(seen).size)


def dataset_bytes(path: Path) -> int:
    """Bytes of storage the file's datasets hold (unwritten chunks, e.g. skipped SR, excluded)."""
    import h5py

    total = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += int(obj.id.get_storage_size())

    with h5py.File(path, "r") as h5:
        h5.visititems(visit)
    return total


def run_soak(options: SoakOptions, on_sample: Callable[[RssSample], None] | None = None
             ) -> SoakReport:
    """Run the soak for ``options.minutes`` and return its report."""
    from acquisition.protocol import Protocol
    from acquisition.session import RunSession, SessionOptions
    from hardware.sequencing import ChannelSpec, SequencePlan
    from sim_emulator.microscope import EmulatorConfig
    from sim_emulator.rig import emulated_rig, optical_bench, photon_calibration

    folder = Path(tempfile.mkdtemp(prefix="livesim-soak-", dir=options.folder))
    output = folder / "soak.h5"
    report = SoakReport(options, path=str(output))
    channel = {"laser_nm": 488, "power_pct": 20.0, "exposure_ms": options.exposure_ms}
    protocol = Protocol.parse_checked({
        "channels": [{**channel, "reconstruction": options.reconstruction}],
        "timepoints": min(10_000_000, int(options.minutes * 60 * MAX_TIME_POINTS_PER_S) + 10),
        "output": str(output)}, source="soak")
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20.0,
                                              exposure_ms=options.exposure_ms),), mode="sim")
    rig = emulated_rig(EmulatorConfig(size_px=options.size_px, seed=0))
    rig.backend.set_property(rig.camera.label, "RenderMode", options.render_mode)
    session = RunSession(rig, plan, protocol, tuple(rig.camera.shape),  # type: ignore[arg-type]
                         float(rig.camera.pixel_size_nm),
                         options=SessionOptions(fsync=options.fsync,
                                                max_pending_sets=options.max_pending_sets),
                         worker_log=folder / "soak.worker.log",
                         photon_calibration=photon_calibration(
                             rig, (options.size_px, options.size_px)))
    done = threading.Event()
    start = time.monotonic()
    warm_objects: Counter[str] = Counter()

    def watch() -> None:
        """Sample memory until the time is up, then stop the run after its time point."""
        end = start + options.minutes * 60.0
        warm_end = start + options.warmup_fraction * options.minutes * 60.0
        while not done.wait(options.sample_every_s):
            if not warm_objects and time.monotonic() >= warm_end:
                warm_objects.update(object_counts())
            if options.trim_display_log:
                # the emulator's ground-truth log (one record per trigger, bounded at 200k) is
                # test instrumentation a real rig does not have: keep it out of the figures
                optical_bench(rig).display_log.clear()
            supervisor = session.supervisor
            process = supervisor.process if supervisor is not None else None
            sample = RssSample(time.monotonic() - start, session.progress().time_points_done,
                               rss_mb(os.getpid()),
                               rss_mb(process.pid if process is not None else None),
                               sys.getallocatedblocks())
            report.rss.append(sample)
            if on_sample is not None:
                on_sample(sample)
            if time.monotonic() >= end:
                if warm_objects:
                    report.object_growth = largest_growth(warm_objects, object_counts())
                session.stop()
                return

    watcher = threading.Thread(target=watch, name="soak-watch", daemon=True)
    watcher.start()
    try:
        summary = session.run()
    finally:
        done.set()
        watcher.join(10.0)
        rig.close()
    report.duration_s = time.monotonic() - start
    report.time_points = summary.engine.time_points
    report.sr_frames = summary.sr_frames
    report.sr_skipped = summary.events.get("sr_skip", 0)
    report.gaps = len(summary.engine.gaps)
    report.worker_restarts = summary.worker_restarts
    report.rejected_messages = summary.rejected_messages
    report.events = dict(summary.events)
    report.error = summary.error
    report.latency_ms = {f"p{q}": summary.latency_percentile_ms(q) for q in (50, 90, 99)}
    report.latency_ms["max"] = summary.sr_latency.max_ms
    recorded, lost = count_lost_frames(output)
    report.raw_frames = recorded
    # every time point the engine reported should hold all its frames
    expected = report.time_points * protocol.n_patterns
    report.raw_frames_lost = max(lost, expected - recorded)
    report.file_bytes = output.stat().st_size
    report.dataset_bytes = dataset_bytes(output)
    if not options.keep_file:
        shutil.rmtree(folder, ignore_errors=True)
    return report


def soak_command(
    time_limit_s: float = typer.Option(1800.0, "--time-limit-s",
                                       help="Wall-clock length of the run."),
    size_px: opt.SizePx = 64,
    model: opt.Reconstruction = "wiener",
    exposure_ms: float = typer.Option(2.0, "--exposure-ms", help="Exposure per frame."),
    folder: opt.ScratchFolder = None,
    keep: bool = typer.Option(False, "--keep", help="Keep the run file afterwards."),
    sample_s: float = typer.Option(5.0, "--sample-s", help="Seconds between RSS samples."),
    fsync: opt.Fsync = True,
    max_pending: int = typer.Option(16, "--max-pending", help="Raw sets in flight to the worker."),
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Emulated time-lapse at the fastest sustainable rate: frames lost, memory, latency."""
    check_json_output(json_out, overwrite)
    if time_limit_s <= 0 or size_px < 16 or sample_s <= 0:
        raise typer.BadParameter(f"--time-limit-s {time_limit_s}, --size-px {size_px}, "
                                 f"--sample-s {sample_s}: need time > 0, size >= 16, sample > 0")
    options = SoakOptions(minutes=time_limit_s / 60.0, size_px=size_px, reconstruction=model,
                          exposure_ms=exposure_ms, folder=folder, keep_file=keep,
                          sample_every_s=sample_s, fsync=fsync,
                          max_pending_sets=max_pending)

    def show(sample: RssSample) -> None:
        typer.echo(f"{sample.elapsed_s:7.0f} s  t={sample.time_points:7d}  RSS acquisition "
                   f"{sample.acquisition_mb:7.1f} MB  worker {sample.worker_mb:7.1f} MB")

    report = run_soak(options, on_sample=show)
    for line in report.lines():
        typer.echo(line)
    write_json(json_out, report.as_dict())
    if not report.passed:
        raise typer.Exit(1)
