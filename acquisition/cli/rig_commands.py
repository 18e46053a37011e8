"""`livesim` sub-commands contributed by the `hardware` package."""

from __future__ import annotations

from pathlib import Path

import typer

from acquisition.cli import options as opt


def rig_check(
    config: Path = typer.Option(
        None, "--config", "-c", help="Micro-Manager .cfg (default: the emulator)"
    ),
    roles: opt.Roles = None,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only read: names, values, limits; set nothing, move "
                                 "nothing, no laser on"),
) -> None:
    """Run the per-role conformance checks against a rig (emulated when no --config)."""
    from hardware.conformance import run_checks
    from hardware.errors import ConfigError
    from hardware.rig import Rig
    from hardware.roles import RoleMap
    from sim_emulator.rig import emulated_rig

    try:
        role_map = RoleMap.load(roles) if roles else None
        rig = Rig.from_config(config, role_map) if config else emulated_rig(roles=role_map)
    except ConfigError as e:
        typer.echo(f"configuration error: {e}")
        raise typer.Exit(2) from e
    with rig:
        results = run_checks(rig, dry_run=dry_run)
    for check, verdict, message in results:
        detail = f": {message}" if message else ""
        typer.echo(f"{verdict:4s} {check.role:8s} {check.name}{detail}")
    failed = sum(verdict == "FAIL" for _, verdict, _ in results)
    skipped = sum(verdict == "skip" for _, verdict, _ in results)
    typer.echo(f"{len(results) - failed - skipped}/{len(results)} checks passed, "
               f"{skipped} skipped (no such device), {failed} failed")
    if failed:
        raise typer.Exit(1)


def bench_camera(
    frames: int = typer.Option(3000, help="frames to stream (after a warm-up time point)"),
    size: opt.SizePx = 512,
    render: str = typer.Option(
        "fast", help="emulated camera: fast (fresh noise) | physics | replay (noise repeats)"
    ),
) -> None:
    """Emulated raw frames/s through the pymmcore-plus core, triggered and tagged."""
    from acquisition.cli.bench.camera import measure_camera_throughput

    result = measure_camera_throughput(frames, size, render)
    typer.echo(
        f"camera ({result.render_mode}, {size}x{size} uint16, SIM-triggered, tagged): "
        f"{result.frames} frames in {result.seconds:.2f} s = "
        f"{result.frames_per_s:.0f} frames/s ({result.megabytes_per_s:.0f} MB/s)"
    )
