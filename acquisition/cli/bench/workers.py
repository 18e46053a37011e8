"""`livesim bench workers`: SR sets/s of a live run with 1, 2, 4 ... inference workers.

Each configuration is one live run (RunSession, real worker subprocesses of the same model,
ZeroMQ, HDF5): emulated SIM sets from a pre-rendered bank are acquired at a fixed rate above
what the workers reconstruct, so the workers never wait for data; every worker holds at most
two sets (one running, one queued) and the rest are recorded skips. The figure is SR images
written per second from the first time point to the file closed (drain included). Each worker
process gets ``cores // workers`` torch threads (at least 1; ``--threads`` sets it), so the
configurations share the same cores instead of oversubscribing them.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_json_output, write_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkersFigure:
    """One configuration's outcome."""

    workers: int
    torch_threads_per_worker: int
    sr_sets_per_s: float
    sr_frames: int
    time_points: int
    skips: int
    recorded_s: float
    worker_restarts: int
    sr_per_worker: dict[int, int]
    load_average_1min: float


def measure_workers(n_workers: int, model: str, size_px: int, seconds: float,
                    interval_s: float, folder: Path, threads: int = 0) -> WorkersFigure:
    """One live run with ``n_workers`` workers of ``model``; SR sets/s over the run."""
    from acquisition.cli.bench.pipeline import BankSource, frame_bank
    from acquisition.protocol import Protocol, sequence_plan
    from acquisition.session import RunSession, SessionOptions

    cores = os.cpu_count() or 1
    threads = threads or max(1, cores // n_workers)
    timepoints = max(1, round(seconds / interval_s))
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": model}], "timepoints": timepoints,
        "interval_s": interval_s, "output": str(folder / f"workers{n_workers}.h5"),
        "overwrite": True})
    options = SessionOptions(workers=n_workers, max_pending_sets=2 * n_workers, fsync=False,
                             display=False, drain_idle_s=60.0, heartbeat_timeout_s=30.0)
    bank = frame_bank(size_px)
    # the worker subprocesses inherit the thread count; the variables are restored after
    with mock.patch.dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)):
        session = RunSession(BankSource(bank), sequence_plan(protocol), protocol,
                             (size_px, size_px), 62.6, options=options)
        summary = session.run()
    if summary.error:
        raise RuntimeError(f"{n_workers} workers: the run failed: {summary.error}")
    return WorkersFigure(
        workers=n_workers, torch_threads_per_worker=threads,
        sr_sets_per_s=summary.sr_frames / summary.recorded_s, sr_frames=summary.sr_frames,
        time_points=summary.engine.time_points, skips=summary.events.get("sr_skip", 0),
        recorded_s=summary.recorded_s, worker_restarts=summary.worker_restarts,
        sr_per_worker=dict(summary.sr_per_worker), load_average_1min=os.getloadavg()[0])


def bench_workers_command(
    workers: list[int] = typer.Option([1, 2, 4], "--workers", help="Worker counts to measure."),
    model: opt.Reconstruction = "dfcan-sim",
    size_px: opt.SizePx = 128,
    seconds: float = typer.Option(40.0, "--time-limit-s", help="Acquisition length per count."),
    interval_s: float = typer.Option(
        0.05, "--interval-s", help="Seconds between raw sets (above what the workers manage)."),
    threads: int = typer.Option(
        0, "--threads", min=0, help="Torch threads per worker (0: cores // workers, at least 1)."),
    repeats: int = typer.Option(
        1, "--repeats", min=1, help="Rounds over the worker counts, order reversed every other "
                                    "round (a loaded machine drifts); medians reported."),
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """SR sets/s of a live run with each worker count (same model, same cores)."""
    check_json_output(json_out, overwrite)
    figures: list[WorkersFigure] = []
    with tempfile.TemporaryDirectory(prefix="livesim-bench-workers-") as folder:
        for round_index in range(repeats):
            order = workers if round_index % 2 == 0 else list(reversed(workers))
            for n in order:
                start = time.monotonic()
                figure = measure_workers(n, model, size_px, seconds, interval_s, Path(folder),
                                         threads)
                figures.append(figure)
                typer.echo(f"round {round_index + 1}, {n} workers "
                           f"({figure.torch_threads_per_worker} torch threads each): "
                           f"{figure.sr_sets_per_s:.2f} SR sets/s ({figure.sr_frames} SR of "
                           f"{figure.time_points} sets, {figure.skips} skipped, per worker "
                           f"{figure.sr_per_worker}); load {figure.load_average_1min:.1f}; "
                           f"{time.monotonic() - start:.0f} s")
    medians = {n: statistics.median(f.sr_sets_per_s for f in figures if f.workers == n)
               for n in workers}
    base = medians[workers[0]] if workers else 0.0
    for n, median in medians.items():
        speedup = median / base if base else float("nan")
        typer.echo(f"  {n} workers: median {median:.2f} SR sets/s, {speedup:.2f}x of "
                   f"{workers[0]}")
    write_json(json_out, {"cores": os.cpu_count(), "model": model, "size_px": size_px,
                          "interval_s": interval_s, "medians": medians,
                          "figures": [asdict(f) for f in figures]})
