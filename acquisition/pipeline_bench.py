"""`livesim bench pipeline`: the whole raw path against the bare limits of its two links.

Emulator fast path (frames pre-rendered into a bank, so rendering cost is not counted: a real
camera delivers frames for free) -> AcquisitionEngine -> ZeroMQ -> passthrough worker process
-> results back -> RunRecorder (SWMR, flushed per time point). In the same run and on the same
frames: bare pyzmq PUSH/PULL to another process, and bare h5py writing the raw frames the way
the recorder does (same file options and chunking, direct chunk writes, flush per time point,
fsync per time point on a second thread), raw only and with the same bytes as the run file;
a plain h5py loop (slicing writes, fsync inline) is shown for reference. Reports sustained
lossless raw frames/s, SR latency p50/p99 and the ratio of the pipeline to the slower bare
limit, plus CPU time per raw frame of each (all threads and processes involved, from the first
frame to the file closed: it depends far less than frames/s on how loaded the machine is).
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zmq

from acquisition import run_file
from acquisition.fsync_behind import FsyncBehind
from acquisition.protocol import Protocol
from acquisition.recorder import widefield_mean
from acquisition.session import RunSession, SessionOptions
from acquisition.transport import Endpoints
from acquisition.wire import Kind, encode, header_for

logger = logging.getLogger(__name__)

BANK_SETS = 4
LASER_NM = 488


@dataclass
class PipelineBenchResult:
    """Figures of one bench run (frames/s are raw camera frames)."""

    time_points: int
    size_px: int
    fsync: bool
    pipeline_fps: float
    zmq_fps: float
    h5py_fps: float  # raw only, written as the recorder writes (the limit of the ratio)
    h5py_same_bytes_fps: float  # raw + wide-field + SR, written as the recorder writes
    latency_p50_ms: float
    latency_p99_ms: float
    raw_lost: int
    raw_mismatched: int
    sr_frames: int
    sr_skips: int
    cpu_ms_per_frame: dict[str, float]
    h5py_plain_fps: float = float("nan")  # raw only, slicing writes, fsync inline (reference)

    @property
    def ratio(self) -> float:
        """Pipeline throughput over the slower bare limit."""
        return self.pipeline_fps / min(self.zmq_fps, self.h5py_fps)

    @property
    def same_bytes_ratio(self) -> float:
        """Pipeline throughput over bare h5py writing the run file's bytes."""
        return self.pipeline_fps / self.h5py_same_bytes_fps

    def lines(self) -> list[str]:
        """The report printed by the command."""
        n = self.time_points * 9
        return [
            f"frames: {n} raw ({self.time_points} SIM sets of 9 x {self.size_px}x{self.size_px} "
            f"uint16), fsync per time point: {self.fsync}",
            f"bare pyzmq PUSH/PULL (ipc, other process):    {self.zmq_fps:8.0f} frames/s",
            f"bare h5py raw, as the recorder writes:        {self.h5py_fps:8.0f} frames/s",
            f"bare h5py, same bytes as the run (raw+wf+SR): {self.h5py_same_bytes_fps:8.0f} "
            "frames/s",
            f"plain h5py loop, raw (slicing, fsync inline): {self.h5py_plain_fps:8.0f} frames/s",
            f"pipeline (engine->zmq->worker->recorder):     {self.pipeline_fps:8.0f} frames/s",
            f"ratio to the slower bare limit: {self.ratio:.2f} (target >= 0.8)",
            f"ratio to bare h5py writing the same bytes: {self.same_bytes_ratio:.2f}",
            f"ratio to the plain h5py loop: {self.pipeline_fps / self.h5py_plain_fps:.2f}",
            f"raw lost: {self.raw_lost}, raw differing from source: {self.raw_mismatched}",
            f"SR frames: {self.sr_frames}, SR skips recorded: {self.sr_skips}",
            f"SR latency (raw sent -> SR received): p50 {self.latency_p50_ms:.1f} ms, "
            f"p99 {self.latency_p99_ms:.1f} ms",
            "CPU ms per raw frame (all processes): " + ", ".join(
                f"{name} {ms:.2f}" for name, ms in self.cpu_ms_per_frame.items()),
        ]


def frame_bank(size_px: int, seed: int = 0) -> np.ndarray:
    """BANK_SETS emulated SIM sets (BANK_SETS, 9, Y, X) uint16 from the fast path."""
    from sim_emulator.fast_path import FastFrameSource
    from sim_emulator.microscope import EmulatorConfig, Microscope

    microscope = Microscope(EmulatorConfig(size_px=size_px, seed=seed))
    source = FastFrameSource(microscope, seed=seed)
    return np.stack([source.set_frames(0.25 * i, LASER_NM, 20.0, 10.0)
                     for i in range(BANK_SETS)])


class BankSource:
    """A frame source with the rig's streaming form, cycling through a bank of sets."""

    def __init__(self, bank: np.ndarray) -> None:
        from hardware.frames import FrameTag, TaggedFrame

        self._tag, self._frame = FrameTag, TaggedFrame
        self.bank = bank
        self.sequence = 0

    def stream_time_point(self, plan: Any, time_point: int, timeout_s: float) -> Iterator[Any]:
        """The next set's frames, tagged like the rig tags them."""
        frames = self.bank[time_point % len(self.bank)]
        for p in range(frames.shape[0]):
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
    wide-field mean and a uint16 2x SR image). ``plain`` is the simplest loop instead: slicing
    writes and the fsync inline. Timed from the first write to the file closed.
    """
    path = folder / "bare.h5"
    frame = bank.shape[2:]
    sr_image = np.zeros((2 * frame[0], 2 * frame[1]), np.uint16)
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
                wf.id.write_direct_chunk((t, 0, 0, 0), widefield_mean(frames))
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


def pipeline_run(bank: np.ndarray, time_points: int, folder: Path, fsync: bool
                 ) -> tuple[float, Any, Path]:
    """The full pipeline on the bank; returns frames/s (start to file closed), summary, path."""
    fps, summary, path, _cpu = measured_pipeline_run(bank, time_points, folder, fsync)
    return fps, summary, path


def measured_pipeline_run(bank: np.ndarray, time_points: int, folder: Path, fsync: bool
                          ) -> tuple[float, Any, Path, float]:
    """The full pipeline on the bank: frames/s (first time point to file closed), summary,
    path, and CPU seconds from the first time point to the file closed (this process + the
    worker)."""
    fps, summary, path, acquisition_cpu, worker_cpu = split_pipeline_run(bank, time_points,
                                                                         folder, fsync)
    return fps, summary, path, acquisition_cpu + worker_cpu


class _MeasuredSession(RunSession):
    """A RunSession that notes the worker's CPU seconds when the run file has been closed."""

    worker_cpu_at_close_s = float("nan")

    def _finish(self, summary: Any) -> Any:
        summary = super()._finish(summary)
        if self.supervisor is not None and self.supervisor.process is not None:
            self.worker_cpu_at_close_s = process_cpu_s(self.supervisor.process.pid)
        return summary


def split_pipeline_run(bank: np.ndarray, time_points: int, folder: Path, fsync: bool
                       ) -> tuple[float, Any, Path, float, float]:
    """The full pipeline on the bank: frames/s (first time point to file closed), summary,
    path, and the CPU seconds of the acquisition process and of the worker over that time
    (worker start-up and its exit after the file is closed are not counted)."""
    output = folder / "pipeline.h5"
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": LASER_NM, "reconstruction": "passthrough"}],
        "timepoints": time_points, "output": str(output), "overwrite": True})
    (folder / "ep").mkdir(exist_ok=True)
    session = _MeasuredSession(BankSource(bank), None, protocol, (bank.shape[2], bank.shape[3]),
                               62.6, options=SessionOptions(fsync=fsync),
                               endpoints=Endpoints.ipc(folder / "ep"))
    at_start: list[float] = []

    def first_time_point(_progress: Any) -> None:
        if not at_start and session.supervisor and session.supervisor.process:
            # the worker's start-up (imports, model) is not part of the pipeline's cost
            at_start.extend([cpu_s(), process_cpu_s(session.supervisor.process.pid)])

    summary = session.run(progress=first_time_point)
    acquisition_cpu = cpu_s() - at_start[0]  # after the close: only the worker's stop waited
    if summary.error:
        raise RuntimeError(f"pipeline run failed: {summary.error}")
    worker_cpu = session.worker_cpu_at_close_s - at_start[1]
    return summary.raw_frames / summary.recorded_s, summary, output, acquisition_cpu, worker_cpu


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


def run_pipeline_bench(time_points: int, size_px: int, folder: Path | None,
                       fsync: bool = True) -> PipelineBenchResult:
    """Run all three measurements on the same frames; scratch files are removed after."""
    scratch = Path(tempfile.mkdtemp(prefix="livesim-bench-", dir=folder))
    try:
        bank = frame_bank(size_px)
        frames = time_points * bank.shape[1]
        zmq_fps, zmq_cpu = bare_zmq_fps(bank, time_points, scratch)
        h5_fps, h5_cpu = bare_h5py_fps(bank, time_points, scratch, fsync)
        h5_same_fps, h5_same_cpu = bare_h5py_fps(bank, time_points, scratch, fsync,
                                                 same_bytes=True)
        plain_fps, plain_cpu = bare_h5py_fps(bank, time_points, scratch, fsync, plain=True)
        pipe_fps, summary, path, acq_cpu, worker_cpu = split_pipeline_run(
            bank, time_points, scratch, fsync)
        lost, mismatched = check_lossless(path, bank, time_points)
        cpu_ms = {"pipeline": acq_cpu + worker_cpu, "pipeline acquisition process": acq_cpu,
                  "pipeline worker": worker_cpu, "bare zmq": zmq_cpu, "bare h5py raw": h5_cpu,
                  "bare h5py same bytes": h5_same_cpu, "plain h5py loop": plain_cpu}
        return PipelineBenchResult(
            time_points=time_points, size_px=size_px, fsync=fsync, pipeline_fps=pipe_fps,
            zmq_fps=zmq_fps, h5py_fps=h5_fps, h5py_same_bytes_fps=h5_same_fps,
            h5py_plain_fps=plain_fps,
            latency_p50_ms=summary.latency_percentile_ms(50),
            latency_p99_ms=summary.latency_percentile_ms(99), raw_lost=lost,
            raw_mismatched=mismatched, sr_frames=summary.sr_frames,
            sr_skips=summary.events.get("sr_skip", 0),
            cpu_ms_per_frame={k: v * 1e3 / frames for k, v in cpu_ms.items()})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
