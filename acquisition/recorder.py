"""RunRecorder: the one HDF5 writer of a run, a thread fed by a bounded queue, in SWMR mode.

The acquisition thread hands raw sets, results and events to :class:`RunRecorder`; a writer
thread appends them to the run file and flushes after every time point, so a killed process
loses at most the time point in flight and what was queued; a backlog is written as one group
with one flush (:meth:`RunRecorder._write_batch`). Image frames go straight to their chunks
(one chunk per frame, no filters: ``write_direct_chunk``), SR images as uint16 scaled from
[0, 1]. The fsync after each flush runs on a second thread, overlapping the disk with the next
time point's writes; :attr:`RunRecorder.durable_time_point` says what has reached the disk. An I/O
error (disk full, ...) stops the writer, closes the file cleanly and is reported through
:attr:`RunRecorder.error`; the acquisition then stops with a clear message. Layout names come
from :mod:`acquisition.run_file`.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import multiprocessing
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition import run_file
from acquisition.engine import WIDEFIELD_POOL_BYTES, SetBufferPool
from acquisition.fsync_behind import FsyncBehind

logger = logging.getLogger(__name__)

DEFAULT_IMC_CHANNELS = run_file.IMC_DEFAULT_CHANNEL_NAMES
FAULT_SEAL_TIMEOUT_S = 60.0  # the child process adding the fault row after a write failure
WIDEFIELD_BAND_BYTES = 512 * 1024  # float32 partial sums per band (fits a core's L2 cache)


class RecorderError(RuntimeError):
    """The run file cannot be written (I/O error, disk full, writer too slow); run must stop."""


@dataclass(frozen=True)
class RunLayout:
    """Shapes of one run file: channels, patterns per set, raw and SR frame sizes, models."""

    n_channels: int
    n_orientations: int
    n_phases: int
    frame_shape: tuple[int, int]  # (y, x) of one raw frame
    sr_shape: tuple[int, int]  # (y, x) of one SR image
    pixel_size_nm: float  # raw pixel in the sample plane
    sr_models: tuple[str, ...] = ()
    imc: bool = False
    channel_names: tuple[str, ...] = ()
    imc_channel_names: tuple[str, ...] = DEFAULT_IMC_CHANNELS
    mda: run_file.MdaLayout | None = None  # multi-D runs: which (t, p, z) each row holds

    @property
    def n_patterns(self) -> int:
        """Raw frames per channel per time point."""
        return self.n_orientations * self.n_phases

    @property
    def sr_pixel_size_nm(self) -> float:
        """Pixel size of the SR grid."""
        return self.pixel_size_nm * self.frame_shape[0] / self.sr_shape[0]


@dataclass(frozen=True)
class QcRecord:
    """The trust record of one SR image (inference.trust) as /qc stores it."""

    raw_chi2: float
    resolution_scaled_pearson: float
    beyond_support_fraction: float
    raw_chi2_map: np.ndarray  # (my, mx) raw-consistency map


@dataclass
class RecorderStats:
    """What the writer has done so far (read by the progress display)."""

    raw_frames: int = 0
    sr_frames: int = 0
    imc_frames: int = 0
    time_points: int = 0
    bytes_written: int = 0
    events: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Item:
    op: str
    args: tuple[Any, ...]


_CLOSE = _Item("close", ())
_TIME_POINT_OPS = frozenset({"raw", "sr", "imc", "end"})  # items whose args[0] is the time point


class RunRecorder:
    """Creates the run file, then writes queued data on its own thread (SWMR, flushed)."""

    def __init__(self, path: Path, layout: RunLayout, metadata: Mapping[str, Any],
                 calibration: Mapping[str, np.ndarray] | None = None, queue_size: int = 64,
                 put_timeout_s: float = 10.0, fsync: bool = True, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.layout = layout
        self.stats = RecorderStats()
        self.error: RecorderError | None = None
        self._put_timeout_s = put_timeout_s
        # items in flight (queued or in the writer's batch) hold a slot each: the bound on memory
        self._queue_size = queue_size
        self._slots = threading.BoundedSemaphore(queue_size)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._ended = -1  # the newest time point ended and not yet flushed (-1: none)
        self._unwritten = 0  # items of the writer's group not yet written (each holds a slot)
        self._widefields = SetBufferPool(max_bytes=WIDEFIELD_POOL_BYTES, max_idle=2,
                                         dtype=np.float32)
        self._n_time_points = 0
        self._closed = False
        self._lock = threading.Lock()
        if self.path.exists() and not overwrite:
            raise RecorderError(f"{self.path}: exists; refusing to overwrite a run file")
        _check_free_space(self.path, creation_bytes(layout, metadata, calibration or {}))
        try:
            self._h5 = h5py.File(self.path, "w", libver="latest",
                                 rdcc_nbytes=run_file.WRITER_CHUNK_CACHE_BYTES)
        except OSError as exc:
            raise RecorderError(f"{self.path}: cannot create run file: "
                                f"{_os_error_text(exc)}") from exc
        self._fd = self._h5.id.get_vfd_handle()
        self._file_identity = _identity(os.fstat(self._fd))  # to never detach another file
        self._lock_fd = run_file.hold_recording_lock(self.path)  # `recover` refuses the file
        self._datasets: dict[str, h5py.Dataset] = {}
        try:
            self._datasets = self._create_layout(metadata, calibration or {})
            run_file.create_fault_reserve(self._h5)  # room for the fault row on a full disk
            self._h5.swmr_mode = True
            self._h5.flush()
        except (OSError, RuntimeError) as exc:  # disk full, quota, I/O error while creating
            self._abandon_handle(sink_writes=True)  # HDF5 retrying at exit would crash
            self._release_lock()
            self.path.unlink(missing_ok=True)  # nothing was recorded: no half-made file left
            raise RecorderError(f"{self.path}: cannot create run file: "
                                f"{_os_error_text(exc)}") from exc
        self._sync = FsyncBehind(self._fd, str(self.path)) if fsync else None
        self._thread = threading.Thread(target=self._write_loop, name="run-recorder", daemon=True)
        self._thread.start()

    # --- producer side (acquisition thread) -------------------------------------------------

    def write_raw_set(self, time_point: int, channel: int, frames: np.ndarray,
                      timestamps_s: Sequence[float] | np.ndarray,
                      sequences: Sequence[int] | np.ndarray,
                      widefield: np.ndarray | None = None) -> None:
        """Queue one channel's (P, Y, X) uint16 set with its per-frame timestamps and sequence.

        ``widefield``: the set's float32 (Y, X) mean when the caller made it (the engine sums
        it while grouping the frames); otherwise it is computed here.
        """
        expected = (self.layout.n_patterns, *self.layout.frame_shape)
        if frames.shape != expected or frames.dtype != np.uint16:
            raise RecorderError(f"raw set {frames.dtype}{frames.shape} does not match the run "
                                f"layout uint16{expected}")
        if widefield is None:  # here, off the writer's critical path, into a reused buffer
            widefield = widefield_mean(frames, self._widefields.take(self.layout.frame_shape))
        elif widefield.shape != self.layout.frame_shape or widefield.dtype != np.float32:
            raise RecorderError(f"wide-field image {widefield.dtype}{widefield.shape} does not "
                                f"match the run layout float32{self.layout.frame_shape}")
        self._put(_Item("raw", (time_point, channel, frames, widefield,
                                np.asarray(timestamps_s, np.float64),
                                np.asarray(sequences, np.int64))))

    def write_sr(self, time_point: int, channel: int, model: str, image: np.ndarray,
                 photon_count: float, latency_ms: float, inference_ms: float,
                 sim_params: np.ndarray | None = None, qc: QcRecord | None = None,
                 method: str = "") -> None:
        """Queue one SR image (sY, sX) of ``model`` with its photon count and timings.

        ``image`` is float in [0, 1] or already stored form (uint16, ``run_file.SR_SCALE``);
        ``sim_params`` (n_orientations, 4): the pattern a Wiener reconstruction used;
        ``qc``: its trust record (/qc); ``method``: what made it (``--model auto``: per set).
        """
        if model not in self.layout.sr_models:
            raise RecorderError(f"SR model {model!r} was not declared for this run "
                                f"({list(self.layout.sr_models)})")
        self._put(_Item("sr", (time_point, channel, model, image, photon_count, latency_ms,
                               inference_ms, sim_params, qc, method)))

    def write_imc(self, time_point: int, image: np.ndarray) -> None:
        """Queue one IMC-SR three-structure image (3, sY, sX)."""
        if not self.layout.imc:
            raise RecorderError("IMC was not enabled for this run")
        self._put(_Item("imc", (time_point, image)))

    def record_event(self, kind: str, time_point: int = -1, sequence: int = -1,
                     detail: str | Mapping[str, Any] = "") -> None:
        """Queue an event (gap, skip, fault, ...) for /events; also logged."""
        text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
        logger.info("event %s t=%d seq=%d %s", kind, time_point, sequence, text)
        self._put(_Item("event", (time.time(), kind, time_point, sequence, text)))

    def end_time_point(self, time_point: int, complete: bool = True) -> None:
        """End ``time_point``: /timestamps/complete gets 1 (every frame of every channel
        stored) or 0 (frames missing or discarded as unverifiable); the writer flushes (and
        fsyncs) the file either way."""
        self._put(_Item("end", (time_point, complete)))

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, flush and close the file; raise if the writer failed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            self._queue.put(_CLOSE)  # takes no slot: close never waits for room
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RecorderError(f"{self.path}: writer did not finish within {timeout_s:.0f} s")
        if self.error is not None:
            raise self.error

    def _put(self, item: _Item) -> None:
        if self.error is not None:
            raise self.error
        if self._closed:
            raise RecorderError(f"{self.path}: recorder is closed")
        if not self._slots.acquire(timeout=self._put_timeout_s):
            if self.error is not None:
                raise self.error
            raise RecorderError(
                f"{self.path}: the disk has not kept up for {self._put_timeout_s:.0f} s "
                f"({self._queue_size} items queued); stopping rather than dropping frames")
        if self.error is not None:  # the writer failed while this waited for room
            self._slots.release()
            raise self.error
        self._queue.put(item)

    # --- writer thread ----------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while self._write_batch():
                pass
        except Exception as exc:  # thread boundary: any failure must stop the run cleanly
            self.error = RecorderError(f"{self.path}: writing stopped: {_os_error_text(exc)}")
            logger.error("%s", self.error)
            self._release_slots(self._unwritten)  # a producer waiting for room gets the error
            self._seal_after_failure(exc)
        else:
            self._finish()
        finally:
            self._release_lock()
            self._discard_queue()

    def _release_slots(self, n: int) -> None:
        for _ in range(n):
            self._slots.release()
        self._unwritten -= n

    def _seal_after_failure(self, exc: BaseException) -> None:
        """After a failed write: nothing more through this HDF5 handle, then seal the file.

        The handle's cache may hold metadata and chunks it can no longer write, so its
        descriptor is pointed at /dev/null, where HDF5's last writes succeed and go nowhere,
        and its objects are closed; what is on disk is the last flush, as after a kill (a
        close whose writes fail, e.g. with an event row still in the chunk cache, leaves
        HDF5's library state broken: the next file this process writes crashes). The SWMR
        flags are cleared in place and a fresh process appends the "fault" row in the space
        of the fault reserve.
        """
        from acquisition.recovery import RecoveryError, clear_consistency_flags

        self._stop_sync()
        self._abandon_handle(sink_writes=True)
        detail = f"recorder I/O error: {_os_error_text(exc)}"
        try:
            clear_consistency_flags(self.path)
            _append_fault_event_in_child(self.path, detail)
        except (OSError, RecoveryError, RecorderError) as err:
            logger.error("could not seal %s after the failure: %s", self.path, err)
            self.error = RecorderError(f"{self.error}; the file could not be sealed ({err}): "
                                       f"run `livesim recover {self.path}`")
            return
        self.stats.events["fault"] += 1
        logger.info("%s: closed with a fault event; every flushed time point is kept",
                    self.path)

    def _abandon_handle(self, sink_writes: bool = False) -> None:
        """Close the HDF5 handle without letting it write anything more to the run file.

        ``sink_writes``: HDF5's last writes succeed into /dev/null instead of failing (a
        handle that cannot flush at close leaves HDF5 broken: a crash at exit or at the next
        file); without it they fail (EBADF).
        """
        try:
            if _identity(os.fstat(self._fd)) == self._file_identity:
                null = os.open(os.devnull, os.O_RDWR if sink_writes else os.O_RDONLY)
                try:
                    os.dup2(null, self._fd)  # later writes fail (EBADF); the flock is released
                finally:
                    os.close(null)
        except OSError as exc:  # already closed by HDF5: nothing left to detach
            logger.debug("could not detach %s from its HDF5 handle: %s", self.path, exc)
        for dataset in self._datasets.values():
            try:
                dataset.id.close()
            except (OSError, RuntimeError, ValueError) as exc:
                logger.debug("closing %s after the failure: %s", dataset.name, exc)
        try:
            self._h5.close()
        except (OSError, RuntimeError, ValueError) as exc:
            logger.debug("closing %s after the failure: %s", self.path, exc)

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    @property
    def durable_time_point(self) -> int:
        """Every time point up to this one is fsynced (-1: none yet, or fsync off)."""
        return self._sync.durable_time_point if self._sync is not None else -1

    def _stop_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()

    def _finish(self) -> None:
        self._stop_sync()
        if self._sync is not None and self._sync.error is not None:
            self.error = RecorderError(f"{self.path}: fsync failed: "
                                       f"{_os_error_text(self._sync.error)}")
            self._seal_after_failure(self._sync.error)
            return
        try:
            self._store_table_rows()
            run_file.release_fault_reserve(self._h5)
            self._h5.flush()
            if self._sync is not None:
                os.fsync(self._fd)
            self._h5.close()
        except (OSError, RuntimeError, ValueError) as exc:
            self.error = RecorderError(f"{self.path}: closing failed: {_os_error_text(exc)}")
            logger.error("%s", self.error)
            self._seal_after_failure(exc)

    def _discard_queue(self) -> None:
        while True:  # unblock producers; nothing more can be written
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _CLOSE:
                self._slots.release()

    def _write_batch(self) -> bool:
        """Write what is queued now, as one group: False once the close item was met.

        A backlog (the disk or this thread fell behind) is written as a group: the datasets
        grow once to its newest ended time point, table chunks are written once, and the file
        is flushed once, after the group's last ended time point. Nothing is flushed earlier
        than one by one, and a time point waiting in the queue was no safer than one written
        and not yet flushed. Without a backlog a group is one item: a flush per time point.
        """
        batch = [self._queue.get()]
        while len(batch) < self._queue_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        closing = _CLOSE in batch
        if closing:  # items put while close() ran come after it: never written
            cut = batch.index(_CLOSE)
            for _ in batch[cut + 1:]:
                self._slots.release()
            batch = batch[:cut]
        self._unwritten = len(batch)
        ends = [i for i, item in enumerate(batch) if item.op == "end"]
        if ends:
            self._grow_to(max(item.args[0] for item in batch[:ends[-1] + 1]
                              if item.op in _TIME_POINT_OPS))
        for i, item in enumerate(batch):
            getattr(self, f"_do_{item.op}")(*item.args)
            self._release_slots(1)
            if ends and i == ends[-1]:
                self._flush_ended()
        return not closing

    def _flush_ended(self) -> None:
        """Flush the file (the table rows first) and have it fsynced up to the time point
        last ended."""
        self._store_table_rows()
        self._h5.flush()
        t = self._ended
        if self._sync is not None:
            if self._sync.error is not None:
                raise self._sync.error
            self._sync.request(t)
        self.stats.time_points = max(self.stats.time_points, t + 1)

    def _store_table_rows(self) -> None:
        """The table rows written since the last flush, into the file (before a flush)."""
        for table in self._tables.values():
            table.write_pending()

    def _grow_to(self, time_point: int) -> None:
        if time_point < self._n_time_points:
            return
        n = time_point + 1
        for dataset_id, row_shape in self._extents:  # low level: resize() costs 8x in Python
            dataset_id.set_extent((n, *row_shape))
        self._n_time_points = n

    def _do_raw(self, t: int, c: int, frames: np.ndarray, widefield: np.ndarray,
                stamps: np.ndarray, sequences: np.ndarray) -> None:
        self._grow_to(t)
        d = self._datasets
        frames = np.ascontiguousarray(frames, dtype="<u2")
        write_chunk = d["raw"].id.write_direct_chunk
        for p in range(frames.shape[0]):
            write_chunk((t, c, p, 0, 0), frames[p])
        d["wf"].id.write_direct_chunk((t, c, 0, 0), widefield)
        tables = self._tables
        tables["camera_s"].write((t, c), stamps)
        tables["sequence"].write((t, c), sequences)
        self.stats.raw_frames += frames.shape[0]
        self.stats.bytes_written += frames.nbytes

    def _do_sr(self, t: int, c: int, model: str, image: np.ndarray, photon_count: float,
               latency_ms: float, inference_ms: float,
               sim_params: np.ndarray | None = None, qc: QcRecord | None = None,
               method: str = "") -> None:
        if image.shape != self.layout.sr_shape:
            raise ValueError(f"SR image shape {image.shape} is not the layout's "
                             f"{self.layout.sr_shape}")
        self._grow_to(t)
        d = self._datasets
        stored = image if image.dtype == np.uint16 else run_file.sr_to_stored(image)
        d[f"sr/{model}"].id.write_direct_chunk((t, c, 0, 0),
                                               np.ascontiguousarray(stored, dtype="<u2"))
        tables = self._tables
        tables["sr_written"].write((t, c), 1)
        tables["photon_count"].write((t, c), photon_count)
        tables["sr_latency_ms"].write((t, c), latency_ms)
        tables["inference_ms"].write((t, c), inference_ms)
        if sim_params is not None:
            if sim_params.shape == (self.layout.n_orientations, 4):
                tables["sim_params"].write((t, c), sim_params)
            else:
                logger.warning("sim_params %s for t=%d not the layout's (%d, 4); not recorded",
                               sim_params.shape, t, self.layout.n_orientations)
        if method:
            tables["qc_method"].write((t, c), method.encode()[:run_file.QC_METHOD_LENGTH])
        if qc is not None:
            for name in run_file.QC_SCALARS:
                tables[f"qc_{name}"].write((t, c), getattr(qc, name))
            if qc.raw_chi2_map.shape == self._qc_map_shape:
                tables["qc_map"].write((t, c), qc.raw_chi2_map)
            else:
                logger.warning("trust map %s for t=%d is not the layout's %s; not recorded",
                               qc.raw_chi2_map.shape, t, self._qc_map_shape)
        self.stats.sr_frames += 1
        self.stats.bytes_written += stored.nbytes

    def _do_imc(self, t: int, image: np.ndarray) -> None:
        self._grow_to(t)
        self._datasets["imc"][t] = image
        self.stats.imc_frames += 1
        self.stats.bytes_written += image.nbytes

    def _do_event(self, when_s: float, kind: str, t: int, sequence: int, detail: str) -> None:
        events = self._datasets["events"]
        n = events.shape[0]
        events.resize(n + 1, axis=0)
        events[n] = (when_s, kind, t, sequence, detail)
        self.stats.events[kind] += 1

    def _do_end(self, t: int, complete: bool = True) -> None:
        self._grow_to(t)
        self._tables["complete"].write((t,), 1 if complete else 0)
        self._ended = max(self._ended, t)  # flushed by the writer's batch (_write_batch)

    # --- layout -----------------------------------------------------------------------------

    def _create_layout(self, metadata: Mapping[str, Any],
                       calibration: Mapping[str, np.ndarray]) -> dict[str, h5py.Dataset]:
        h5, lay = self._h5, self.layout
        c, p, frame, sr = lay.n_channels, lay.n_patterns, lay.frame_shape, lay.sr_shape
        d: dict[str, h5py.Dataset] = {}
        d["raw"] = run_file.create_image_dataset(h5, run_file.RAW, frame, (0, c, p), np.uint16,
                                                 lay.pixel_size_nm)
        d["wf"] = run_file.create_image_dataset(h5, run_file.WIDEFIELD, frame, (0, c),
                                                np.float32, lay.pixel_size_nm)
        sr_group = h5.create_group(run_file.SR_GROUP)
        for model in lay.sr_models:
            d[f"sr/{model}"] = run_file.create_image_dataset(
                sr_group, model, sr, (0, c), np.uint16, lay.sr_pixel_size_nm, fillvalue=0)
            d[f"sr/{model}"].attrs["scale"] = run_file.SR_SCALE  # value = stored x scale
        if lay.imc:
            d["imc"] = run_file.create_image_dataset(h5, run_file.IMC, sr, (0, 3), np.float32,
                                                     lay.sr_pixel_size_nm, fillvalue=np.nan)
            d["imc"].attrs["channel_names"] = list(lay.imc_channel_names)
        stamps = h5.create_group(run_file.TIMESTAMPS_GROUP)
        d["camera_s"] = run_file.create_table(stamps, "camera_s", (c, p), np.float64, np.nan)
        d["sequence"] = run_file.create_table(stamps, "sequence", (c, p), np.int64, -1)
        d["sr_latency_ms"] = run_file.create_table(stamps, "sr_latency_ms", (c,), np.float64,
                                                   np.nan)
        d["inference_ms"] = run_file.create_table(stamps, "inference_ms", (c,), np.float64,
                                                  np.nan)
        d["complete"] = run_file.create_table(stamps, "complete", (), np.uint8, 0)
        d["sr_written"] = run_file.create_table(stamps, "sr_written", (c,), np.uint8, 0)
        d["photon_count"] = run_file.create_table(h5, run_file.PHOTON_COUNT, (c,), np.float32,
                                                  np.nan)
        d["photon_count"].attrs["unit"] = "e-"  # calibration.photon_count: detected photons
        d["sim_params"] = run_file.create_table(h5, run_file.SIM_PARAMS,
                                                (c, lay.n_orientations, 4), np.float64, np.nan)
        d["sim_params"].attrs["columns"] = ["kx_cycles_per_px", "ky_cycles_per_px",
                                            "phase_rad", "modulation"]
        qc = h5.create_group(run_file.QC_GROUP)
        for name in run_file.QC_SCALARS:
            d[f"qc_{name}"] = run_file.create_table(qc, name, (c,), np.float32, np.nan)
        self._qc_map_shape = run_file.qc_map_shape(frame)
        d["qc_map"] = run_file.create_table(qc, run_file.QC_MAP, (c, *self._qc_map_shape),
                                            np.float32, np.nan)
        d["qc_map"].attrs["block_px"] = run_file.QC_MAP_BLOCK_PX
        d["qc_map"].attrs["central_square_px"] = run_file.QC_MAX_SIZE_PX
        d["qc_method"] = run_file.create_table(
            qc, run_file.QC_METHOD, (c,), np.dtype(f"S{run_file.QC_METHOD_LENGTH}"), b"")
        d["events"] = run_file.create_calibration_and_events(h5, calibration)
        if lay.mda is not None:
            run_file.create_mda(h5, lay.mda)
        h5.attrs["channel_names"] = list(lay.channel_names)
        run_file.write_metadata(h5, metadata)
        self._time_datasets = [v for k, v in d.items() if k != "events"]
        self._extents = [(v.id, v.shape[1:]) for v in self._time_datasets]
        self._tables = {k: _TableRows(d[k]) for k in (
            "camera_s", "sequence", "sr_latency_ms", "inference_ms", "complete", "sr_written",
            "photon_count", "sim_params", "qc_map", "qc_method",
            *(f"qc_{name}" for name in run_file.QC_SCALARS))}
        return d


def widefield_mean(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The (P, Y, X) uint16 set's mean as float32 (Y, X), bit-identical to ``frames.mean(axis=0,
    dtype="<f4")``: up to 256 uint16 frames the float32 sum is exact whatever the order, so
    the sum is made in float32 directly, in bands of rows whose partial sums stay in the CPU
    cache (a whole-frame accumulator went to memory and back once per pattern). ``out``: a
    float32 (Y, X) array to fill and return instead of a new one."""
    if frames.ndim != 3 or frames.shape[0] > 256 or frames.dtype != np.uint16:
        return np.asarray(frames.mean(axis=0, dtype="<f4", out=out))
    n, height, width = frames.shape
    widefield = np.empty((height, width), "<f4") if out is None else out
    rows = max(1, WIDEFIELD_BAND_BYTES // max(1, 4 * width))
    for top in range(0, height, rows):
        np.add.reduce(frames[:, top:top + rows], axis=0, dtype="<f4",
                      out=widefield[top:top + rows])
    widefield /= np.float32(n)
    return widefield


class _TableRows:
    """Row writes into a per-time-point table, kept in a copy of the row's chunk here and
    written as the whole chunk (``write_direct_chunk``) once before each flush: the writer
    makes ~7 rows a time point, and an ``H5Dwrite`` of one row through HDF5's chunk cache,
    which the flush then writes out as the whole chunk anyway, cost 3-4x as much (0.14 against
    0.04 ms for 7 tables a time point, and the flush half as long); a group of time points
    written together (a backlog) writes each changed chunk once. The copies of the newest
    chunks are kept; a row of an older chunk (a late SR result) reads that chunk back first.
    Nothing else may write these tables while the recorder runs (the copy would overwrite
    it)."""

    KEPT_CHUNKS = 4

    def __init__(self, dataset: h5py.Dataset) -> None:
        if dataset.chunks is None or dataset.chunks[1:] != dataset.shape[1:]:
            raise ValueError(f"{dataset.name}: a table must be chunked along time only, "
                             f"not {dataset.chunks}")
        self._dataset = dataset
        self._id = dataset.id
        self._chunk_shape: tuple[int, ...] = dataset.chunks
        self._rows = dataset.chunks[0]
        self._fill = np.full(dataset.chunks, dataset.fillvalue, dtype=dataset.dtype)
        self._chunks: dict[int, np.ndarray] = {}  # chunk number -> rows; the highest numbers
        self._written: set[int] = set()  # chunk numbers stored in the file
        self._pending: set[int] = set()  # chunk numbers changed and not yet stored
        self._origin_tail = (0,) * (len(self._chunk_shape) - 1)

    def write(self, index: tuple[int, ...], values: Any) -> None:
        """``dataset[index] = values``; ``index`` picks whole rows of the trailing axes. The
        chunk reaches the file at :meth:`write_pending` (or when its copy is let go)."""
        number, row = divmod(index[0], self._rows)
        chunk = self._chunks.get(number)
        if chunk is None:
            chunk = self._chunk(number)
        chunk[(row, *index[1:])] = values
        self._pending.add(number)

    def write_pending(self) -> None:
        """Write every chunk changed since the last call (before each flush and the close)."""
        for number in sorted(self._pending):
            self._store(number)
        self._pending.clear()

    def _store(self, number: int) -> None:
        self._id.write_direct_chunk((number * self._rows, *self._origin_tail),
                                    self._chunks[number])
        self._written.add(number)

    def _chunk(self, number: int) -> np.ndarray:
        """The rows of chunk ``number``: fill values, or read back if it was written."""
        if number in self._written:
            start = number * self._rows
            stored = self._dataset[start:min(start + self._rows, self._dataset.shape[0])]
            chunk = self._fill.copy()
            chunk[:len(stored)] = stored
        else:
            chunk = self._fill.copy()
        self._chunks[number] = chunk
        while len(self._chunks) > self.KEPT_CHUNKS:
            oldest = min(n for n in self._chunks if n != number)  # keep the one asked for
            if oldest in self._pending:
                self._store(oldest)
                self._pending.discard(oldest)
            del self._chunks[oldest]
        return chunk


def _identity(stat: os.stat_result) -> tuple[int, int]:
    """(device, inode): which file a descriptor refers to."""
    return stat.st_dev, stat.st_ino


CREATION_MARGIN_BYTES = 1024 * 1024  # HDF5's own structures, the first chunks, headroom


def creation_bytes(layout: RunLayout, metadata: Mapping[str, Any],
                   calibration: Mapping[str, np.ndarray]) -> int:
    """What creating the run file and writing its first time point needs on disk (bytes).

    An over-estimate on purpose: creation is refused up front rather than started on a disk
    that fills up inside HDF5's first flush (HDF5 then cannot close the file cleanly).
    """
    meta = sum(len(json.dumps(v, default=str)) for v in metadata.values())
    maps = sum(int(np.asarray(m).nbytes) for m in calibration.values())
    frames = layout.n_channels * (layout.n_patterns * 2 + 4) * math.prod(layout.frame_shape)
    sr = layout.n_channels * (2 * max(len(layout.sr_models), 1) + (12 if layout.imc else 0)
                              ) * math.prod(layout.sr_shape)
    return meta + maps + frames + sr + run_file.FAULT_RESERVE_BYTES + CREATION_MARGIN_BYTES


def _check_free_space(path: Path, needed: int) -> None:
    """Refuse (RecorderError) when the run file's file system has less than ``needed``."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        stat = os.statvfs(folder)
    except OSError as exc:
        raise RecorderError(f"{path}: cannot create run file: {_os_error_text(exc)}") from exc
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise RecorderError(
            f"{path}: cannot create run file: only {free / 1e6:.2f} MB free on that file "
            f"system, creating the file and its first time point needs {needed / 1e6:.2f} MB "
            "(free some space or record elsewhere)")


def _os_error_text(exc: BaseException) -> str:
    """The exception's text, led by the OS error's name when it carries one (errno)."""
    text = " ".join(str(exc).split())  # HDF5's messages span lines
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number > 0:
        name = errno.errorcode.get(number, str(number))
        return f"{name} ({os.strerror(number)}): {text}"
    return text


def _append_fault_event_in_child(path: Path, detail: str) -> None:
    """Append the "fault" row from a fresh process: this one's HDF5 still counts the failed
    handle as open, so it cannot reopen the file; a crash there cannot take the run down.
    A spawned child imports livesim the way this process did (its sys.path), installed or not."""
    child = multiprocessing.get_context("spawn").Process(
        target=run_file.append_fault_event, args=(str(path), detail, time.time()),
        name="livesim-fault-row", daemon=True)
    child.start()
    child.join(FAULT_SEAL_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join(5.0)
        raise RecorderError(f"adding the fault row took over {FAULT_SEAL_TIMEOUT_S:.0f} s")
    if child.exitcode != 0:
        from acquisition.recovery import clear_consistency_flags

        clear_consistency_flags(path)  # the failed attempt may have set them again
        raise RecorderError(f"adding the fault row failed: child exit status {child.exitcode}"
                            " (its traceback is on stderr)")
