"""`livesim` sub-commands for IMC-SR: imc-live-fields, imc-assess(-live), imc-cross-talk and
`bench imcsr` (training: `livesim train --arch imcsr`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_json_output, check_output, exit_on, write_json

if TYPE_CHECKING:
    from inference.imc.live import ImcSeparator


def imc_live_fields(
    output: Path = typer.Option(..., "--output", "-o", help="folder for field-<seed>.npz files"),
    seeds: str = typer.Option(
        ..., "--seed-range", help="FIRST:END (END excluded), e.g. 200000:202400"
    ),
    photons: str = typer.Option(
        "20,600", "--photons", help="LOW,HIGH photon count (e-, log-uniform per field) or one"
    ),
    size_px: opt.SizePx = 64,
    threads: int = typer.Option(1, "--threads", help="Torch CPU threads."),
) -> None:
    """Cache live IMC-SR fields: DFCAN-SIM and Wiener reconstructions of the realistic emulator
    imaging the microtubule/ER/lysosome mix, and the true components (skips existing files)."""
    import torch

    from inference.imc.live_data import cache_fields

    torch.set_num_threads(threads)
    with exit_on(ValueError):
        first, end = (int(v) for v in seeds.split(":"))
        levels = [float(v) for v in photons.split(",")]
        low, high = levels[0], levels[-1]
        if len(levels) > 2 or not 0 < low <= high:
            raise ValueError(f"--photons {photons}: give LOW,HIGH with 0 < LOW <= HIGH or one")
    written = sum(1 for _ in cache_fields(output, range(first, end), (low, high), size_px))
    typer.echo(f"{output}: {written} fields written ({end - first - written} already there)")


def imc_assess_live(
    models: list[str] = typer.Argument(..., help="model files or bundled names"),
    fields_dir: list[Path] = typer.Option(
        ..., "--fields", help="folders of held-out live fields (`livesim imc-live-fields`)"
    ),
    threads: int = typer.Option(1, "--threads", help="Torch CPU threads."),
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Pearson per channel with the true components of IMC-SR on live reconstructions
    (DFCAN-SIM and Wiener separately), mean over the folder's fields."""
    check_json_output(json_out, overwrite)
    import numpy as np
    import torch

    from inference.imc.live import ImcSeparator
    from inference.imc.live_data import assess_live, load_field
    from inference.model_file import ModelFileError

    torch.set_num_threads(threads)
    report: dict[str, object] = {}
    with exit_on(ModelFileError, ValueError):
        for model in models:
            separator = ImcSeparator(model)
            per_folder: dict[str, object] = {}
            for folder in fields_dir:
                fields = [load_field(p) for p in sorted(folder.glob("field-*.npz"))]
                if not fields:
                    raise ValueError(f"{folder}: no field-*.npz files")
                scores = assess_live(separator, fields)
                per_folder[str(folder)] = {
                    method: {**{name: float(np.mean(v)) for name, v in channels.items()},
                             "unexplained": scores.unexplained[method]}
                    for method, channels in scores.pearson.items()
                }
                for method, channels in scores.pearson.items():
                    figures = "  ".join(f"{n} {np.mean(v):.3f}" for n, v in channels.items())
                    unexplained = np.array(scores.unexplained[method])
                    flagged = int((unexplained > separator.unexplained_limit).sum())
                    typer.echo(f"{model} | {folder.name} ({len(fields)} fields) | {method}: "
                               f"{figures} | unexplained median {np.median(unexplained):.4f} "
                               f"max {unexplained.max():.4f}, flagged {flagged}")
            report[model] = {"sha256": separator.sha256, "pearson": per_folder}
    write_json(json_out, report, indent=1)


def imc_domain_limit(
    model: str = typer.Argument(..., help="model file or bundled name"),
    fields_dir: list[Path] = typer.Option(
        ..., "--fields", help="folders of in-domain live fields the model was not trained on"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="model file to write (.pt)"),
    threads: int = typer.Option(1, "--threads", help="Torch CPU threads."),
    overwrite: opt.Overwrite = False,
) -> None:
    """Measure the model's own domain limits (the unexplained fraction above which the live
    separator flags a frame, the range of each channel's share of the signal) on in-domain
    fields and write a copy of the model file with them."""
    check_output(output, overwrite, inputs=[Path(model)], suffixes=(".pt",))
    import numpy as np
    import torch

    from inference.imc.domain_limit import (
        LIMIT_PERCENTILE,
        MARGIN,
        domain_limit,
        measure_in_domain,
        share_ranges,
        write_domain_limits,
    )
    from inference.imc.live import ImcSeparator
    from inference.imc.live_data import load_field
    from inference.model_file import ModelFileError

    torch.set_num_threads(threads)
    with exit_on(ModelFileError, ValueError):
        separator = ImcSeparator(model)
        paths = [p for folder in fields_dir for p in sorted(folder.glob("field-*.npz"))]
        if not paths:
            raise ValueError(f"{', '.join(map(str, fields_dir))}: no field-*.npz files")
        measured = measure_in_domain(separator, [load_field(p) for p in paths])
        limit = domain_limit(measured.fractions)
        shares = share_ranges(measured.shares)
        write_domain_limits(model, output, limit, shares)
    values = measured.fractions
    typer.echo(f"{model}: {len(values)} in-domain images ({len(paths)} fields), unexplained "
               f"median {np.median(values):.4f}, {LIMIT_PERCENTILE:g}th percentile "
               f"{np.percentile(values, LIMIT_PERCENTILE):.4f}, max {values.max():.4f}; "
               f"limit {MARGIN:g} x percentile = {limit:.4f}")
    for name, column, share in zip(separator.channel_names, measured.shares.T, shares,
                                   strict=True):
        typer.echo(f"  {name} share {column.min():.3f}-{column.max():.3f}, range "
                   f"[{share.low:.3f}, {share.high:.3f}]")
    typer.echo(f"-> {output}")


def imc_assess(
    models: list[str] = typer.Argument(
        ..., help="model files or bundled names; join IMC-SR-Single files with commas"
    ),
    fields: int = typer.Option(8, "--fields", help="held-out mixtures for fidelity"),
    time_lapse_fields: int = typer.Option(4, "--time-lapse-fields"),
    time_points: int = typer.Option(8, "--time-points", help="frames per held-out time-lapse"),
    noise_std: float = typer.Option(0.02, "--noise-std"),
    threads: int = typer.Option(1, "--threads", help="Torch CPU threads."),
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Held-out scores per channel (NRMSE, SSIM, Pearson, false positives) and flicker."""
    check_json_output(json_out, overwrite)
    import torch

    from inference.imc.assessment import (
        assess_fields,
        held_out_fields,
        module_separator,
        scores_dict,
        time_lapse_flicker,
    )
    from inference.imc.live import ImcSeparator
    from inference.imc.mixtures import MixtureConfig
    from inference.model_file import ModelFileError

    torch.set_num_threads(threads)
    report: dict[str, object] = {}
    with exit_on(ModelFileError, ValueError):
        for entry in models:
            separators = [ImcSeparator(part) for part in entry.split(",")]
            _refuse_widefield_models(separators, "imc-assess")
            names = tuple(n for s in separators for n in s.channel_names)
            frames = separators[0].input_frames
            config = MixtureConfig.model_validate(
                {"structures": names, "time_points": 3, "noise_std": noise_std}
            )
            separate = module_separator([s.model.module for s in separators])
            scores = assess_fields(separate, held_out_fields(config, fields), noise_std, frames)
            lapse = config.model_copy(update={"time_points": time_points})
            entry_report: dict[str, object] = {
                "sha256": [s.sha256 for s in separators],
                "held_out": scores_dict(scores, names),
            }
            if time_lapse_fields > 0:
                entry_report["time_lapse"] = time_lapse_flicker(
                    separate, held_out_fields(lapse, time_lapse_fields), noise_std, frames
                )
            report[entry] = entry_report
    text = json.dumps(report, indent=1)
    typer.echo(text)
    if json_out is not None:
        json_out.write_text(text)


def imc_cross_talk(
    model_a: str = typer.Argument(..., help="model file or bundled name (e.g. with summation)"),
    model_b: str = typer.Argument(..., help="the model it is paired with (e.g. without)"),
    fields: int = typer.Option(32, "--fields", help="held-out mixtures (seeds 1..N)"),
    noise_std: float = typer.Option(0.02, "--noise-std"),
    threads: int = typer.Option(1, "--threads", help="Torch CPU threads."),
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Paired false-positive comparison of two single-frame models on the same held-out noisy
    mixtures: cross-talk fraction per channel and hallucination fraction (signal where the
    input is background); mean +- standard error over fields, and the paired A - B."""
    check_json_output(json_out, overwrite)
    import numpy as np
    import torch

    from inference.imc.assessment import (
        false_positives_per_field,
        held_out_fields,
        module_separator,
    )
    from inference.imc.live import ImcSeparator
    from inference.imc.metrics import hallucination_fraction
    from inference.imc.mixtures import MixtureConfig
    from inference.model_file import ModelFileError

    torch.set_num_threads(threads)
    with exit_on(ModelFileError, ValueError):
        separators = [ImcSeparator(model_a), ImcSeparator(model_b)]
        _refuse_widefield_models(separators, "imc-cross-talk")
        names = separators[0].channel_names
        if separators[1].channel_names != names or any(s.temporal for s in separators):
            raise ValueError("both models must be single-frame with the same channel names")
        config = MixtureConfig.model_validate({"structures": names, "noise_std": noise_std})
        test = held_out_fields(config, fields)
        (cross_a, hall_a), (cross_b, hall_b) = (
            false_positives_per_field(module_separator([s.model.module]), test, noise_std)
            for s in separators
        )

    def summary(values: np.ndarray) -> dict[str, float]:
        error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        return {"mean": float(values.mean()), "standard_error": error}

    report: dict[str, object] = {"fields": fields, "a": model_a, "b": model_b}
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {
        **{f"cross-talk {n}": (cross_a[:, i], cross_b[:, i]) for i, n in enumerate(names)},
        "cross-talk mean of channels": (cross_a.mean(axis=1), cross_b.mean(axis=1)),
        "hallucination": (hall_a, hall_b),
    }
    for name, (va, vb) in rows.items():
        a, b, diff = summary(va), summary(vb), summary(va - vb)
        lower = int((va < vb).sum())
        report[name] = {"a": a, "b": b, "a_minus_b": diff, "a_lower_in_fields": lower}
        typer.echo(
            f"{name}: A {a['mean']:.5f} +- {a['standard_error']:.5f}  "
            f"B {b['mean']:.5f} +- {b['standard_error']:.5f}  A-B "
            f"{diff['mean']:+.5f} +- {diff['standard_error']:.5f}  "
            f"(A lower in {lower}/{len(va)} fields)"
        )
    floor = np.array([  # blur tails of the true structures below the background threshold
        hallucination_fraction(f.targets[c], f.targets[c], f.mixture[c])
        for f in test for c in [f.targets.shape[0] // 2]
    ])
    report["hallucination of the ground truth"] = summary(floor)
    typer.echo(f"hallucination of the ground truth itself: {floor.mean():.5f}")
    write_json(json_out, report, indent=1)


def bench_imcsr_command(
    sizes: str = typer.Option("256,512,1024", "--sizes", help="square SR sizes"),
    model: str = typer.Option("imcsr", "--model", "-m", help="IMC-SR model (bundled name or .pt)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    iterations: int = typer.Option(3, "--iterations"),
    threads: opt.Threads = 0,
    json_out: opt.JsonOut = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """IMC-SR separation latency and frames/s per SR image size."""
    check_json_output(json_out, overwrite)
    from acquisition.cli.bench.imcsr import bench_imcsr

    result = bench_imcsr(
        [int(s) for s in sizes.split(",") if s], model, device, iterations, threads=threads
    )
    for row in result["rows"]:
        typer.echo(
            f"{result['model']} ({'temporal' if result['temporal'] else 'single-frame'}, "
            f"{result['device']}, {result['threads']} threads) {row['sr_size']}x{row['sr_size']}:"
            f" {row['latency_ms']:.0f} ms, {row['frames_per_s']:.2f} frames/s"
        )
    write_json(json_out, result, indent=1)


def _refuse_widefield_models(separators: Sequence[ImcSeparator], command: str) -> None:
    """The noiseless mixtures of `command` have no wide-field image: name the model that needs
    one instead of failing inside the network."""
    for separator in separators:
        if separator.widefield_input:
            raise ValueError(f"model {separator.name!r} takes the wide-field image, which the "
                             f"noiseless mixtures of {command} do not have: use "
                             "`livesim imc-assess-live` on live fields")
