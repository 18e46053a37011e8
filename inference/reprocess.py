"""Batch reprocessing of a recorded run on Dask: `livesim reprocess RUN.h5 --model ... -o NEW.h5`.

The job is cut into tasks of a few time points each. A task carries only the file's path, its
time points and the model to use; it opens the run file on the Dask worker and reads its own raw
sets, so the file is never shipped (on several machines it must be reachable under the same
path). Tasks return the SR images in stored form (uint16) with their photon counts, timings and
flags; the driving process is the one writer of the output (:mod:`inference.reprocess_file`),
writing chunks as they finish, in whatever order. A bounded number of tasks is in flight, so a
long run does not pile results up in the cluster's memory.

The cluster is a ``distributed.LocalCluster`` (one single-threaded worker process per
``--workers``) or an existing one reached through its scheduler's address.

Wiener reconstruction estimates the pattern parameters once per channel, on the run's first
complete raw set (as the live worker does on the first set it sees), and every task uses them:
chunks reconstructed on different workers stay consistent, and the parameters are recorded.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from acquisition import run_file
from inference.file_hash import file_sha256
from inference.reprocess_file import (
    Provenance,
    ReprocessFileError,
    ReprocessLayout,
    ReprocessWriter,
    SetResult,
)

if TYPE_CHECKING:
    from distributed import Client, Future

    from inference.preprocessing import CalibrationMaps
    from inference.reconstruction import Reconstructor

logger = logging.getLogger(__name__)

WIENER = "wiener"
AUTO = "auto"
DEFAULT_CHUNK_TIME_POINTS = 4
CONNECT_TIMEOUT_S = 60.0
ProgressSink = Callable[[int, int], None]  # (time points done, time points to do)


class ReprocessError(RuntimeError):
    """The job cannot run: bad source file, unknown model, no workers, a stalled cluster."""


@dataclass(frozen=True)
class ReprocessOptions:
    """What to reprocess, with which model, into which file, in chunks of how many points."""

    source: Path
    output: Path
    model: str = AUTO  # bundled name | model path | wiener | auto | auto:NAME | default
    chunk_time_points: int = DEFAULT_CHUNK_TIME_POINTS
    chunk_timeout_s: float = 600.0  # no chunk finishing for this long: the job stops
    in_flight_per_worker: int = 2


@dataclass(frozen=True)
class ChunkTask:
    """One Dask task: which sets of which file to reconstruct, and how (small: no pixels)."""

    source: str
    time_points: tuple[int, ...]
    channels: tuple[int, ...]
    method: str  # "wiener" or a model name / path
    mode: str
    pixel_size_nm: float
    sim_parameters: tuple[tuple[int, str], ...] = ()  # Wiener: channel -> SimParameters JSON


@dataclass
class ReprocessSummary:
    """What a reprocess run did."""

    output: Path
    time_points: int
    already_done: int
    written_now: int = 0
    sr_frames: int = 0
    events: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    workers: int = 0


@dataclass(frozen=True)
class SourceRun:
    """What the driver reads from the recorded run (shapes, calibration, metadata)."""

    path: Path
    n_time_points: int
    n_channels: int
    n_orientations: int
    n_patterns: int
    frame_shape: tuple[int, int]
    pixel_size_nm: float
    mode: str
    complete_sets: np.ndarray  # bool (T, C): every frame of the set was recorded
    calibration: dict[str, np.ndarray]
    metadata: dict[str, Any]
    channel_names: tuple[str, ...]


def read_source(path: Path) -> SourceRun:
    """Open a recorded run file and check it has what reprocessing needs; errors name it."""
    path = Path(path)
    if not path.is_file():
        raise ReprocessError(f"{path}: no such run file")
    try:
        with h5py.File(path, "r") as h5:
            if run_file.RAW not in h5:
                raise ReprocessError(f"{path}: no /{run_file.RAW} dataset; not a run file")
            raw = h5[run_file.RAW]
            if raw.ndim != 5 or raw.dtype != np.uint16:
                raise ReprocessError(f"{path}: /raw is {raw.dtype}{list(raw.shape)}, expected "
                                     "uint16 (T, C, P, Y, X)")
            t, c, p, y, x = (int(n) for n in raw.shape)
            sequence_path = f"{run_file.TIMESTAMPS_GROUP}/sequence"
            if sequence_path in h5:
                sequences = h5[sequence_path][()]
                complete = np.all(sequences >= 0, axis=-1) if sequences.size else np.zeros(
                    (0, c), bool)
                if complete.shape[0] < t:  # rows the writer never reached
                    complete = np.concatenate([complete, np.zeros((t - complete.shape[0], c),
                                                                  bool)])
            else:
                complete = np.ones((t, c), bool)
            metadata = run_file.read_metadata(h5)
            calibration = {name: np.asarray(h5[run_file.CALIBRATION_GROUP][name][()])
                           for name in h5.get(run_file.CALIBRATION_GROUP, {})}
            pixel_size_nm = float(raw.attrs.get("pixel_size_nm", 62.6))
            names = tuple(str(n) for n in metadata.get("channel_names", ()) or ())
    except OSError as exc:
        raise ReprocessError(f"{path}: cannot read the run file: {exc}") from exc
    protocol = metadata.get("protocol") if isinstance(metadata.get("protocol"), dict) else {}
    assert isinstance(protocol, dict)
    mode = str(protocol.get("mode", "sim"))
    n_orientations = int(protocol.get("n_orientations", 3 if p == 9 else max(1, p // 5)))
    if p % n_orientations:
        raise ReprocessError(f"{path}: {p} patterns per set is not a multiple of "
                             f"{n_orientations} orientations")
    return SourceRun(path, t, c, n_orientations, p, (y, x), pixel_size_nm, mode,
                     complete[:t], calibration, metadata, names)


def calibration_maps(calibration: dict[str, np.ndarray]) -> CalibrationMaps | None:
    """The preprocessing calibration from a run's /calibration maps (None when absent).

    An emulator run records offset and photons per count (photon counts then mean incident
    photons, as live); a rig run records the camera calibration's maps (offset, gain).
    """
    from inference.worker import PhotonCalibration

    offset = calibration.get("offset_adu")
    if offset is None:
        return None
    offset = np.asarray(offset, np.float32)
    defects = calibration.get("defect_mask")
    mask = None if defects is None else np.asarray(defects).astype(bool)
    if "gain_adu_per_e" in calibration:
        gain = np.asarray(calibration["gain_adu_per_e"], np.float32)
    elif "electrons_per_adu" in calibration:
        per_count = np.asarray(calibration["electrons_per_adu"], dtype=np.float32)
        if np.any(per_count <= 0):
            raise ReprocessError(f"/calibration/electrons_per_adu {per_count} must be > 0")
        gain = np.broadcast_to(1.0 / per_count, offset.shape).astype(np.float32)
    else:
        return None
    return PhotonCalibration(offset, gain, mask)


def resolve_model(model: str) -> str:
    """``default``: as live, ``auto`` with the bundled DFCAN-SIM when installed, else Wiener;
    anything else as given (``auto`` / ``auto:NAME`` is the domain-guarded network)."""
    if model != "default":
        return model
    from inference.worker import resolve_method

    method, _note = resolve_method("default")
    return method


# --- on the Dask workers ----------------------------------------------------------------------

_local = threading.local()  # per worker thread: reconstructors and calibration, built once


def _reconstructor(task: ChunkTask, channel: int) -> Reconstructor:
    cache: dict[tuple[str, str, str, float, str], Reconstructor] = (
        getattr(_local, "cache", None) or {})
    _local.cache = cache
    parameters = dict(task.sim_parameters).get(channel, "")
    key = (task.source, task.method, task.mode, task.pixel_size_nm, parameters)
    if key not in cache:
        calibration = _calibration_of(task.source)
        if task.method == WIENER:
            from calibration.sim_parameters import SimParameters
            from inference.reconstruction import WienerReconstructor

            fixed = SimParameters.model_validate_json(parameters) if parameters else None
            cache[key] = WienerReconstructor(calibration, task.pixel_size_nm, parameters=fixed)
        else:
            from inference.reconstruction import make_reconstructor

            cache[key] = make_reconstructor(task.method, mode=_model_mode(task.mode),
                                            calibration=calibration,
                                            pixel_size_nm=task.pixel_size_nm)
    return cache[key]


def _calibration_of(source: str) -> CalibrationMaps | None:
    cached: dict[str, CalibrationMaps | None] = getattr(_local, "calibration", None) or {}
    _local.calibration = cached
    if source not in cached:
        with h5py.File(source, "r") as h5:
            group = h5.get(run_file.CALIBRATION_GROUP, {})
            cached[source] = calibration_maps({name: np.asarray(group[name][()])
                                               for name in group})
    return cached[source]


def _model_mode(acquisition_mode: str) -> str:
    return {"wf": "sisr", "sim": "sim", "nlsim": "nlsim"}.get(acquisition_mode, acquisition_mode)


def reconstruct_chunk(task: ChunkTask) -> list[SetResult]:
    """Run on a Dask worker: read the chunk's raw sets from the file, reconstruct each."""
    out: list[SetResult] = []
    with h5py.File(task.source, "r") as h5:
        raw = h5[run_file.RAW]
        sequence_path = f"{run_file.TIMESTAMPS_GROUP}/sequence"
        sequences = h5.get(sequence_path)
        for t in task.time_points:
            for c in task.channels:
                if sequences is not None and (t >= sequences.shape[0]
                                              or np.any(sequences[t, c] < 0)):
                    out.append(SetResult(t, c, skip_reason="incomplete raw set"))
                    continue
                frames = np.asarray(raw[t, c])
                try:
                    result = _reconstructor(task, c).reconstruct(frames)
                except (ValueError, RuntimeError, ArithmeticError) as exc:
                    logger.error("t=%d channel=%d: reconstruction failed: %s", t, c, exc)
                    out.append(SetResult(t, c, error=f"reconstruction failed: {exc}"))
                    continue
                timings = dict(result.timings_ms)
                total_ms = float(timings.get("total", sum(timings.values()) if timings else
                                             math.nan))
                out.append(SetResult(t, c, run_file.sr_to_stored(np.asarray(result.image)),
                                     float(result.photon_count_e), total_ms,
                                     tuple(str(f) for f in result.flags)))
    return out


# --- the driver -------------------------------------------------------------------------------

@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                processes: bool = True, timeout_s: float = CONNECT_TIMEOUT_S
                ) -> Iterator[Client]:
    """A client of an existing cluster (``scheduler`` address) or of a LocalCluster with
    ``workers`` single-threaded workers; closed (cluster shut down) on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ReprocessError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                                 f"{timeout_s:.0f} s: {exc}") from exc
        try:
            try:
                client.wait_for_workers(max(1, workers or 1), timeout=timeout_s)
            except TimeoutError as exc:
                raise ReprocessError(f"the Dask scheduler at {scheduler!r} has fewer than "
                                     f"{max(1, workers or 1)} workers after {timeout_s:.0f} s "
                                     "(start some with `dask worker ADDRESS`)") from exc
            yield client
        finally:
            client.close(timeout=timeout_s)
        return
    n = workers or 1
    if n < 1:
        raise ReprocessError(f"--workers must be >= 1, got {n}")
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=logging.WARNING)
    try:
        client = Client(cluster, timeout=timeout_s)
        try:
            yield client
        finally:
            client.close(timeout=timeout_s)
    finally:
        cluster.close(timeout=timeout_s)


def plan_chunks(time_points: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """Consecutive time points in chunks of at most ``size``."""
    if size < 1:
        raise ReprocessError(f"chunk size must be >= 1, got {size}")
    points = sorted(time_points)
    return [tuple(points[i : i + size]) for i in range(0, len(points), size)]


def _model_identity(method: str, source: SourceRun) -> tuple[str, str, int]:
    """(model name, SHA-256, scale) of a model file or Wiener; errors name the model."""
    if method == WIENER:
        if source.mode != "sim":
            raise ReprocessError(f"Wiener SIM reconstructs linear SIM runs; {source.path} is a "
                                 f"{source.mode!r} run")
        return WIENER, "", 2
    from inference.model_file import ModelFileError, read_model_file, resolve_model_path
    from inference.reconstruction import DEFAULT_AUTO_NETWORK

    auto = method == AUTO or method.startswith(AUTO + ":")
    network = (method.partition(":")[2] or DEFAULT_AUTO_NETWORK) if auto else method
    try:
        info, _state = read_model_file(resolve_model_path(network))
    except (ModelFileError, FileNotFoundError, OSError) as exc:
        raise ReprocessError(f"model {method!r} cannot be loaded: {exc}") from exc
    wanted = _model_mode(source.mode)
    if info.mode != wanted:
        raise ReprocessError(f"model {method!r} is a {info.mode} model; {source.path} needs "
                             f"{wanted}")
    # auto: the dataset is "auto" (per set, the network or Wiener, named in the set's flags)
    return (AUTO if auto else info.name), info.weights_sha256, int(info.options.get("scale", 2))


def _estimate_wiener(source: SourceRun) -> dict[str, Any]:
    """Per channel: pattern parameters estimated on its first complete set (JSON dicts)."""
    from inference.reconstruction import WienerReconstructor

    calibration = calibration_maps(source.calibration)
    out: dict[str, Any] = {}
    with h5py.File(source.path, "r") as h5:
        for c in range(source.n_channels):
            complete = np.flatnonzero(source.complete_sets[:, c])
            if complete.size == 0:
                continue
            reconstructor = WienerReconstructor(calibration, source.pixel_size_nm)
            reconstructor.reconstruct(np.asarray(h5[run_file.RAW][int(complete[0]), c]))
            parameters = reconstructor.parameters
            if parameters is None:  # reconstruct sets them or raises: a broken invariant
                raise ReprocessError(f"{source.path}: channel {c}: Wiener SIM found no pattern "
                                     "parameters on the first complete set")
            out[str(c)] = parameters.model_dump(mode="json")
    return out


def run_reprocess(options: ReprocessOptions, client: Client,
                  progress: ProgressSink | None = None, overwrite: bool = False
                  ) -> ReprocessSummary:
    """Reprocess ``options.source`` into ``options.output`` on ``client``'s cluster.

    An existing output made from the same source and model is resumed (its complete time
    points skipped); with ``overwrite`` it is replaced instead.
    """
    from distributed import wait

    start_s = time.monotonic()
    source = read_source(options.source)
    output = Path(options.output)
    if output.resolve() == source.path.resolve():
        raise ReprocessError(f"{output}: the output must not be the source run file")
    if overwrite and output.exists():
        output.unlink()
    method = resolve_model(options.model)
    model_name, model_sha, scale = _model_identity(method, source)
    logger.info("hashing %s", source.path)
    source_sha = file_sha256(source.path)
    provenance = Provenance(str(source.path.resolve()), source_sha, options.model, model_name,
                            model_sha, software_version=run_file.software_version())
    if method == WIENER:
        recorded = _recorded_parameters(output, provenance)
        parameters = recorded if recorded is not None else _estimate_wiener(source)
        provenance = Provenance(**{**provenance.as_metadata(), "sim_parameters": parameters})
    layout = ReprocessLayout(
        n_time_points=source.n_time_points, n_channels=source.n_channels,
        n_orientations=source.n_orientations,
        sr_shape=(source.frame_shape[0] * scale, source.frame_shape[1] * scale),
        sr_pixel_size_nm=source.pixel_size_nm / scale, label=run_file.sr_label(model_name),
        channel_names=source.channel_names)
    try:
        writer = ReprocessWriter(output, layout, provenance, source.metadata,
                                 source.calibration)
    except ReprocessFileError as exc:
        raise ReprocessError(str(exc)) from exc
    summary = ReprocessSummary(output, source.n_time_points, 0)
    try:
        done = writer.done_time_points()
        summary.already_done = len(done)
        todo = [t for t in range(source.n_time_points) if t not in done]
        writer.record_event("reprocess_resumed" if writer.resumed else "reprocess_start", -1,
                            f"{len(todo)} time points to do, {len(done)} already done; model "
                            f"{model_name} {model_sha}".strip())
        task_parameters = tuple((int(c), json.dumps(p, sort_keys=True))
                                for c, p in provenance.sim_parameters.items())
        tasks = [ChunkTask(str(source.path.resolve()), chunk, tuple(range(source.n_channels)),
                           method, source.mode, source.pixel_size_nm, task_parameters)
                 for chunk in plan_chunks(todo, options.chunk_time_points)]
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        summary.workers = n_workers
        window = max(1, n_workers * options.in_flight_per_worker)
        pending: dict[Future, ChunkTask] = {}
        queue = list(reversed(tasks))
        written = 0
        if progress is not None:
            progress(0, len(todo))
        while queue or pending:
            while queue and len(pending) < window:
                task = queue.pop()
                pending[client.submit(reconstruct_chunk, task, pure=False, retries=1)] = task
            finished, _ = wait(list(pending), timeout=options.chunk_timeout_s,
                               return_when="FIRST_COMPLETED")
            if not finished:
                raise ReprocessError(f"no chunk finished within {options.chunk_timeout_s:.0f} s "
                                     f"({len(pending)} in flight on {n_workers} workers)")
            for future in finished:
                task = pending.pop(future)
                try:
                    results = future.result()
                except Exception as exc:  # a task's own failure, re-raised here by Dask
                    results = [SetResult(t, c, error=f"task failed: {type(exc).__name__}: {exc}")
                               for t in task.time_points for c in task.channels]
                writer.write_chunk(task.time_points, results)
                written += len(task.time_points)
                if progress is not None:
                    progress(written, len(todo))
        summary.written_now = written
        writer.record_event("reprocess_end", -1, f"{written} time points written")
        summary.sr_frames = writer.sr_frames
    finally:
        writer.close()
    with h5py.File(output, "r") as h5:
        summary.events = run_file.event_counts(h5)
    summary.elapsed_s = time.monotonic() - start_s
    return summary


def _recorded_parameters(output: Path, provenance: Provenance) -> dict[str, Any] | None:
    """A resumed Wiener job keeps the parameters its first run estimated."""
    if not output.exists():
        return None
    try:
        with h5py.File(output, "r") as h5:
            recorded = run_file.read_metadata(h5).get("reprocess")
    except OSError:
        return None  # the writer reports why it cannot open the file
    if not isinstance(recorded, dict) or recorded.get("source_sha256") != provenance.source_sha256:
        return None
    params = recorded.get("sim_parameters")
    return dict(params) if isinstance(params, dict) and params else None
