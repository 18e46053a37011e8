"""`livesim reprocess`: re-reconstruct a recorded run with another model, on a Dask cluster.

Part of the CLI root: it wires the reprocessing job (:mod:`inference.reprocess`) to the
run-file recovery of `acquisition` (a killed reprocess leaves its output's SWMR flags set; they
are cleared before the resume). Heavy imports live inside the command function.
"""

from __future__ import annotations

from pathlib import Path

import typer

from acquisition.cli.output_files import exit_on, fail


def reprocess_command(
    run: Path = typer.Argument(..., help="Recorded run file (.h5) whose raw sets to reprocess."),
    output: Path = typer.Option(..., "--output", "-o",
                                help="New run file; an existing one from the same source and "
                                     "model is resumed (done time points skipped)."),
    model: str = typer.Option(
        "auto", "--model",
        help="Bundled model name, model path, wiener, auto or auto:NAME (the network inside its "
             "training domain, Wiener elsewhere), or default (auto; wiener without the "
             "bundled DFCAN-SIM)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1,
        help="LocalCluster worker processes (default 1); with --scheduler: workers to wait for."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786)."),
    chunk: int = typer.Option(4, "--chunk", min=1, help="Time points per Dask task."),
    chunk_timeout_s: float = typer.Option(
        600.0, "--chunk-timeout-s", help="Stop when no chunk finishes for this long."),
    connect_timeout_s: float = typer.Option(
        60.0, "--connect-timeout-s", help="Wait this long for the scheduler and its workers."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output, no resume."),
) -> None:
    """Reconstruct every time point of RUN again (one writer, resumable) on Dask workers."""
    import logging

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from acquisition.recovery import RecoveryError, clear_consistency_flags
    from inference.reprocess import ReprocessError, ReprocessOptions, dask_client, run_reprocess

    if output.exists() and not overwrite:
        try:
            if clear_consistency_flags(output):
                typer.echo(f"{output}: cleared the SWMR flags a killed reprocess left")
        except (RecoveryError, OSError) as exc:
            fail(f"{output}: cannot resume: {exc}")
    import distributed  # noqa: F401  (its loggers exist from here on)

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]:
        logging.getLogger(name).setLevel(logging.WARNING)  # its INFO is one line per worker event
    options = ReprocessOptions(source=run, output=output, model=model, chunk_time_points=chunk,
                               chunk_timeout_s=chunk_timeout_s)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with (exit_on(ReprocessError),
          dask_client(workers, scheduler, timeout_s=connect_timeout_s) as client,
          Progress(*columns) as bar):
        task = bar.add_task("time points", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = run_reprocess(options, client, show, overwrite=overwrite)
    events = ", ".join(f"{k}={v}" for k, v in sorted(summary.events.items())) or "none"
    typer.echo(f"{summary.output}: {summary.written_now} time points written now, "
               f"{summary.already_done} already done, of {summary.time_points}; "
               f"{summary.sr_frames} SR images on {summary.workers} workers in "
               f"{summary.elapsed_s:.1f} s; events: {events}")
