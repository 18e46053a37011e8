"""`livesim` sub-commands contributed by the `inference` package: convert-weights, predict,
models, and the `bench inference` benchmark."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_json_output, check_output, exit_on, write_json

if TYPE_CHECKING:
    import numpy as np

    from inference.stack_io import RawStack

log = logging.getLogger(__name__)

# optics assumed for the noise band when a stack states none (the noise band starts beyond the
# detection cutoff, so a too-high NA only narrows the band a little)
NOISE_NA = 1.49
NOISE_EMISSION_NM = 525.0


def convert_weights(
    keras_h5: Path = typer.Argument(..., help="the authors' Keras HDF5 weights file"),
    arch: str = typer.Option(..., "--arch", help="dfcan or dfgan (generator)"),
    input_channels: int = typer.Option(..., "--input-channels", help="1 (SISR), 9 (SIM), 25"),
    output: Path = typer.Option(..., "--output", "-o", help="model file to write (.pt)"),
    name: str | None = typer.Option(None, "--name", help="model name (default: file stem)"),
    overwrite: opt.Overwrite = False,
) -> None:
    """Convert DFCAN / DFGAN Keras weights into a livesim model file."""
    check_output(output, overwrite, inputs=[keras_h5], suffixes=(".pt",))
    from inference.keras_weights import (
        MODE_BY_CHANNELS,
        WeightConversionError,
        convert_keras_weights,
    )
    from inference.model_file import save_model

    with exit_on(WeightConversionError, FileNotFoundError):
        model = convert_keras_weights(keras_h5, arch, input_channels)
    info = save_model(
        output,
        model,
        architecture=arch,
        mode=MODE_BY_CHANNELS[input_channels],  # type: ignore[arg-type]
        name=name,
        source=f"converted from {keras_h5.name}",
    )
    count = sum(p.numel() for p in model.parameters())
    typer.echo(f"{output}: {arch} {info.mode}, {count:,} parameters, sha256 {info.weights_sha256}")


def predict(
    input_path: opt.RawStackPath,
    model: str = typer.Option(..., "--model", "-m", help="bundled name or model file"),
    output: Path = typer.Option(..., "--output", "-o", help="output image (.npy or .tif)"),
    backend: str = typer.Option("torch", "--backend", help="torch, onnxruntime, tensorrt, auto"),
    device: opt.Device = "cpu",
    channel: opt.Channel = 0,
    overwrite: opt.Overwrite = False,
    trust_every: opt.TrustEvery = 10,
    electrons_from_noise: bool = typer.Option(
        True,
        "--electrons-from-noise/--no-electrons-from-noise",
        help="SIM models: convert each orientation's frames to photo-electrons with a gain and "
        "offset read from its own noise (stacks stretched per orientation otherwise show the "
        "network a false pattern); needs the pixel size.",
    ),
) -> None:
    """Run a model on a raw stack; writes the float32 model output (2H x 2W, or T x 2H x 2W).

    For SIM models the summary gives the trust record (docs/trust.md) of every Nth time point:
    pattern parameters estimated on the raw frames, the ideal OTF NA 1.35 / 525 nm.
    """
    import numpy as np

    from inference.live_trust import TrustMonitor, trust_summary
    from inference.model_file import ModelFileError, load_model
    from inference.reconstruction import ModelReconstructor
    from inference.stack_io import IMAGE_SUFFIXES, StackFormatError, load_raw_stack, save_image

    check_output(output, overwrite, inputs=[input_path, Path(model)], suffixes=IMAGE_SUFFIXES)
    with exit_on(ModelFileError, StackFormatError, FileNotFoundError, ValueError):
        loaded = load_model(model)
        n_patterns = None if loaded.info.mode == "sisr" else loaded.info.input_frames
        stack = load_raw_stack(input_path, n_patterns=n_patterns, channel=channel)
        reconstructor = ModelReconstructor(
            loaded, None, device=device, backend=backend, precision="fp32"
        )
        images = []
        flagged = 0
        checked = trust_every if loaded.info.mode == "sim" else 0
        monitor = TrustMonitor(reconstructor, checked, pixel_size_nm=stack.pixel_size_nm)
        records = []
        to_electrons = _noise_electrons(stack, loaded.info.mode, electrons_from_noise)
        for t in range(stack.n_time_points):
            raw = to_electrons(np.asarray(stack.time_point(t)))
            result = reconstructor.reconstruct(raw)
            images.append(result.image)
            if result.flags:
                flagged += 1
                typer.echo(f"time point {t}: flags {', '.join(result.flags)}", err=True)
            if monitor.due():
                try:
                    records.append(monitor.check(raw, result.image, result.model_name)[0])
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    typer.echo(f"time point {t}: trust record not computed: {exc}", err=True)
    out = images[0] if len(images) == 1 else np.stack(images)
    # the output grid's pixel: the input's, shrunk by the model's upsampling
    pixel_nm = (None if stack.pixel_size_nm is None
                else stack.pixel_size_nm * stack.frames.shape[-1] / out.shape[-1])
    if pixel_nm is None:
        typer.echo(f"note: {input_path} states no pixel size; {output} carries none", err=True)
    save_image(output, out.astype(np.float32, copy=False), pixel_size_nm=pixel_nm)
    typer.echo(
        f"{output}: {out.shape} float32 from {loaded.name} ({loaded.info.mode}), "
        f"sha256 {loaded.sha256[:12]}, {flagged} flagged time point(s)"
    )
    if checked:
        typer.echo(trust_summary(records, stack.n_time_points))


def _noise_electrons(
    stack: RawStack, mode: str, enabled: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """The per-time-point conversion `predict` applies: photo-electrons per orientation from the
    noise (calibration.stack_statistics.electrons_per_orientation), or the frames unchanged."""
    import numpy as np

    from calibration.stack_statistics import StackStatisticsError, electrons_per_orientation

    if not enabled or mode != "sim":
        return np.asarray
    if stack.pixel_size_nm is None:
        typer.echo(f"note: {stack.path} states no pixel size: frames used as stored", err=True)
        return np.asarray
    na = stack.na or NOISE_NA
    emission_nm = stack.emission_nm or NOISE_EMISSION_NM
    cutoff = 2.0 * na / emission_nm * stack.pixel_size_nm

    def convert(raw: np.ndarray) -> np.ndarray:
        try:  # a SIM model's 9 frames: 3 orientations
            electrons, gains, _ = electrons_per_orientation(raw, cutoff)
        except StackStatisticsError as exc:
            typer.echo(f"note: no gain from the noise ({exc}): frames as stored", err=True)
            return raw
        log.info("gain per orientation from the noise: %s ADU/e-", [round(g, 2) for g in gains])
        return electrons

    return convert


def bench_inference(
    sizes: str = typer.Option("256,512,1024", "--sizes", help="square raw sizes, comma separated"),
    engines: str = typer.Option(
        "torch,onnxruntime,tensorrt",
        "--engines",
        help="backends to try, '+matmul' for the DFT-as-matmul attention "
        "(e.g. onnxruntime+matmul); unavailable ones are reported",
    ),
    models: str = typer.Option(
        "dfcan-sim",
        "--models",
        help="bundled names, model files, or dfcan-sim-full / dfcan-sisr-full / "
        "dfgan-sim-full (the authors' full-size architectures, random weights)",
    ),
    device: opt.Device = "auto",
    iterations: int = typer.Option(3, "--iterations", help="timed runs per case (max)"),
    budget_s: float = typer.Option(60.0, "--time-limit-s", help="per case: stop timing after"),
    threads: int = typer.Option(0, "--threads", help="torch/ORT threads (0: all cores)"),
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
    imc_model: str = typer.Option(
        "imcsr", "--imc-model", help="IMC-SR model timed on the SR sizes ('' to skip)"
    ),
    reference_tf: Path | None = typer.Option(
        None, "--reference-tf",
        help="a checkout of github qc17-THU/DL-SR: instead of the table, time the authors' "
        "DFCAN (TensorFlow) against livesim's engines, interleaved, on --reference-stack",
    ),
    reference_python: Path = typer.Option(
        Path("python3"), "--reference-python",
        help="a Python with tensorflow and tf_keras, for --reference-tf",
    ),
    reference_weights: Path = typer.Option(
        Path("../shared/dlsr_assets/dfcan_sim_random_weights.h5"), "--reference-weights",
        help="Keras DFCAN weights both sides load (livesim converts them)",
    ),
    reference_stack: Path = typer.Option(
        Path("../shared/dlsr_assets/rDL-SIM_Microtubules_MT_raw9.mrc"), "--reference-stack",
        help="raw SIM stack; its first set is the input",
    ),
    repeats: int = typer.Option(5, "--repeats", help="interleaved repeats for --reference-tf"),
) -> None:
    """SR frames/s and latency per engine, model and size (authors: < 1 s per 1024x1024),
    and the IMC-SR separation of the SR images those sizes give."""
    check_json_output(json_out, overwrite)
    from rich.console import Console
    from rich.table import Table

    from acquisition.cli.bench.engines import run_inference_benchmark

    if reference_tf is not None:
        from acquisition.cli.bench.tf_reference import ReferenceError, compare_with_reference

        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        with exit_on(FileNotFoundError, ReferenceError):
            comparison = compare_with_reference(reference_tf, reference_python,
                                                reference_weights, reference_stack, repeats)
        for line in comparison.lines():
            typer.echo(line)
        write_json(json_out, comparison.as_dict())
        return

    rows = run_inference_benchmark(
        sizes=[int(s) for s in sizes.split(",") if s],
        backends=[e for e in engines.split(",") if e],
        models=[m for m in models.split(",") if m],
        device=device,
        iterations=iterations,
        budget_s=budget_s,
        threads=threads,
    )
    table = Table(title="livesim bench inference (reference: authors' DFCAN < 1 s per 1024x1024)")
    for column in ("model", "engine", "size", "setup s", "latency ms", "SR frames/s", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.model,
            row.engine,
            f"{row.size}x{row.size}",
            f"{row.setup_s:.1f}" if row.setup_s is not None else "-",
            f"{row.latency_ms:.0f}" if row.latency_ms is not None else "-",
            f"{row.frames_per_s:.3g}" if row.frames_per_s is not None else "-",
            row.note,
        )
    imc: dict[str, object] = {}
    if imc_model:
        from acquisition.cli.bench.imcsr import bench_imcsr
        from inference.engines import resolve_device

        imc = bench_imcsr([2 * int(s) for s in sizes.split(",") if s], imc_model,
                          resolve_device(device),
                          iterations, budget_s, threads)
        for imc_row in imc["rows"]:  # type: ignore[attr-defined]
            table.add_row(
                f"{imc['model']} (IMC-SR)", str(imc["device"]),
                f"SR {imc_row['sr_size']}x{imc_row['sr_size']}", f"{imc_row['setup_s']:.1f}",
                f"{imc_row['latency_ms']:.0f}", f"{imc_row['frames_per_s']:.3g}",
                "temporal" if imc["temporal"] else "single-frame",
            )
    Console(width=160).print(table)
    write_json(json_out, {"sr": [r.__dict__ for r in rows], "imc": imc})
