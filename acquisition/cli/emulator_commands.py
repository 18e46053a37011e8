"""`livesim` sub-commands contributed by the `sim_emulator` package.

`livesim emulate` writes an emulated run file; `livesim bench emulator` measures throughput.
Heavy imports stay inside the functions so `livesim --help` stays fast.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer


class Structure(StrEnum):
    """Sample structures the emulator draws."""

    microtubules = "microtubules"
    f_actin = "f-actin"
    er = "er"
    ccps = "ccps"
    lysosomes = "lysosomes"
    mitochondria = "mitochondria"
    mix = "mix"


class Mode(StrEnum):
    """Illumination: wide-field, linear SIM (3x3), nonlinear SIM (5x5)."""

    wf = "wf"
    sim = "sim"
    nlsim = "nlsim"


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this package's commands to the root CLI and its benchmarks to `livesim bench`."""
    app.command("emulate")(emulate_command)
    bench.command("emulator")(bench_emulator_command)


def emulate_command(
    output: Path = typer.Option(..., "--output", "-o", help="Run file (.h5) to write."),
    structure: Structure = typer.Option(Structure.microtubules, "--structure"),
    mode: Mode = typer.Option(Mode.sim, "--mode"),
    size: int = typer.Option(256, "--size-px", help="Camera frame size in pixels (square)."),
    photon_count_e: float = typer.Option(
        300.0, "--photon-count-e",
        help="Average photon count of a wide-field frame, e- (DFCAN definition, docs/emulator.md).",
    ),
    timepoints: int = typer.Option(1, "--time-points", "-t", min=1),
    seed: int = typer.Option(0, "--seed"),
    interval_s: float = typer.Option(1.0, "--interval-s", help="Seconds between time points."),
    na: float | None = typer.Option(None, "--na", help="Numerical aperture (default 1.35)."),
    wavelength_nm: float | None = typer.Option(
        None, "--wavelength-nm", help="Emission wavelength in nm (default 525)."
    ),
    pixel_size_nm: float | None = typer.Option(
        None, "--pixel-size-nm", help="Camera pixel size in the sample plane (default 62.6)."
    ),
    pattern_period_nm: float | None = typer.Option(
        None, "--pattern-period-nm", help="SIM stripe period (default 0.9 of the OTF cutoff)."
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="EmulatorConfig TOML; the options above override it."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Emulate a SIM acquisition and write raw frames plus ground truth to an HDF5 run file."""
    from pydantic import ValidationError

    from sim_emulator.emulated_run import write_emulated_run
    from sim_emulator.microscope import EmulatorConfig

    data: dict = {}
    if config_file is not None:
        data = EmulatorConfig.from_toml(config_file).model_dump(exclude_unset=True)
    optics = dict(data.get("optics", {}))
    for key, value in (("na", na), ("emission_nm", wavelength_nm),
                       ("pixel_size_nm", pixel_size_nm)):
        if value is not None:
            optics[key] = value
    patterns = dict(data.get("patterns", {}))
    patterns["mode"] = mode.value
    patterns.pop("n_orientations", None)
    patterns.pop("n_phases", None)
    if pattern_period_nm is not None:
        patterns["period_nm"] = pattern_period_nm
    data.update(
        optics=optics, patterns=patterns, structure=structure.value, size_px=size,
        photon_count_e=photon_count_e, seed=seed,
    )
    try:
        config = EmulatorConfig.model_validate(data)
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        path = write_emulated_run(
            config, timepoints, output, interval_s=interval_s, overwrite=overwrite,
            progress=lambda t: typer.echo(f"time point {t + 1}/{timepoints}"),
        )
    except (FileExistsError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(f"wrote {path}")


def bench_emulator_command(
    size: int = typer.Option(512, "--size-px", help="Frame size in pixels (square)."),
    structure: Structure = typer.Option(Structure.microtubules, "--structure"),
    sets: int = typer.Option(20, "--sets", min=1, help="Full-physics SIM sets to time."),
    frames: int = typer.Option(4000, "--frames", min=1, help="Fast-path frames to time."),
    mode: Mode = typer.Option(Mode.sim, "--mode"),
) -> None:
    """Full-physics 9-frame sets/s and fast-path raw frames/s (targets: 10 and 2,000 at 512)."""
    from acquisition.cli.bench.emulator import measure_throughput

    result = measure_throughput(size, structure.value, sets, frames, mode.value)
    typer.echo(
        f"full physics: {result.full_sets_per_s:.1f} sets/s wall, "
        f"{result.full_sets_per_cpu_s:.1f} per CPU-s "
        f"({result.n_patterns}-frame {size}x{size} sets, {result.structure})"
    )
    typer.echo(
        f"fast path:    {result.fast_frames_per_s:.0f} frames/s wall, "
        f"{result.fast_frames_per_cpu_s:.0f} per CPU-s ({size}x{size} uint16)"
    )
