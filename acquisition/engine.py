"""AcquisitionEngine: runs one hardware sequence per time point on a rig, on schedule.

Frames come back tagged; the engine groups them into per-channel pattern sets, checks every
frame's sequence number (gaps are reported, never hidden), keeps the interval schedule and
measures its drift, and hands each time point (with its gaps) to one consumer,
``on_time_point`` (the run session). A continuous live mode runs the same loop on a thread
until stopped.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

from acquisition.protocol import AcquisitionRow
from acquisition.timing_summary import RunningStats
from hardware.errors import RigError, SequenceMismatch
from hardware.frames import TaggedFrame
from hardware.sequencing import SequencePlan

logger = logging.getLogger(__name__)


@runtime_checkable
class StageMover(Protocol):
    """What the engine needs to move between the positions / planes of a multi-D protocol."""

    def move_stage(self, x_um: float | None = None, y_um: float | None = None,
                   z_um: float | None = None, tolerance_um: float = 0.1
                   ) -> tuple[float, float, float]:
        """Move, wait for the stages, return where they report (x, y, z µm)."""
        ...


class FrameSource(Protocol):
    """What the engine needs from a rig (`hardware.rig.Rig`, a test's scripted source): one
    tagged, hardware-sequenced time point. A source may also offer ``stream(plan, time_points,
    timeout_s)`` (armed once for a run) or ``stream_time_point(plan, t, timeout_s)``."""

    def acquire_time_point(self, plan: SequencePlan, time_point: int, timeout_s: float
                           ) -> Sequence[TaggedFrame]:
        """Frames of every channel x pattern, in sequence order."""
        ...


@dataclass(frozen=True)
class RawSet:
    """One channel's pattern set at one time point, in pattern order (P, Y, X) uint16."""

    time_point: int
    channel: int
    laser_nm: int
    exposure_ms: float
    frames: np.ndarray
    timestamps_s: np.ndarray
    sequences: np.ndarray  # -1 where a pattern's frame never arrived
    widefield: np.ndarray | None = None  # float32 (Y, X) mean of ``frames`` (see group_sets)

    @cached_property
    def complete(self) -> bool:
        """True when every pattern's frame arrived."""
        return bool(np.all(self.sequences >= 0))

    @cached_property
    def frame_count(self) -> int:
        """How many of the set's frames arrived."""
        if self.complete:
            return len(self.sequences)
        return int(np.count_nonzero(self.sequences >= 0))


@dataclass(frozen=True)
class Gap:
    """Frames that should have arrived but did not: sequence numbers [first, first + count)."""

    time_point: int
    first_sequence: int
    count: int
    detail: str
    kind: str = "gap"  # gap | missing_frame | unexpected_frame | rig_error


@dataclass(frozen=True)
class TimePoint:
    """Everything acquired at one time point."""

    index: int
    scheduled_s: float
    started_s: float
    sets: tuple[RawSet, ...]
    gaps: tuple[Gap, ...] = ()

    @property
    def drift_s(self) -> float:
        """How late this time point started against its schedule."""
        return self.started_s - self.scheduled_s


@dataclass
class EngineReport:
    """Outcome of a run: time points done, gaps, failures and schedule drift."""

    time_points: int = 0
    frames: int = 0
    gaps: list[Gap] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    drift_s: RunningStats = field(default_factory=RunningStats)  # constant memory: runs of days
    stopped_reason: str = "completed"
    elapsed_s: float = 0.0

    @property
    def max_drift_s(self) -> float:
        """Worst lateness of a time point start."""
        return self.drift_s.maximum if self.drift_s.count else 0.0

    @property
    def mean_drift_s(self) -> float:
        """Mean lateness of time point starts."""
        return self.drift_s.mean if self.drift_s.count else 0.0


class SequenceChecker:
    """Follows the run-wide frame sequence numbers and reports every gap."""

    def __init__(self) -> None:
        self.next_sequence: int | None = None

    def check(self, time_point: int, sequences: Sequence[int]) -> list[Gap]:
        """Gaps before and between ``sequences`` (ascending); the expected next is advanced."""
        gaps = []
        for seq in sorted(sequences):
            if self.next_sequence is not None and seq > self.next_sequence:
                count = seq - self.next_sequence
                gaps.append(Gap(time_point, self.next_sequence, count,
                                f"{count} frame(s) missing before sequence {seq}"))
            elif self.next_sequence is not None and seq < self.next_sequence:
                gaps.append(Gap(time_point, seq, 0,
                                f"sequence {seq} repeated or out of order "
                                f"(expected {self.next_sequence})"))
                continue
            self.next_sequence = seq + 1
        return gaps


_FREE_REFERENCES = 3  # a pooled buffer nobody else holds: the pool's list, the loop, the call
WIDEFIELD_POOL_BYTES = 64 * 1024 * 1024  # reused float32 wide-field images kept, at most


class BufferSource(Protocol):
    """Where the engine groups a time point's frames: :class:`SetBufferPool` (heap) or the
    run's shared-memory ring (`acquisition.raw_ring.RawRing`)."""

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint16 array of ``shape`` that nothing else references."""
        ...


class SetBufferPool:
    """Reused (C, P, Y, X) uint16 buffers for the sets of a time point.

    A buffer is handed out again only once nothing else references it (no view of it is
    queued for the recorder, held by ZeroMQ until sent, or kept by a consumer), so reuse never
    overwrites frames in use. A fresh 4.7 MB array per 512 px SIM set cost ~1 ms of page
    faults and zeroing. When every pooled buffer is busy a new one is made (kept while the
    pool holds less than ``max_bytes``); beyond ``max_idle`` free buffers (after a burst)
    the extra ones are let go, so memory follows the number of sets in flight.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, max_idle: int = 4,
                 dtype: type[np.generic] = np.uint16) -> None:
        """``dtype``: of the buffers handed out (the recorder pools float32 wide-fields)."""
        self.max_bytes = max_bytes
        self.dtype = np.dtype(dtype)
        self.max_idle = max_idle
        self._buffers: list[np.ndarray] = []
        self.reused = 0
        self.made = 0

    def __len__(self) -> int:
        return len(self._buffers)

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised array of ``shape`` (the pool's dtype) nothing else references."""
        if self._buffers and self._buffers[0].shape != shape:
            self._buffers = []  # a new frame shape (ROI): the old buffers die with their users
        chosen: np.ndarray | None = None
        kept: list[np.ndarray] = []
        idle = 0
        for buffer in self._buffers:  # no enumerate: its reused tuple would hold a reference
            if sys.getrefcount(buffer) <= _FREE_REFERENCES:
                if chosen is None:
                    chosen = buffer
                else:
                    idle += 1
                    if idle > self.max_idle:
                        continue  # let go
            kept.append(buffer)
        self._buffers = kept
        if chosen is not None:
            self.reused += 1
            return chosen
        buffer = np.empty(shape, dtype=self.dtype)
        self.made += 1
        if (len(self._buffers) + 1) * buffer.nbytes <= self.max_bytes:
            self._buffers.append(buffer)
        return buffer


def group_sets(time_point: int, frames: Sequence[TaggedFrame], channel_lasers: Sequence[int],
               n_patterns: int, frame_shape: tuple[int, int] | None = None,
               pool: BufferSource | None = None, widefields: BufferSource | None = None
               ) -> tuple[list[RawSet], list[Gap]]:
    """Sort tagged frames into per-channel (P, Y, X) sets; missing patterns leave zeros + -1.

    With a ``pool`` the sets are views of a reused buffer (see :class:`SetBufferPool`). With
    ``widefields`` (float32 buffers) each set also gets its wide-field image, the float32 mean
    of its frames (missing ones count as zeros), summed as each frame is copied in, while the
    frame is still in the CPU cache: bit-identical to ``frames.mean(axis=0, dtype="<f4")``
    (up to 256 uint16 frames every partial sum is an exact integer), and at 512 px 1.3 against
    1.6 ms a set for the copy and a separate mean over the set.
    """
    n_channels = len(channel_lasers)
    if frame_shape is None:
        if not frames:
            raise RigError(f"time point {time_point}: no frames arrived")
        frame_shape = tuple(frames[0].image.shape)  # type: ignore[assignment]
    assert frame_shape is not None
    shape = (n_channels, n_patterns, *frame_shape)
    stacks = pool.take(shape) if pool is not None else np.zeros(shape, dtype=np.uint16)
    # per-frame bookkeeping in Python lists (a numpy scalar access costs several times more)
    seq_list = [-1] * (n_channels * n_patterns)
    stamp_list = [math.nan] * (n_channels * n_patterns)
    exposures = [0.0] * n_channels
    sums = widefields.take((n_channels, *frame_shape)) if widefields is not None else None
    summed = [False] * n_channels
    problems: list[Gap] = []
    for frame in frames:
        tag = frame.tag
        c, p = tag.channel, tag.pattern_index
        if not (0 <= c < n_channels and 0 <= p < n_patterns) or tag.time_point != time_point:
            problems.append(Gap(time_point, tag.sequence, 0,
                                f"unexpected frame t={tag.time_point} channel={c} pattern={p}",
                                "unexpected_frame"))
            continue
        i = c * n_patterns + p
        if seq_list[i] >= 0:
            problems.append(Gap(time_point, tag.sequence, 0,
                                f"duplicate frame channel={c} pattern={p}", "unexpected_frame"))
            continue
        image = frame.image
        if image.shape != frame_shape:
            problems.append(Gap(time_point, tag.sequence, 0,
                                f"frame shape {image.shape} is not {frame_shape}",
                                "unexpected_frame"))
            continue
        stored = stacks[c, p]
        stored[...] = image
        if sums is not None:  # from the stored copy: the set's own values, still in cache
            if summed[c]:
                np.add(sums[c], stored, out=sums[c])
            else:
                np.copyto(sums[c], stored, casting="unsafe")
                summed[c] = True
        stamp_list[i] = tag.timestamp_s
        seq_list[i] = tag.sequence
        exposures[c] = tag.exposure_ms
    seqs = np.array(seq_list, dtype=np.int64).reshape(n_channels, n_patterns)
    stamps = np.array(stamp_list, dtype=np.float64).reshape(n_channels, n_patterns)
    for i, seq in enumerate(seq_list):
        if seq < 0:
            c, p = divmod(i, n_patterns)
            stacks[c, p] = 0  # a pooled buffer holds an earlier set's frame there
            problems.append(Gap(time_point, -1, 1, f"no frame for channel={c} pattern={p}",
                                "missing_frame"))
    if sums is not None:
        for c in range(n_channels):
            if not summed[c]:
                sums[c] = 0
        np.divide(sums, np.float32(n_patterns), out=sums)
    sets = [RawSet(time_point, c, int(channel_lasers[c]), float(exposures[c]), stacks[c],
                   stamps[c], seqs[c], sums[c] if sums is not None else None)
            for c in range(n_channels)]
    return sets, problems


class AcquisitionEngine:
    """Drives a :class:`FrameSource` through time points on an interval schedule."""

    def __init__(self, source: FrameSource, plan: SequencePlan, channel_lasers: Sequence[int],
                 n_patterns: int, interval_s: float = 0.0, timeout_s: float = 10.0,
                 on_time_point: Callable[[TimePoint], None] | None = None,
                 max_consecutive_failures: int = 3, clock: Callable[[], float] = time.monotonic,
                 rows: Sequence[AcquisitionRow] | None = None, stage: StageMover | None = None,
                 buffers: BufferSource | None = None, widefields: bool = False) -> None:
        """``rows`` (multi-D): row n is taken at ``rows[n]``'s stage target after ``stage``
        moved there, on the schedule of its time index (every row of a time index starts as
        soon as the one before it ends). ``buffers``: where sets are grouped (default: a
        :class:`SetBufferPool`; a run's shared-memory ring). ``widefields``: each set also
        carries its wide-field image (see :func:`group_sets`; a recording writes it)."""
        self.source = source
        self.plan = plan
        self.channel_lasers = tuple(int(x) for x in channel_lasers)
        self.n_patterns = n_patterns
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.on_time_point = on_time_point or (lambda point: None)
        self.max_consecutive_failures = max_consecutive_failures
        self._clock = clock
        self._checker = SequenceChecker()
        self._stop = threading.Event()
        self._live_thread: threading.Thread | None = None
        self._stream: Iterator[TaggedFrame] | None = None
        self._stream_next = -1
        self._end_time_point: int | None = None
        self._pool: BufferSource = buffers if buffers is not None else SetBufferPool()
        self._widefields = (SetBufferPool(max_bytes=WIDEFIELD_POOL_BYTES, max_idle=2,
                                          dtype=np.float32) if widefields else None)
        self.report = EngineReport()
        if rows is not None and stage is None and any(
                (r.x_um, r.y_um, r.z_um, r.z_offset_um) != (None,) * 4 for r in rows):
            raise ValueError("rows with stage targets need a stage to move")
        self.rows = list(rows) if rows is not None else None
        self.stage = stage
        self._stage_at: tuple[float | None, float | None, float | None] | None = None
        self._focus_start_um: float | None = None

    def stop(self) -> None:
        """Ask the loop to stop after the time point in progress."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def run(self, n_time_points: int | None, first_time_point: int = 0) -> EngineReport:
        """Acquire ``n_time_points`` (None: until stopped) on schedule; return the report."""
        report = self.report = EngineReport()
        self._end_time_point = None if n_time_points is None else first_time_point + n_time_points
        start = self._clock()
        failures_in_row = 0
        t = first_time_point
        first_index = self._time_index(first_time_point)
        while n_time_points is None or t < first_time_point + n_time_points:
            scheduled = start + (self._time_index(t) - first_index) * self.interval_s
            if self._stop.wait(max(0.0, scheduled - self._clock())):
                report.stopped_reason = "stopped"
                break
            started = self._clock()
            later_row = (self.rows is not None and t > first_time_point
                         and self._time_index(t) == self._time_index(t - 1))
            if self.interval_s == 0 or later_row:
                scheduled = started  # continuous, or a later row of its time point: no drift
            failure = self._move_stage(t)
            frames: list[TaggedFrame] = []
            if failure is None:
                frames, failure = self._acquire(t)
            failure_gaps: list[Gap] = []
            if failure is not None:
                failures_in_row += 1
                report.failures.append(f"time point {t}: {failure}")
                logger.error("time point %d failed after %d frame(s): %s", t, len(frames),
                             failure)
                frames, gap = self._failure_gap(t, frames, failure)
                failure_gaps.append(gap)
                if failures_in_row >= self.max_consecutive_failures:
                    report.stopped_reason = (
                        f"{failures_in_row} time points failed in a row: {failure}")
            else:
                failures_in_row = 0
            if frames:
                sets, problems = group_sets(t, frames, self.channel_lasers, self.n_patterns,
                                            pool=self._pool, widefields=self._widefields)
            else:
                sets, problems = [], []
            arrived = [s for raw in sets for s in raw.sequences.tolist() if s >= 0]
            gaps = failure_gaps + problems + self._checker.check(t, arrived)
            for gap in gaps:
                logger.warning("time point %d: %s", t, gap.detail)
            point = TimePoint(t, scheduled, started, tuple(sets), tuple(gaps))
            report.gaps.extend(gaps)
            report.drift_s.add(point.drift_s)
            report.time_points += 1
            report.frames += len(arrived)
            if self.interval_s > 0 and point.drift_s > self.interval_s:
                logger.warning("time point %d started %.3f s late", t, point.drift_s)
            self.on_time_point(point)
            if failures_in_row >= self.max_consecutive_failures:
                break
            t += 1
        self._close_stream()
        report.elapsed_s = self._clock() - start
        return report

    def _time_index(self, row: int) -> int:
        """The time index a row belongs to (the row itself without multi-D rows)."""
        if self.rows is None:
            return row
        return self.rows[min(row, len(self.rows) - 1)].t

    def _move_stage(self, t: int) -> RigError | None:
        """Move to row ``t``'s stage target (if it differs from the last); the error if any."""
        if self.rows is None or self.stage is None or t >= len(self.rows):
            return None
        row = self.rows[t]
        try:
            if row.z_offset_um is not None and self._focus_start_um is None:
                self._focus_start_um = self.stage.move_stage()[2]  # where the run started
            z_um = row.z_um
            if row.z_offset_um is not None and self._focus_start_um is not None:
                z_um = self._focus_start_um + row.z_offset_um
            target = (row.x_um, row.y_um, z_um)
            if target != self._stage_at:
                reached = self.stage.move_stage(*target)
                self._stage_at = target
                logger.debug("row %d: stage at x=%.3f y=%.3f z=%.3f µm", t, *reached)
        except RigError as exc:
            self._stage_at = None
            self._close_stream()
            return exc
        return None

    def _failure_gap(self, t: int, frames: list[TaggedFrame], failure: RigError
                     ) -> tuple[list[TaggedFrame], Gap]:
        """The frames of a failed time point that can be trusted, and the rig-error gap.

        A :class:`SequenceMismatch` means the devices lost step somewhere in this time point:
        frames that already arrived may show another pattern than their tag says, so none of
        them is stored (the event says how many were discarded); after a timeout the frames
        that did arrive were checked one by one and are kept.
        """
        trusted = [] if isinstance(failure, SequenceMismatch) else frames
        expected = len(self.channel_lasers) * self.n_patterns
        detail = f"rig error: {failure}"
        if len(trusted) < len(frames):
            detail += (f"; {len(frames)} frame(s) of this time point discarded: the sequence "
                       "lost sync, so their pattern labels cannot be trusted")
        return trusted, Gap(t, -1, expected - len(trusted), detail, "rig_error")

    def change_plan(self, plan: SequencePlan) -> None:
        """Acquire with ``plan`` from the next time point on (devices armed for the rest of the
        run are re-armed with it). Call between time points, i.e. from ``on_time_point``."""
        self.plan = plan
        self._close_stream()

    def _acquire(self, t: int) -> tuple[list[TaggedFrame], RigError | None]:
        """Frames of time point ``t`` as they stream in; on a rig error keep what arrived.

        With a known end and a source offering ``stream(plan, time_points, timeout_s)`` the
        devices are armed once for the rest of the run (one trigger burst per time point);
        after an error a fresh stream starts at the next time point.
        """
        frames: list[TaggedFrame] = []
        n_frames = len(self.channel_lasers) * self.n_patterns
        try:
            if self._end_time_point is not None and hasattr(self.source, "stream"):
                if self._stream is None or self._stream_next != t:
                    self._close_stream()
                    points = list(range(t, self._end_time_point))
                    self._stream = iter(self.source.stream(self.plan, points, self.timeout_s))
                for _ in range(n_frames):
                    frames.append(next(self._stream))
                self._stream_next = t + 1
            elif hasattr(self.source, "stream_time_point"):
                frames.extend(self.source.stream_time_point(self.plan, t, self.timeout_s))
            else:
                frames = list(self.source.acquire_time_point(self.plan, t, self.timeout_s))
        except RigError as exc:
            self._close_stream()
            return frames, exc
        except StopIteration:
            self._close_stream()
            return frames, RigError(f"time point {t}: the frame stream ended early")
        return frames, None

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # runs the rig's clean-up (disarm)

    def start_live(self) -> None:
        """Run continuously on a thread (GUI live view) until :meth:`stop_live`."""
        if self._live_thread is not None and self._live_thread.is_alive():
            raise RuntimeError("live mode is already running")
        self._stop.clear()
        self._live_thread = threading.Thread(target=self.run, args=(None,), name="live",
                                             daemon=True)
        self._live_thread.start()

    def stop_live(self, timeout_s: float = 10.0) -> None:
        """Stop live mode and wait (bounded) for the loop to end."""
        self._stop.set()
        if self._live_thread is not None:
            self._live_thread.join(timeout_s)
            if self._live_thread.is_alive():
                raise RuntimeError(f"live loop did not stop within {timeout_s:.0f} s")
            self._live_thread = None

    @property
    def is_live(self) -> bool:
        """True while live mode runs."""
        return self._live_thread is not None and self._live_thread.is_alive()
