"""`livesim` sub-commands contributed by the `sim_emulator` package.

`livesim emulate` writes an emulated run file; `livesim stack-statistics` measures a raw stack
(real or emulated) the same way and compares it with an emulator preset; `livesim bench
emulator` measures throughput.
Heavy imports stay inside the functions so `livesim --help` stays fast.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_json_output, exit_on, fail, write_json


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


def emulate_command(
    output: Path = typer.Option(..., "--output", "-o", help="Run file (.h5) to write."),
    structure: Structure | None = typer.Option(
        None, "--structure", help="Sample (default microtubules)."
    ),
    mode: Mode | None = typer.Option(None, "--mode", help="Illumination (default sim)."),
    size: Annotated[int | None, opt.SIZE_PX] = None,  # None: the emulator's default (256)
    photon_count_e: float | None = typer.Option(
        None, "--photon-count-e",
        help="Average photon count of a wide-field frame, e- (DFCAN definition, docs/emulator.md;"
        " default 300).",
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Named configuration matching a real instrument "
        "(tirf-microtubules); the other options override it."
    ),
    timepoints: opt.TimePoints = 1,
    seed: opt.Seed = 0,
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
    overwrite: opt.Overwrite = False,
) -> None:
    """Emulate a SIM acquisition and write raw frames plus ground truth to an HDF5 run file."""
    from pydantic import ValidationError

    from sim_emulator.emulated_run import write_emulated_run
    from sim_emulator.microscope import EmulatorConfig
    from sim_emulator.presets import preset_config

    data: dict = {}
    if preset is not None and config_file is not None:
        fail("give --preset or --config, not both")
    if config_file is not None:
        data = EmulatorConfig.from_toml(config_file).model_dump(exclude_unset=True)
    if preset is not None:
        try:
            data = preset_config(preset).model_dump(exclude_unset=True)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--preset") from error
    optics = dict(data.get("optics", {}))
    for key, value in (("na", na), ("emission_nm", wavelength_nm),
                       ("pixel_size_nm", pixel_size_nm)):
        if value is not None:
            optics[key] = value
    patterns = dict(data.get("patterns", {}))
    if mode is not None or "mode" not in patterns:
        patterns["mode"] = (mode or Mode.sim).value
        patterns.pop("n_orientations", None)
        patterns.pop("n_phases", None)
    if pattern_period_nm is not None:
        patterns["period_nm"] = pattern_period_nm
    defaults: dict[str, object] = {"structure": Structure.microtubules.value, "size_px": 256,
                                   "photon_count_e": 300.0}
    given: dict[str, object] = {"structure": None if structure is None else structure.value,
                                "size_px": size, "photon_count_e": photon_count_e}
    for name, chosen in given.items():
        if chosen is not None:
            data[name] = chosen
        elif name not in data:
            data[name] = defaults[name]
    data.update(optics=optics, patterns=patterns, seed=seed)
    try:
        config = EmulatorConfig.model_validate(data)
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    with exit_on(FileExistsError, ValueError):
        path = write_emulated_run(
            config, timepoints, output, interval_s=interval_s, overwrite=overwrite,
            progress=lambda t: typer.echo(f"time point {t + 1}/{timepoints}"),
        )
    typer.echo(f"wrote {path}")


def bench_emulator_command(
    size: opt.SizePx = 512,
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


def training_pairs_command(
    output: Path = typer.Option(..., "--output", "-o", help="folder for pair_NNNNN.npz files"),
    count: int = typer.Option(1600, "--count", min=1, help="pairs 0 .. count-1"),
    start: int = typer.Option(0, "--start", min=0, help="first pair (split work over processes)"),
    structures: str = typer.Option(
        "microtubules,er,f-actin,ccps,microtubules,er", "--structures",
        help="structures in turn (pair i takes entry i mod n)",
    ),
    size_px: int = typer.Option(128, "--size-px", min=32, help="Frame edge in pixels (square)."),
    keep_haze: bool = typer.Option(
        True, "--keep-haze/--no-keep-haze",
        help="targets keep the out-of-focus haze as a smooth background (as Wiener SIM does)",
    ),
) -> None:
    """Realistic emulator training pairs around real rigs (instrument drawn per pair from
    sim_emulator.training_pairs.REAL_RIGS) for `livesim train --data pairs:FOLDER`; pair i is
    a pure function of i and existing files are kept, so runs resume and split."""
    from typing import get_args

    from sim_emulator.microscope import StructureChoice
    from sim_emulator.training_pairs import write_pair_folder

    names = [name for name in structures.split(",") if name]
    unknown = [name for name in names if name not in get_args(StructureChoice)]
    if not names or unknown:
        fail(f"--structures {structures!r}: unknown {unknown or 'none given'}")
    written = write_pair_folder(output, start, start + count, names,  # type: ignore[arg-type]
                                size_px=size_px, keep_haze=keep_haze)
    typer.echo(f"{output}: wrote {written} pair(s), {count - written} already present")


def stack_statistics_command(
    stack: Path | None = typer.Argument(
        None, help="Raw SIM stack (.mrc, .tif, .npy, run .h5); omit to measure only --preset."
    ),
    na: float = typer.Option(..., "--na", help="Detection numerical aperture."),
    emission_nm: float = typer.Option(..., "--emission-nm", help="Emission wavelength (nm)."),
    pixel_size_nm: opt.StackPixelSizeNm = None,
    time_point: int = typer.Option(0, "--time-point", help="Which raw set of the stack."),
    preset: str | None = typer.Option(
        None, "--preset", help="Also emulate this preset and measure it the same way."
    ),
    seeds: int = typer.Option(2, "--seeds", min=1, help="Emulated fields of the preset."),
    output: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Background and signal (e-), modulation and period per orientation, noise spectrum of a
    raw SIM set, from the data alone (calibration.stack_statistics); side by side with an
    emulator preset measured by the same code."""
    check_json_output(output, overwrite)
    from calibration.stack_statistics import (
        StackStatistics,
        StackStatisticsError,
        comparison_table,
        measure_stack,
    )
    from inference.stack_io import StackFormatError, load_raw_stack
    from sim_emulator.microscope import Microscope
    from sim_emulator.presets import preset_config

    if stack is None and preset is None:
        fail("give a STACK, a --preset, or both")
    columns: dict[str, StackStatistics] = {}
    with exit_on(StackFormatError, StackStatisticsError, ValueError, FileNotFoundError):
        if stack is not None:
            raw = load_raw_stack(stack)
            if not 0 <= time_point < raw.n_time_points:
                raise typer.BadParameter(
                    f"{time_point} not in 0..{raw.n_time_points - 1}", param_hint="--time-point"
                )
            pixel = pixel_size_nm or raw.pixel_size_nm
            if pixel is None:
                raise typer.BadParameter(f"{stack} states no pixel size: give --pixel-size-nm")
            columns[stack.name] = measure_stack(raw.time_point(time_point), pixel, na, emission_nm)
        if preset is not None:
            for seed in range(seeds):
                config = preset_config(preset, seed=seed)
                frames = Microscope(config).render_set(0.0)
                columns[f"{preset} seed {seed}"] = measure_stack(
                    frames, config.optics.pixel_size_nm, na, emission_nm
                )
    typer.echo(comparison_table(columns))
    if output is not None:
        write_json(output, {k: v.model_dump() for k, v in columns.items()}, indent=1)
        typer.echo(f"wrote {output}")
