"""`livesim bench pipeline`: the whole raw path against the bare limits of its two links.

Emulator fast path (frames pre-rendered into a bank, so rendering cost is not counted: a real
camera delivers frames for free) -> AcquisitionEngine -> ZeroMQ -> passthrough worker process
-> results back -> RunRecorder (SWMR, flushed per time point). In the same run and on the same
frames: bare pyzmq PUSH/PULL to another process, and bare h5py writing the raw frames the way
the recorder does (same file options and chunking, direct chunk writes, flush per time point,
fsync per time point on a second thread), raw only and with the same bytes as the run file.
The four are run ``repeats`` times interleaved (balanced orders, ``os.sync()`` before each),
because one run of each moved ~4x with the disk's write-back state. Reports sustained lossless
raw frames/s, SR latency p50/p99, every repeat and the medians, the ratio of the pipeline to the
composite limit of the same work (:func:`composite_limit`), plus CPU time per raw frame of each
(all threads and processes involved, from the first frame to the file closed: it depends far
less than frames/s on how loaded the machine is) and of each pipeline thread.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zmq

from acquisition import run_file
from acquisition.fsync_behind import FsyncBehind
from acquisition.protocol import Protocol, sequence_plan
from acquisition.recorder import widefield_mean
from acquisition.session import RunSession, SessionOptions
from acquisition.transport import Endpoints
from acquisition.wire import Kind, encode, header_for

logger = logging.getLogger(__name__)

BANK_SETS = 4
LASER_NM = 488


MEMBERS = ("bare zmq", "bare h5py raw", "bare h5py same bytes", "pipeline")


@dataclass
class RepeatFigures:
    """One interleaved repeat: each member's raw frames/s, CPU ms per raw frame, and the
    seconds the ``os.sync()`` before it took (not counted in its figures)."""

    order: tuple[str, ...]
    fps: dict[str, float]
    cpu_ms_per_frame: dict[str, float]
    sync_s: dict[str, float]
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    raw_lost: int = 0
    raw_mismatched: int = 0
    sr_frames: int = 0
    sr_skips: int = 0
    thread_cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    dirty_mb: dict[str, float] = field(default_factory=dict)  # after the sync, before it ran

    @property
    def composite_limit(self) -> float:
        """This repeat's composite limit (:func:`composite_limit` of its own figures)."""
        return composite_limit(self.fps["bare zmq"], self.fps["bare h5py same bytes"],
                               self.cpu_ms_per_frame)

    @property
    def ratio(self) -> float:
        """Pipeline over this repeat's composite limit (members adjacent in time, same
        page-cache state)."""
        return self.fps["pipeline"] / self.composite_limit


def composite_limit(zmq_fps: float, h5py_same_bytes_fps: float,
                    cpu_ms_per_frame: Mapping[str, float], cores: int | None = None) -> float:
    """The limit of the same work on this machine (issue #20), raw frames/s: min(bare zmq,
    bare h5py writing the run file's bytes, cores x 1000 / (CPU ms per raw frame of bare zmq
    + bare h5py writing those bytes)). The pipeline writes the run file's bytes (raw,
    wide-field, SR: 1.67x the raw bytes), so the h5py term is the write of those bytes; bare
    h5py writing the raw bytes alone is not the same work and is reported beside it.
    A CPU figure missing from ``cpu_ms_per_frame`` leaves the CPU term out (NaN)."""
    cpu_ms = (cpu_ms_per_frame.get("bare zmq", float("nan"))
              + cpu_ms_per_frame.get("bare h5py same bytes", float("nan")))
    cpu_fps = (cores or os.cpu_count() or 1) * 1e3 / cpu_ms if cpu_ms > 0 else float("nan")
    return min(zmq_fps, h5py_same_bytes_fps, *([cpu_fps] if cpu_fps == cpu_fps else []))


@dataclass
class PipelineBenchResult:
    """Figures of one bench run (frames/s are raw camera frames); fps fields are medians over
    the interleaved repeats, counts are totals."""

    time_points: int
    size_px: int
    fsync: bool
    pipeline_fps: float
    zmq_fps: float
    h5py_fps: float  # raw only, written as the recorder writes (reference)
    h5py_same_bytes_fps: float  # raw + wide-field + SR as the recorder writes (the limit)
    latency_p50_ms: float
    latency_p99_ms: float
    raw_lost: int
    raw_mismatched: int
    sr_frames: int
    sr_skips: int
    cpu_ms_per_frame: dict[str, float]
    repeats: list[RepeatFigures] = field(default_factory=list)
    viewer: bool = False  # a display viewer process was attached to the pipeline runs
    shared_memory: bool = True
    sets_by_reference: int = 0  # raw sets the worker read from the shared-memory ring
    sr_by_reference: int = 0  # SR images the worker left in its result ring
    sets_sent: int = 0  # raw sets sent to the worker (by reference or inline)
    viewer_images: int = 0  # display images the viewer received (all repeats)

    @property
    def composite_limit(self) -> float:
        """The median figures' composite limit (:func:`composite_limit`)."""
        return composite_limit(self.zmq_fps, self.h5py_same_bytes_fps, self.cpu_ms_per_frame)

    @property
    def ratio(self) -> float:
        """Median pipeline throughput over the composite limit (target >= 0.8)."""
        return self.pipeline_fps / self.composite_limit

    @property
    def raw_bytes_ratio(self) -> float:
        """Median pipeline throughput over median bare h5py writing the raw frames only
        (reference: the pipeline writes 1.67x those bytes)."""
        return self.pipeline_fps / self.h5py_fps

    @property
    def repeat_ratios(self) -> list[float]:
        """Per repeat: pipeline / that repeat's composite limit."""
        return [r.ratio for r in self.repeats]

    def lines(self) -> list[str]:
        """The report printed by the command: every repeat, then the medians and ratios."""
        n = self.time_points * 9
        short = {"bare zmq": "zmq", "bare h5py raw": "h5 raw", "bare h5py same bytes": "h5 same",
                 "pipeline": "pipeline"}
        out = [f"frames: {n} raw per member ({self.time_points} SIM sets of 9 x {self.size_px}x"
               f"{self.size_px} uint16), fsync per time point: {self.fsync}, "
               f"{len(self.repeats)} interleaved repeat(s), os.sync() before each member, "
               f"load average {os.getloadavg()[0]:.1f} at the end",
               f"pipeline: raw sets to the worker {self.sets_by_reference} of {self.sets_sent} "
               f"through the shared-memory ring, SR images back {self.sr_by_reference} of "
               f"{self.sr_frames} through the result ring (shared memory "
               f"{self.shared_memory}); display "
               + (f"viewer attached ({self.viewer_images} images received)" if self.viewer
                  else "viewer: none (headless)"),
               "members: zmq = bare pyzmq PUSH/PULL (ipc, other process); h5 raw = bare h5py "
               "raw as the recorder writes; h5 same = bare h5py, the run file's bytes "
               "(raw+wf+SR); pipeline = engine->zmq->worker->recorder",
               "repeat | order | frames/s zmq / h5 raw / h5 same / pipeline | pipeline / "
               "composite limit | "
               "os.sync s before each | dirty MB after it"]
        for i, r in enumerate(self.repeats, 1):
            fps = " / ".join(f"{r.fps[m]:.0f}" for m in MEMBERS)
            sync = " ".join(f"{r.sync_s[m]:.2f}" for m in r.order)
            dirty = " ".join(f"{r.dirty_mb.get(m, float('nan')):.0f}" for m in r.order)
            out.append(f"{i} | {' > '.join(short[m] for m in r.order)} | {fps} | "
                       f"{r.ratio:.2f} | {sync} | {dirty}")
        ratios = self.repeat_ratios
        out += [
            f"median bare pyzmq PUSH/PULL (ipc, other process):    {self.zmq_fps:8.0f} frames/s",
            f"median bare h5py raw, as the recorder writes:        {self.h5py_fps:8.0f} frames/s",
            f"median bare h5py, same bytes as the run (raw+wf+SR): {self.h5py_same_bytes_fps:8.0f}"
            " frames/s",
            f"median pipeline (engine->zmq->worker->recorder):     {self.pipeline_fps:8.0f} "
            "frames/s",
            f"composite limit min(zmq, h5 same bytes, {os.cpu_count() or 1} cores x 1000 / "
            f"CPU ms of zmq + h5 same bytes): {self.composite_limit:.0f} frames/s",
            f"ratio of medians, pipeline / composite limit: {self.ratio:.2f} (target >= 0.8)",
            "per-repeat ratio pipeline / composite limit (same repeat): "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + (f"; median {statistics.median(ratios):.2f}" if ratios else ""),
            f"for reference, pipeline / bare h5py raw: {self.raw_bytes_ratio:.2f} (the raw "
            "bytes alone; the pipeline also writes the wide-field and SR images)",
            f"raw lost: {self.raw_lost}, raw differing from source: {self.raw_mismatched} "
            "(all repeats)",
            f"SR frames: {self.sr_frames}, SR skips recorded: {self.sr_skips} (all repeats)",
            f"SR latency (raw sent -> SR received), median of repeats: p50 "
            f"{self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms",
            "CPU ms per raw frame, medians (all processes): " + ", ".join(
                f"{name} {ms:.2f}" for name, ms in self.cpu_ms_per_frame.items()),
        ]
        cores = os.cpu_count() or 1
        cpu_ms = self.cpu_ms_per_frame.get("pipeline", float("nan"))
        ceiling = cores * 1e3 / cpu_ms
        out.append(f"CPU ceiling on {cores} core(s) at {cpu_ms:.2f} ms per raw frame: "
                   f"{ceiling:.0f} frames/s = {ceiling / self.composite_limit:.2f} "
                   "of the composite limit")
        threads = _median_dicts([r.thread_cpu_ms_per_frame for r in self.repeats])
        if threads:
            out.append("pipeline CPU ms per raw frame by thread, first to last time point, "
                       "medians: " + ", ".join(f"{k} {v:.2f}" for k, v in threads.items()))
        return out


def frame_bank(size_px: int, seed: int = 0) -> np.ndarray:
    """BANK_SETS emulated SIM sets (BANK_SETS, 9, Y, X) uint16 from the fast path."""
    from sim_emulator.fast_path import FastFrameSource
    from sim_emulator.microscope import EmulatorConfig, Microscope

    microscope = Microscope(EmulatorConfig(size_px=size_px, seed=seed))
    source = FastFrameSource(microscope, seed=seed)
    return np.stack([source.set_frames(0.25 * i, LASER_NM, 20.0, 10.0)
                     for i in range(BANK_SETS)])


class BankSource:
    """A frame source with the rig's streaming form, cycling through a bank of sets.

    ``frames_per_s`` > 0 releases frames no faster than that, each at its exposure's end, as
    an exposure-limited camera does (the bank itself is ready at once); 0: as fast as asked.
    """

    def __init__(self, bank: np.ndarray, frames_per_s: float = 0.0) -> None:
        from hardware.frames import FrameTag, TaggedFrame

        if frames_per_s < 0:
            raise ValueError(f"frames_per_s must be >= 0, got {frames_per_s}")
        self._tag, self._frame = FrameTag, TaggedFrame
        self.bank = bank
        self.sequence = 0
        self.period_s = 1.0 / frames_per_s if frames_per_s else 0.0
        self._start_s = 0.0

    def stream_time_point(self, plan: Any, time_point: int, timeout_s: float) -> Iterator[Any]:
        """The next set's frames, tagged like the rig tags them."""
        frames = self.bank[time_point % len(self.bank)]
        for p in range(frames.shape[0]):
            if self.period_s and self.sequence == 0:
                self._start_s = time.monotonic()
            elif self.period_s:
                time.sleep(max(0.0, self._start_s + self.sequence * self.period_s
                               - time.monotonic()))
            tag = self._tag(time_point=time_point, channel=0, laser_nm=LASER_NM,
                            orientation=p // 3, phase=p % 3, pattern_index=p,
                            sequence=self.sequence, timestamp_s=time.monotonic(),
                            exposure_ms=10.0)
            self.sequence += 1
            yield self._frame(frames[p], tag)

    def acquire_time_point(self, plan: Any, time_point: int, timeout_s: float) -> list[Any]:
        """All frames of one time point."""
        return list(self.stream_time_point(plan, time_point, timeout_s))


_SINK = textwrap.dedent("""
    import sys, time, zmq
    endpoint, n = sys.argv[1], int(sys.argv[2])
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.connect(endpoint)
    for _ in range(n):
        if not pull.poll(30000):
            sys.exit("bare zmq sink: no message within 30 s")
        pull.recv_multipart(copy=False)
    print(time.time(), flush=True)
""")


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (all threads) or of its reaped children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc); NaN if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int | None = None) -> dict[int, tuple[str, float]]:
    """CPU seconds (ns resolution, /proc schedstat) of each live thread of ``pid`` (this
    process when None), by thread id, with the thread's name (Python's name for this
    process's Python threads, else the kernel's, e.g. ZeroMQ's ``ZMQbg/IO/0``)."""
    own = pid is None
    pid = os.getpid() if pid is None else pid
    names = {t.native_id: t.name for t in threading.enumerate()} if own else {}
    out: dict[int, tuple[str, float]] = {}
    folder = Path(f"/proc/{pid}/task")
    try:
        tids = [int(entry.name) for entry in folder.iterdir()]
    except OSError:
        return out
    for tid in tids:
        try:
            ns = int((folder / str(tid) / "schedstat").read_text().split()[0])
            comm = (folder / str(tid) / "comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        name = names.get(tid) or ("main" if tid == pid else comm)
        out[tid] = (name, ns / 1e9)
    return out


def thread_cpu_delta_s(before: dict[int, tuple[str, float]],
                       after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per thread name between two samples (threads alive in both; same names
    summed)."""
    out: dict[str, float] = {}
    for tid, (name, end) in after.items():
        if tid in before:
            out[name] = out.get(name, 0.0) + end - before[tid][1]
    return out


def bare_zmq_fps(bank: np.ndarray, time_points: int, folder: Path) -> tuple[float, float]:
    """Lossless PUSH/PULL of the same sets to another process over ipc: (frames/s, CPU s)."""
    context = zmq.Context()
    endpoint = Endpoints.ipc(folder).raw
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.setsockopt(zmq.SNDHWM, 8)
    push.setsockopt(zmq.SNDTIMEO, 30000)
    push.bind(endpoint)
    sink = subprocess.Popen([sys.executable, "-c", _SINK, endpoint, str(time_points)],
                            stdout=subprocess.PIPE, text=True)
    children = cpu_s(resource.RUSAGE_CHILDREN)
    sink_cpu = float("nan")
    try:
        first = bank[0]
        push.send_multipart(encode(header_for(Kind.RAW_SET, "warm", 0, first), first),
                            copy=False)  # the first send waits for the sink to connect
        sink_cpu = process_cpu_s(sink.pid)  # its start-up (interpreter, imports) is not counted
        own = cpu_s()
        start = time.time()
        for t in range(1, time_points):
            frames = bank[t % len(bank)]
            push.send_multipart(encode(header_for(Kind.RAW_SET, "bench", t, frames), frames),
                                copy=False)
        own = cpu_s() - own
        out, _ = sink.communicate(timeout=120)
        end = float(out.strip().splitlines()[-1])
        sink_cpu = cpu_s(resource.RUSAGE_CHILDREN) - children - sink_cpu
    finally:
        if sink.poll() is None:
            sink.kill()
        push.close()
        context.term()
    return (time_points - 1) * bank.shape[1] / (end - start), own + sink_cpu


def bare_h5py_fps(bank: np.ndarray, time_points: int, folder: Path, fsync: bool,
                  same_bytes: bool = False, plain: bool = False) -> tuple[float, float]:
    """Plain h5py writing (T, 1, 9, Y, X) frames, chunk per frame: (frames/s, CPU s).

    As the recorder writes: its file options (latest format, SWMR, chunk cache), one
    ``write_direct_chunk`` per frame, flush per time point and an fsync per time point on a
    second thread. ``same_bytes`` adds what the run file holds per set besides raw (the float32
    wide-field mean and a uint16 2x SR image), the bytes only: the bank's wide-field means are
    computed before the clock starts (the pipeline computes them on another thread than its
    writer). ``plain`` is the simplest loop instead: slicing writes and the fsync inline. Timed
    from the first write to the file closed.
    """
    path = folder / "bare.h5"
    frame = bank.shape[2:]
    sr_image = np.zeros((2 * frame[0], 2 * frame[1]), np.uint16)
    widefields = [widefield_mean(s) for s in bank] if same_bytes else []
    h5 = h5py.File(path, "w", libver="latest", rdcc_nbytes=run_file.WRITER_CHUNK_CACHE_BYTES)
    try:
        raw = run_file.create_image_dataset(h5, run_file.RAW, frame, (0, 1, 9), np.uint16, 62.6)
        wf = run_file.create_image_dataset(h5, run_file.WIDEFIELD, frame, (0, 1), np.float32,
                                           62.6)
        sr = run_file.create_image_dataset(h5, "sr", sr_image.shape, (0, 1), np.uint16, 31.3,
                                           fillvalue=0)
        h5.swmr_mode = True
        h5.flush()
        fd = h5.id.get_vfd_handle()
        start = time.perf_counter()
        cpu = cpu_s()
        behind = FsyncBehind(fd, str(path)) if fsync and not plain else None
        for t in range(time_points):
            frames = bank[t % len(bank)]
            raw.resize(t + 1, axis=0)
            if plain:
                raw[t, 0] = frames
            else:
                for p in range(frames.shape[0]):
                    raw.id.write_direct_chunk((t, 0, p, 0, 0), frames[p])
            if same_bytes:
                wf.resize(t + 1, axis=0)
                sr.resize(t + 1, axis=0)
                wf.id.write_direct_chunk((t, 0, 0, 0), widefields[t % len(bank)])
                sr.id.write_direct_chunk((t, 0, 0, 0), sr_image)
            h5.flush()
            if behind is not None:
                behind.request(t)
            elif fsync:
                os.fsync(fd)
        if behind is not None:
            behind.close()
            if behind.error is not None:
                raise behind.error
        h5.flush()
        if fsync:
            os.fsync(fd)
    finally:
        h5.close()
    elapsed = time.perf_counter() - start
    cpu = cpu_s() - cpu
    path.unlink()
    return time_points * bank.shape[1] / elapsed, cpu


def _live_cpu_s(pid: int, threads: dict[int, tuple[str, float]]) -> float:
    """A running process's CPU seconds: its threads' schedstat sum (ns), else /proc stat."""
    return sum(cpu for _, cpu in threads.values()) if threads else process_cpu_s(pid)


@dataclass
class PipelineMeasurement:
    """One pipeline run: frames/s (first time point to run file closed), the summary, the run
    file, CPU seconds of the acquisition process and of the worker over that span (worker
    start-up and exit not counted), and CPU seconds per thread from the first to the last
    time point (``acq <thread>`` / ``worker <thread>``; drain and close not included), which
    spans ``thread_sets`` sets."""

    fps: float
    summary: Any
    path: Path
    acquisition_cpu_s: float
    worker_cpu_s: float
    thread_cpu_s: dict[str, float]
    thread_sets: int = 1
    sets_sent: int = 0  # raw sets sent to the (first) worker
    sets_by_reference: int = 0  # of those, left in the shared-memory ring
    sr_by_reference: int = 0  # SR images received through the worker's result ring
    viewer_images: int = 0  # display images an attached viewer received


_VIEWER = textwrap.dedent("""
    import signal, sys, zmq
    from acquisition.transport import DISPLAY_TOPICS, DisplaySubscriber
    context = zmq.Context()
    viewers = [DisplaySubscriber(context, sys.argv[1], topic) for topic in DISPLAY_TOPICS]
    poller = zmq.Poller()
    for viewer in viewers:
        poller.register(viewer.socket, zmq.POLLIN)
    received = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        for socket, _ in poller.poll(100):
            for viewer in viewers:
                if viewer.socket is socket and viewer.newest() is not None:
                    received += 1
    print(received, flush=True)
""")


class DisplayViewer:
    """A viewer process subscribed to every display topic (as the window is), decoding each
    image it gets; :meth:`stop` returns how many it received."""

    def __init__(self, endpoint: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _VIEWER, endpoint],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("display viewer did not start")

    def stop(self, timeout_s: float = 30.0) -> int:
        """End the viewer; the number of images it received."""
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return -1
        lines = out.strip().splitlines()
        return int(lines[-1]) if lines and lines[-1].isdigit() else -1


def measure_pipeline(bank: np.ndarray, time_points: int, folder: Path, fsync: bool,
                     source: Any | None = None, reconstruction: str = "passthrough",
                     viewer: bool = False, shared_memory: bool = True) -> PipelineMeasurement:
    """Run the full pipeline on the bank into ``folder``/pipeline.h5 and measure it;
    ``source`` replaces the bank's own frame source (e.g. one paced like a camera);
    ``reconstruction`` is the worker's method (a model name or file for a real SR worker);
    ``viewer`` attaches a display viewer process; ``shared_memory``: the raw and result
    rings."""
    output = folder / "pipeline.h5"
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": LASER_NM, "reconstruction": reconstruction}],
        "timepoints": time_points, "output": str(output), "overwrite": True})
    (folder / "ep").mkdir(exist_ok=True)
    at_start: list[float] = []
    at_close: list[float] = []
    at_file_closed: list[float] = []  # the acquisition process's CPU when the file closed
    threads: dict[str, dict[int, tuple[str, float]]] = {}

    def on_file_closed() -> None:  # sample both before the worker stops and the rings go
        at_file_closed.append(cpu_s())
        if session.supervisor is not None and session.supervisor.process is not None:
            pid = session.supervisor.process.pid
            threads["worker close"] = thread_cpu_s(pid)
            at_close.append(_live_cpu_s(pid, threads["worker close"]))

    endpoints = Endpoints.ipc(folder / "ep")
    session = RunSession(source if source is not None else BankSource(bank),
                         sequence_plan(protocol), protocol, (bank.shape[2], bank.shape[3]),
                         62.6, options=SessionOptions(fsync=fsync, shared_memory=shared_memory),
                         endpoints=endpoints, on_file_closed=on_file_closed)
    watching = DisplayViewer(endpoints.display) if viewer else None

    def on_progress(progress: Any) -> None:
        if not at_start and session.supervisor and session.supervisor.process:
            # the worker's start-up (imports, model) is not part of the pipeline's cost
            pid = session.supervisor.process.pid
            threads["acq start"] = thread_cpu_s()
            threads["worker start"] = thread_cpu_s(pid)
            at_start.extend([cpu_s(), _live_cpu_s(pid, threads["worker start"])])
        if progress.time_points_done == time_points:
            threads["acq end"] = thread_cpu_s()

    try:
        summary = session.run(progress=on_progress)
    finally:
        images = watching.stop() if watching is not None else 0
    # when the file closed: stopping the worker and unmapping the rings (up to 768 MiB at
    # 1024 px) are the session's teardown, not the cost of recording a frame
    acquisition_cpu = (at_file_closed[0] if at_file_closed else cpu_s()) - at_start[0]
    if summary.error:
        raise RuntimeError(f"pipeline run failed: {summary.error}")
    worker_cpu = (at_close[0] if at_close else float("nan")) - at_start[1]
    by_thread = {f"acq {k}": v for k, v in thread_cpu_delta_s(
        threads["acq start"], threads.get("acq end", {})).items()}
    by_thread.update({f"worker {k}": v for k, v in thread_cpu_delta_s(
        threads["worker start"], threads.get("worker close", {})).items()})
    sender = session.raw_senders[0]
    return PipelineMeasurement(summary.raw_frames / summary.recorded_s, summary, output,
                               acquisition_cpu, worker_cpu, by_thread, max(1, time_points - 1),
                               sets_sent=int(getattr(sender, "sent", 0)),
                               sets_by_reference=int(getattr(sender, "sent_by_reference", 0)),
                               sr_by_reference=(session.result_rings.received
                                                if session.result_rings is not None else 0),
                               viewer_images=images)


def check_lossless(path: Path, bank: np.ndarray, time_points: int) -> tuple[int, int]:
    """(raw frames missing, raw frames differing from the source) in the pipeline's file."""
    with h5py.File(path, "r") as h5:
        sequence = h5["timestamps/sequence"][()].ravel()
        expected = np.arange(time_points * bank.shape[1])
        lost = int(len(expected) - np.isin(expected, sequence).sum())
        mismatched = 0
        for t in range(time_points):
            stored = h5[run_file.RAW][t, 0]
            mismatched += int(np.any(stored != bank[t % len(bank)], axis=(1, 2)).sum())
    return lost, mismatched


def member_orders(n_members: int, repeats: int) -> list[tuple[int, ...]]:
    """Member orders for ``repeats`` interleaved repeats: the rows of a balanced Latin square
    (Williams design), so over n repeats (2n for odd n) every member runs in every position
    once and directly follows every other member equally often."""
    base = [0]
    for k in range(1, n_members):
        base.append((k + 1) // 2 if k % 2 else n_members - k // 2)
    rows = [tuple((b + r) % n_members for b in base) for r in range(n_members)]
    if n_members % 2:
        rows += [tuple(reversed(row)) for row in rows]
    return [rows[i % len(rows)] for i in range(repeats)]


@dataclass
class MemberOutcome:
    """What one member measured: raw frames/s, CPU seconds, and member-specific figures."""

    fps: float
    cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RepeatRun:
    """One interleaved repeat as run: order, outcomes, seconds of the sync before each."""

    order: tuple[str, ...]
    outcomes: dict[str, MemberOutcome]
    sync_s: dict[str, float]
    dirty_mb: dict[str, float] = field(default_factory=dict)


def dirty_page_cache_mb() -> float:
    """Dirty + under-writeback page cache of the machine (MB, /proc/meminfo); NaN if unknown."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return float("nan")
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    try:
        return sum(int(fields[k].split()[0]) for k in ("Dirty", "Writeback")) / 1024
    except (KeyError, ValueError, IndexError):
        return float("nan")


def run_interleaved(members: Mapping[str, Callable[[Path], MemberOutcome]], repeats: int,
                    scratch: Path, sync: Callable[[], None] = os.sync) -> list[RepeatRun]:
    """Run every member ``repeats`` times, interleaved in balanced orders; each run gets a
    fresh folder, deleted after it, and ``sync()`` (timed, not counted) first so no member
    pays for the write-back of the one before; the dirty page cache left after the sync is
    noted too."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(members)
    runs = []
    for i, order in enumerate(member_orders(len(names), repeats)):
        outcomes: dict[str, MemberOutcome] = {}
        sync_s: dict[str, float] = {}
        dirty_mb: dict[str, float] = {}
        for name in (names[k] for k in order):
            folder = scratch / f"{i}-{name.replace(' ', '_')}"
            folder.mkdir()
            try:
                start = time.perf_counter()
                sync()
                sync_s[name] = time.perf_counter() - start
                dirty_mb[name] = dirty_page_cache_mb()
                outcomes[name] = members[name](folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            logger.info("repeat %d %s: %.0f frames/s (sync %.2f s)", i + 1, name,
                        outcomes[name].fps, sync_s[name])
        runs.append(RepeatRun(tuple(names[k] for k in order), outcomes, sync_s, dirty_mb))
    return runs


def _median_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over the dicts that have it (keys in first-seen order)."""
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    return {k: statistics.median(d[k] for d in dicts if k in d) for k in keys}


def run_pipeline_bench(time_points: int, size_px: int, folder: Path | None,
                       fsync: bool = True, repeats: int = 1, viewer: bool = False,
                       shared_memory: bool = True) -> PipelineBenchResult:
    """Bare zmq, bare h5py raw, bare h5py same bytes and the pipeline, ``repeats`` times
    interleaved on the same frames; medians and per-repeat figures. Scratch files removed.
    ``viewer``: a display viewer process is attached to every pipeline run."""
    scratch = Path(tempfile.mkdtemp(prefix="livesim-bench-", dir=folder))
    try:
        bank = frame_bank(size_px)
        frames = time_points * bank.shape[1]

        def pipeline(where: Path) -> MemberOutcome:
            m = measure_pipeline(bank, time_points, where, fsync, viewer=viewer,
                                 shared_memory=shared_memory)
            lost, mismatched = check_lossless(m.path, bank, time_points)
            s = m.summary
            return MemberOutcome(m.fps, m.acquisition_cpu_s + m.worker_cpu_s, {
                "acquisition_cpu_s": m.acquisition_cpu_s, "worker_cpu_s": m.worker_cpu_s,
                "threads": {k: v * time_points / m.thread_sets  # per set, as the rest
                            for k, v in m.thread_cpu_s.items()},
                "lost": lost, "mismatched": mismatched,
                "p50": s.latency_percentile_ms(50), "p99": s.latency_percentile_ms(99),
                "sent": m.sets_sent, "by_reference": m.sets_by_reference,
                "sr_by_reference": m.sr_by_reference,
                "viewer_images": m.viewer_images,
                "sr_frames": s.sr_frames, "sr_skips": s.events.get("sr_skip", 0)})

        members: dict[str, Callable[[Path], MemberOutcome]] = {  # bare: (frames/s, CPU s)
            "bare zmq": lambda where: MemberOutcome(*bare_zmq_fps(bank, time_points, where)),
            "bare h5py raw": lambda where: MemberOutcome(
                *bare_h5py_fps(bank, time_points, where, fsync)),
            "bare h5py same bytes": lambda where: MemberOutcome(
                *bare_h5py_fps(bank, time_points, where, fsync, same_bytes=True)),
            "pipeline": pipeline,
        }
        runs = run_interleaved(members, repeats, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures = [_repeat_figures(run, frames) for run in runs]
    median = {m: statistics.median(f.fps[m] for f in figures) for m in MEMBERS}
    return PipelineBenchResult(
        time_points=time_points, size_px=size_px, fsync=fsync,
        pipeline_fps=median["pipeline"], zmq_fps=median["bare zmq"],
        h5py_fps=median["bare h5py raw"], h5py_same_bytes_fps=median["bare h5py same bytes"],
        latency_p50_ms=statistics.median(f.latency_p50_ms for f in figures),
        latency_p99_ms=statistics.median(f.latency_p99_ms for f in figures),
        raw_lost=sum(f.raw_lost for f in figures),
        raw_mismatched=sum(f.raw_mismatched for f in figures),
        sr_frames=sum(f.sr_frames for f in figures), sr_skips=sum(f.sr_skips for f in figures),
        cpu_ms_per_frame=_median_dicts([f.cpu_ms_per_frame for f in figures]),
        repeats=figures, viewer=viewer, shared_memory=shared_memory,
        sets_sent=sum(r.outcomes["pipeline"].extra["sent"] for r in runs),
        sets_by_reference=sum(r.outcomes["pipeline"].extra["by_reference"] for r in runs),
        sr_by_reference=sum(r.outcomes["pipeline"].extra["sr_by_reference"] for r in runs),
        viewer_images=sum(r.outcomes["pipeline"].extra["viewer_images"] for r in runs))


def _repeat_figures(run: RepeatRun, frames: int) -> RepeatFigures:
    """A repeat's outcomes as figures per raw frame."""
    pipe = run.outcomes["pipeline"].extra
    cpu = {"pipeline": run.outcomes["pipeline"].cpu_s,
           "pipeline acquisition process": pipe["acquisition_cpu_s"],
           "pipeline worker": pipe["worker_cpu_s"]}
    cpu.update({m: run.outcomes[m].cpu_s for m in MEMBERS if m != "pipeline"})
    return RepeatFigures(
        order=run.order, fps={m: run.outcomes[m].fps for m in MEMBERS},
        cpu_ms_per_frame={k: v * 1e3 / frames for k, v in cpu.items()}, sync_s=run.sync_s,
        dirty_mb=run.dirty_mb,
        latency_p50_ms=pipe["p50"], latency_p99_ms=pipe["p99"], raw_lost=pipe["lost"],
        raw_mismatched=pipe["mismatched"], sr_frames=pipe["sr_frames"],
        sr_skips=pipe["sr_skips"],
        thread_cpu_ms_per_frame={k: v * 1e3 / frames for k, v in pipe["threads"].items()})
