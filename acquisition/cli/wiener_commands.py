"""`livesim reconstruct` (conventional Wiener SIM of a raw stack), `livesim calibrate pattern`
and `livesim bench wiener`. Heavy imports live inside the command functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_output, exit_on, fail, write_json

if TYPE_CHECKING:
    import numpy as np

    from calibration.otf import OtfLike
    from inference.stack_io import RawStack


def calibrate_pattern_command(
    input_path: Path = typer.Argument(..., help="bright raw SIM stack of the rig"),
    output: Path = typer.Option(..., "--output", "-o", help="pattern calibration file (.json)"),
    na: opt.StackNa = None,
    otf_path: opt.StackOtf = None,
    wavelength_nm: opt.StackWavelengthNm = None,
    pixel_size_nm: opt.StackPixelSizeNm = None,
    time_points: int = typer.Option(5, "--time-points", help="fit on up to this many sets"),
    channel: opt.Channel = 0,
    overwrite: opt.Overwrite = False,
) -> None:
    """Fit the illumination pattern (period, angle, modulation, phases) on a bright stack and
    save it for `livesim reconstruct --pattern-parameters` and the live Wiener path.

    Period and angle are fixed by the SLM, so a fit on a bright specimen serves dim ones.
    Refuses to save a fit that fails `check_sim_parameters` (after clipping modulation > 1).
    """
    import numpy as np

    from calibration.sim_parameters import (
        calibrate_pattern,
        check_sim_parameters,
        usable_parameters,
    )
    from inference.stack_io import StackFormatError, load_raw_stack

    check_output(output, overwrite, inputs=[input_path], suffixes=(".json",))
    if time_points < 1:
        fail(f"--time-points {time_points} must be >= 1")
    with exit_on(StackFormatError, FileNotFoundError, ValueError):
        stack = load_raw_stack(input_path, n_patterns=9, channel=channel)
        first = np.asarray(stack.time_point(0))
        optics = resolve_optics(stack, first, na, otf_path, wavelength_nm, pixel_size_nm)
        sets = [
            np.asarray(stack.time_point(t)) for t in range(min(time_points, stack.n_time_points))
        ]
        calibration = calibrate_pattern(
            sets,
            optics.pixel_size_nm,
            optics.otf,
            otf_description=optics.description,
            source=str(input_path),
        )
    usable, changes = usable_parameters(calibration.parameters)
    problems = check_sim_parameters(usable, optics.expected_period_nm)
    if problems:
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        fail(f"{input_path}: pattern fit not trusted; nothing saved")
    calibration = calibration.model_copy(update={"parameters": usable, "problems": changes})
    calibration.save(output)
    periods = optics.pixel_size_nm / np.hypot(*usable.wave_vectors_cycles_per_px().T)
    typer.echo(
        f"{output}: {len(sets)} time point(s) of {input_path.name}, {optics.description}; "
        f"periods {', '.join(f'{p:.1f}' for p in periods)} nm, modulation "
        f"{', '.join(f'{m:.2f}' for m in usable.modulations())}"
        + (f"; adjusted: {'; '.join(changes)}" if changes else "")
    )


def reconstruct_command(
    input_path: opt.RawStackPath,
    output: Path = typer.Option(..., "--output", "-o", help="output image (.npy or .tif)"),
    method: str = typer.Option("wiener", "--method", help="reconstruction method: wiener"),
    na: opt.StackNa = None,
    otf_path: opt.StackOtf = None,
    wavelength_nm: opt.StackWavelengthNm = None,
    pixel_size_nm: opt.StackPixelSizeNm = None,
    wiener_parameter: float = typer.Option(0.1, "--wiener", help="Wiener parameter w"),
    channel: opt.Channel = 0,
    pattern_parameters: Path = typer.Option(
        None,
        "--pattern-parameters",
        help="rig pattern calibration (`livesim calibrate pattern`); default: fit on the data",
    ),
    parameters_out: Path = typer.Option(
        None, "--parameters", help="also write the pattern parameters used, per time point (JSON)"
    ),
    overwrite: opt.Overwrite = False,
    trust_every: opt.TrustEvery = 10,
) -> None:
    """Conventional SIM reconstruction; writes float32 in [0, 1], (2H, 2W) or (T, 2H, 2W).

    Pattern geometry comes from --pattern-parameters or is fitted on the first time point;
    phases are refined on every time point. The whole field is reconstructed (periodic +
    smooth border decomposition, no dark rim).
    """
    import numpy as np

    from calibration.sim_parameters import PatternCalibration, check_sim_parameters
    from inference.stack_io import IMAGE_SUFFIXES, StackFormatError, load_raw_stack, save_image
    from inference.wiener import WienerConfig, WienerSeries

    check_output(output, overwrite, inputs=[input_path, parameters_out],
                 suffixes=IMAGE_SUFFIXES)
    if parameters_out is not None:
        check_output(parameters_out, overwrite, inputs=[input_path, output],
                     suffixes=(".json",))

    if method != "wiener":
        fail(f"--method {method!r} not handled here; use 'wiener' "
             "(models run with `livesim predict`)")
    with exit_on(StackFormatError, FileNotFoundError, ValueError):
        stack = load_raw_stack(input_path, n_patterns=9, channel=channel)
        if stack.n_patterns != 9:
            raise StackFormatError(f"{input_path}: Wiener SIM needs 9 patterns per time point")
        first = np.asarray(stack.time_point(0))
        optics = resolve_optics(stack, first, na, otf_path, wavelength_nm, pixel_size_nm)
        calibration = None
        if pattern_parameters is not None:
            calibration = PatternCalibration.load(pattern_parameters).parameters
        background = float(np.percentile(first, 0.5))
        config = WienerConfig(wiener_parameter=wiener_parameter, background_adu=background)
        series = WienerSeries(
            first.shape[-2:], optics.pixel_size_nm, optics.otf, config, calibration
        )
        images, fits = [], []
        for t in range(stack.n_time_points):
            image, fit = series.reconstruct(np.asarray(stack.time_point(t)))
            images.append(image)
            fits.append(fit)
    out = np.stack(images) if len(images) > 1 else images[0]
    peak = float(out.max())
    out = (out / peak if peak > 0 else out).astype(np.float32)
    save_image(output, out, pixel_size_nm=optics.pixel_size_nm / 2.0)
    used = fits[0].parameters
    write_json(parameters_out, [{"time_point": t, "source": f.source, "problems": f.problems,
                                 "parameters": f.parameters.model_dump()}
                                for t, f in enumerate(fits)])
    flagged = sum(not f.reliable for f in fits)
    if optics.expected_period_nm is not None:
        for problem in check_sim_parameters(used, optics.expected_period_nm):
            if "expected" in problem:
                flagged += 1
                typer.echo(f"warning: pattern: {problem}", err=True)
    periods = [
        f"{optics.pixel_size_nm / np.hypot(*k):.1f} nm" for k in used.wave_vectors_cycles_per_px()
    ]
    typer.echo(
        f"{output}: {out.shape} float32, pixel {optics.pixel_size_nm / 2:.2f} nm; "
        f"{optics.description}; pattern periods {', '.join(periods)}, "
        f"modulation {', '.join(f'{m:.2f}' for m in used.modulations())} "
        f"({'calibration' if calibration is not None else 'fitted'}; phases refined on "
        f"{sum(f.source == 'refined' for f in fits)} of {len(fits) - (calibration is None)} "
        "later time points)"
    )
    if trust_every:
        _echo_trust(stack, out, fits, optics.otf, trust_every)
    if flagged:
        typer.echo(
            f"warning: the pattern fit was flagged on {flagged} of {len(fits)} time points "
            "(messages above): check the optics, or use --pattern-parameters from a bright "
            "calibration stack",
            err=True,
        )


def _echo_trust(stack: RawStack, out: np.ndarray, fits: Sequence[Any], otf: OtfLike,
                every: int) -> None:
    """The trust record (docs/trust.md) of every ``every``-th time point, with the pattern
    parameters each was reconstructed with."""
    import numpy as np

    from inference.live_trust import TRUST_MAX_SIZE_PX, trust_summary
    from inference.trust import central_trust_record

    images = np.asarray(out).reshape(len(fits), *np.asarray(out).shape[-2:])
    records = []
    for t in range(0, len(fits), every):
        raw = np.asarray(stack.time_point(t), dtype=np.float64)
        try:
            record, _ = central_trust_record(images[t], raw, fits[t].parameters, otf,
                                             TRUST_MAX_SIZE_PX)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            typer.echo(f"time point {t}: trust record not computed: {exc}", err=True)
            continue
        records.append(record)
    typer.echo(trust_summary(records, len(fits)))


@dataclass(frozen=True)
class ResolvedOptics:
    """The OTF, pixel size and pattern expectation a reconstruction uses, and where from."""

    otf: OtfLike
    pixel_size_nm: float
    description: str
    expected_period_nm: float | None


def resolve_optics(
    stack: RawStack,
    first_set: np.ndarray,
    na: float | None = None,
    otf_path: Path | None = None,
    emission_nm: float | None = None,
    pixel_size_nm: float | None = None,
) -> ResolvedOptics:
    """Optics from the command line, else from the file; a ValueError naming what is missing.

    Cross-check: the OTF support measured on the wide-field image of ``first_set`` (P, Y, X)
    (a lower bound of the true cutoff) must not exceed the stated cutoff by more than 5 %.
    """
    import numpy as np

    from calibration.otf import (
        MeasuredOtf,
        OtfModel,
        default_emission_nm,
        estimate_otf_support_cycles_per_px,
    )

    name = stack.path.name
    pixel = pixel_size_nm or stack.pixel_size_nm
    if pixel is None:
        raise ValueError(f"{name}: the pixel size is not in the file; pass --pixel-size-nm")
    support_px = estimate_otf_support_cycles_per_px(first_set.astype(np.float32).mean(axis=0))
    otf: OtfLike
    if otf_path is not None:
        otf = MeasuredOtf.from_mrc(otf_path)
        description = f"measured OTF {otf_path.name}"
    else:
        aperture = na or stack.na
        if aperture is None:
            hint = ""
            if stack.illumination_na is not None:
                hint = (
                    f" (the label's NA {stack.illumination_na} is the illumination NA of the "
                    "pattern, not the detection NA)"
                )
            seen = ""
            if support_px:
                seen = (
                    f"; the data has signal up to {support_px / pixel * 1e3:.2f} cycles/um, so "
                    "the detection cutoff is at least that"
                )
            raise ValueError(
                f"{name}: the detection NA is not in the file{hint}; pass --na (objective NA) "
                f"or --otf (the rig's measured OTF .mrc){seen}"
            )
        emission = emission_nm or stack.emission_nm
        if emission is None:
            if stack.excitation_nm is None:
                raise ValueError(
                    f"{name}: neither emission nor excitation wavelength is in the file; "
                    "pass --wavelength-nm (emission)"
                )
            emission = default_emission_nm(stack.excitation_nm)
        otf = OtfModel(na=aperture, emission_nm=emission)
        description = f"NA {aperture}, emission {emission:.0f} nm"
    cutoff_px = otf.cutoff_cycles_per_nm * pixel
    if support_px is not None and support_px > 1.05 * cutoff_px:
        raise ValueError(
            f"{name}: the data has signal up to {support_px:.3f} cycles/px but the stated optics "
            f"({description}, {pixel:.1f} nm pixels) cut off at {cutoff_px:.3f}: the NA, "
            "wavelength or pixel size is wrong"
        )
    expected = None
    if stack.illumination_na is not None and stack.excitation_nm is not None:
        expected = stack.excitation_nm / (2.0 * stack.illumination_na)
    return ResolvedOptics(otf, pixel, description, expected)


def bench_wiener_command(
    size_px: opt.SizePx = 512,
    repeats: int = typer.Option(50, "--repeats", help="timed reconstructions"),
    device: str = typer.Option("cpu", "--device", help="cpu (NumPy) or cuda (torch)"),
) -> None:
    """Wiener SIM time per 9-frame set with fixed (precomputed) parameters."""
    import os
    import statistics
    import time

    import numpy as np

    from acquisition.cli.bench.timing import emulated_wiener, time_calls

    raw, sim, setup_s = emulated_wiener(size_px)
    if device == "cpu":
        frames = raw

        def run() -> None:
            sim.reconstruct(frames)
    else:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            fail("--device cuda but no CUDA GPU is available")
        tensor = torch.from_numpy(raw.astype(np.float32)).to(device)

        def run() -> None:
            sim.reconstruct_torch(tensor)
            torch.cuda.synchronize()

    for _ in range(3):
        run()
    cpu_start = time.process_time()
    times_ms = [1e3 * t for t in time_calls(run, repeats)]
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / repeats
    median = statistics.median(times_ms)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    typer.echo(
        f"wiener {size_px}x{size_px}x9 on {device}: median {median:.1f} ms, "
        f"min {min(times_ms):.1f} ms, max {max(times_ms):.1f} ms over {repeats} "
        f"({1000.0 / median:.0f} reconstructions/s); CPU time {cpu_ms:.1f} ms per set; "
        f"parameter estimation + filters {setup_s:.2f} s; load average {load}"
    )
