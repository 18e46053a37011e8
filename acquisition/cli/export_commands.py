"""`livesim export`: one image dataset of a run file to OME-TIFF or OME-Zarr, with progress."""

from __future__ import annotations

from pathlib import Path

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import exit_on


def export_command(
    run_path: Path = typer.Argument(..., metavar="RUN.h5", help="livesim run file"),
    fmt: str = typer.Option(..., "--format", "-f", help="ome-tiff or ome-zarr"),
    output: Path = typer.Option(..., "--output", "-o", help="output .ome.tif / .ome.zarr"),
    dataset: str = typer.Option("sr", "--dataset", "-d", help="sr, raw, wf or imc"),
    sr_model: str = typer.Option(None, "--sr-model", help="which /sr/<model> (if several)"),
    overwrite: opt.Overwrite = False,
) -> None:
    """Export a run's SR, raw, wide-field or IMC images with OME metadata (pixel sizes, time
    increment, channel names and wavelengths); OME-Zarr gets a multiscale pyramid."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from acquisition.ome_export import ExportError, export_run, plan_export

    with exit_on(ExportError):
        plan = plan_export(run_path, dataset, sr_model)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task(f"/{plan.dataset} -> {fmt}", total=plan.n_planes)
            written = export_run(
                run_path, output, fmt, dataset, sr_model, overwrite,  # type: ignore[arg-type]
                progress=lambda done, total: bar.update(task, completed=done),
            )
    typer.echo(
        f"{written}: /{plan.dataset} as {fmt}, {plan.n_positions} position(s) x T {plan.size_t} "
        f"x C {plan.size_c} x Z {plan.size_z} x {plan.frame_shape[0]} x {plan.frame_shape[1]} "
        f"{plan.dtype}, pixel {plan.pixel_size_um * 1000:g} nm"
        + (f", time increment {plan.time_increment_s:.4g} s" if plan.time_increment_s else "")
    )
