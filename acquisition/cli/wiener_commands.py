"""`livesim reconstruct` (conventional Wiener SIM of a raw stack) and `livesim bench wiener`.

They sit in `inference` beside `inference.wiener`, which `calibration` must not import
(layering: inference -> calibration). Heavy imports live inside the command functions.
"""

from __future__ import annotations

from pathlib import Path

import typer

from acquisition.cli.output_files import OVERWRITE_HELP, check_output


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add `reconstruct` to the root CLI and `wiener` to `livesim bench`."""
    app.command("reconstruct")(reconstruct_command)
    bench.command("wiener")(bench_wiener_command)


def reconstruct_command(
    input_path: Path = typer.Argument(..., help="raw stack: .mrc, .tif, .npy or livesim .h5"),
    output: Path = typer.Option(..., "--output", "-o", help="output image (.npy or .tif)"),
    method: str = typer.Option("wiener", "--method", help="reconstruction method: wiener"),
    na: float = typer.Option(None, "--na", help="detection NA (default: from the file, 1.35)"),
    wavelength_nm: float = typer.Option(
        None, "--wavelength-nm", help="emission wavelength (default: from the file's laser line)"
    ),
    pixel_size_nm: float = typer.Option(
        None, "--pixel-size-nm", help="raw pixel size (default: from the file, else 62.6)"
    ),
    wiener_parameter: float = typer.Option(0.1, "--wiener", help="Wiener parameter w"),
    channel: int = typer.Option(0, "--channel", help="colour channel of a .h5 run file"),
    parameters_out: Path = typer.Option(
        None, "--parameters", help="also write the estimated pattern parameters (JSON)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Conventional SIM reconstruction; writes float32 in [0, 1], (2H, 2W) or (T, 2H, 2W).

    Pattern parameters are estimated on the first time point and reused for the others.
    """
    import numpy as np

    from calibration.otf import OtfModel, default_emission_nm
    from inference.stack_io import IMAGE_SUFFIXES, StackFormatError, load_raw_stack, save_image
    from inference.wiener import WienerConfig, WienerSim

    check_output(output, overwrite, inputs=[input_path, parameters_out],
                 suffixes=IMAGE_SUFFIXES)
    if parameters_out is not None:
        check_output(parameters_out, overwrite, inputs=[input_path, output],
                     suffixes=(".json",))

    if method != "wiener":
        typer.echo(
            f"error: --method {method!r} not handled here; use 'wiener' "
            "(models run with `livesim predict`)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        stack = load_raw_stack(input_path, n_patterns=9, channel=channel)
        if stack.n_patterns != 9:
            raise StackFormatError(f"{input_path}: Wiener SIM needs 9 patterns per time point")
        pixel = pixel_size_nm or stack.pixel_size_nm or 62.6
        aperture = na or stack.na or 1.35
        emission = wavelength_nm or stack.emission_nm
        if emission is None:
            emission = default_emission_nm(stack.excitation_nm or 488.0)
        otf = OtfModel(na=aperture, emission_nm=emission)
        first = np.asarray(stack.time_point(0))
        background = float(np.percentile(first, 0.5))
        config = WienerConfig(wiener_parameter=wiener_parameter, background_adu=background)
        sim = WienerSim.from_raw(first, pixel, otf, config)
        images = [
            sim.reconstruct(np.asarray(stack.time_point(t))) for t in range(stack.n_time_points)
        ]
    except (StackFormatError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    out = np.stack(images) if len(images) > 1 else images[0]
    peak = float(out.max())
    out = (out / peak if peak > 0 else out).astype(np.float32)
    save_image(output, out, pixel_size_nm=sim.output_pixel_size_nm)
    if parameters_out is not None:
        parameters_out.write_text(sim.parameters.model_dump_json(indent=2))
    periods = [
        f"{pixel / np.hypot(*k):.1f} nm" for k in sim.parameters.wave_vectors_cycles_per_px()
    ]
    typer.echo(
        f"{output}: {out.shape} float32, pixel {sim.output_pixel_size_nm:.2f} nm; "
        f"NA {aperture}, emission {emission:.0f} nm; pattern periods {', '.join(periods)}, "
        f"modulation {', '.join(f'{m:.2f}' for m in sim.parameters.modulations())}"
    )


def bench_wiener_command(
    size_px: int = typer.Option(512, "--size", help="raw frame size (square, px)"),
    repeats: int = typer.Option(50, "--repeats", help="timed reconstructions"),
    device: str = typer.Option("cpu", "--device", help="cpu (NumPy) or cuda (torch)"),
) -> None:
    """Wiener SIM time per 9-frame set with fixed (precomputed) parameters."""
    import os
    import statistics
    import time

    import numpy as np

    from calibration.otf import OtfModel
    from inference.wiener import WienerConfig, WienerSim
    from sim_emulator.microscope import EmulatorConfig, Microscope

    config = EmulatorConfig(size_px=size_px, photon_count_e=300.0, seed=1)
    raw = Microscope(config).render_set(0.0)
    otf = OtfModel(
        na=config.optics.na, emission_nm=config.optics.emission_nm, pixel_integration=True
    )
    start = time.perf_counter()
    sim = WienerSim.from_raw(raw, config.optics.pixel_size_nm, otf, WienerConfig())
    setup_s = time.perf_counter() - start
    if device == "cpu":
        frames = raw

        def run() -> None:
            sim.reconstruct(frames)
    else:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            typer.echo("error: --device cuda but no CUDA GPU is available", err=True)
            raise typer.Exit(2)
        tensor = torch.from_numpy(raw.astype(np.float32)).to(device)

        def run() -> None:
            sim.reconstruct_torch(tensor)
            torch.cuda.synchronize()

    for _ in range(3):
        run()
    times_ms = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times_ms.append((time.perf_counter() - start) * 1e3)
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / repeats
    median = statistics.median(times_ms)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    typer.echo(
        f"wiener {size_px}x{size_px}x9 on {device}: median {median:.1f} ms, "
        f"min {min(times_ms):.1f} ms, max {max(times_ms):.1f} ms over {repeats} "
        f"({1000.0 / median:.0f} reconstructions/s); CPU time {cpu_ms:.1f} ms per set; "
        f"parameter estimation + filters {setup_s:.2f} s; load average {load}"
    )
