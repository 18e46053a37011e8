"""`livesim` training, bundled-model and assessment sub-commands (inference package):
`livesim train`, `livesim models` and `livesim evaluate`."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_output, exit_on, fail

if TYPE_CHECKING:
    from inference.domain import ModelDomain
    from inference.model_file import Normalisation


class StopRequest:
    """SIGINT / SIGTERM during training: finish the step, checkpoint, stop (a second one aborts)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt  # asked twice: stop now, without a checkpoint
        self.signal_name = signal.Signals(number).name

    def __enter__(self) -> StopRequest:
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

def _model_overrides(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def train(
    arch: str | None = typer.Option(None, "--arch", help="dfcan (default), dfgan, imcsr, cmgan"),
    mode: str | None = typer.Option(
        None, "--mode", help="sisr (wide-field), sim (9 frames; default), nlsim"
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        help="emulator:<structure>[,<structure>...] (default emulator:microtubules), "
        "biosr:<folder>, a .h5 run file, pairs:<folder of .npz>, tiff-pairs:<stack.tif>[,...] "
        "(real stacks with a _gt reference); join sources with + and weight them with @w; "
        "IMC-SR: imc-mix:<a>,<b>,<c> (default imc-mix:microtubules,er,lysosomes) or "
        "imc-live:<folder> (live reconstructions)",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="model file to write (.pt)"),
    init: str | None = typer.Option(None, "--init", help="start from this model (bundled/path)"),
    steps: int | None = typer.Option(None, "--steps", help="iterations (default 10000)"),
    resume: Path | None = typer.Option(
        None, "--resume", help="checkpoint to continue from (its output may exist)"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing model file and checkpoint."
    ),
    config: Path | None = typer.Option(None, "--config", help="TrainingConfig TOML"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    patch_px: int | None = typer.Option(None, "--patch", help="raw crop size in pixels"),
    emulator_size_px: Annotated[int | None, opt.SIZE_PX] = None,  # of emulated training fields
    width: int | None = typer.Option(None, "--width", help="DFCAN/DFGAN feature channels"),
    groups: int | None = typer.Option(None, "--groups", help="DFCAN/DFGAN residual groups"),
    blocks: int | None = typer.Option(None, "--blocks", help="FCABs per residual group"),
    spectrum_size: int | None = typer.Option(None, "--spectrum-size"),
    reduction: int | None = typer.Option(None, "--reduction"),
    base_width: int | None = typer.Option(None, "--base-width", help="cmgan U-net width"),
    depth: int | None = typer.Option(None, "--depth", help="cmgan U-net depth"),
    tiny: bool = typer.Option(False, "--tiny", help="a tiny network and batch (smoke tests)"),
    learning_rate: float | None = typer.Option(None, "--lr", help="(generator) lr, default 1e-4"),
    d_learning_rate: float | None = typer.Option(None, "--d-lr", help="DFGAN D lr, 2e-5"),
    validation_every: int | None = typer.Option(None, "--validation-every"),
    validation_count: int | None = typer.Option(None, "--validation-count"),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="checkpoint file (default <output>.ckpt)"
    ),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every"),
    seed: Annotated[int | None, opt.SEED] = None,
    device: Annotated[str | None, opt.DEVICE] = None,
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads."),
    time_limit_s: float | None = typer.Option(
        None, "--time-limit-s", help="stop (checkpointed, best model kept) after this long"
    ),
) -> None:
    """Train or fine-tune a network; writes the best model, a checkpoint, a CSV/JSON log and
    a PNG of the curves."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from inference.training import Trainer, TrainingConfig, TrainingError
    from inference.training.checkpoint import CheckpointError
    from inference.training.data import DataSourceError
    from inference.training.model_card import model_card

    if resume is None:
        check_output(output, overwrite, inputs=[Path(init) if init else None, config],
                     suffixes=(".pt",))
        check_output(checkpoint or output.with_suffix(".ckpt"), overwrite, inputs=[output])
    checkpoint = checkpoint or output.with_suffix(".ckpt")
    with exit_on(TrainingError, CheckpointError, DataSourceError, ValueError):
        if resume is not None:
            trainer = Trainer.resume(resume, output, steps=steps)
        else:
            base = TrainingConfig.from_toml(config).model_dump() if config else {}
            values: dict[str, Any] = {**base}
            values.update(_model_overrides(arch=arch, mode=mode, data=data))
            arch = str(values.get("arch", "dfcan"))
            if arch == "imcsr":  # IMC-SR separates SR images of emulator mixtures by default
                from acquisition.run_file import IMC_DEFAULT_CHANNEL_NAMES

                values["mode"] = mode or "imc"
                if data is None and not str(values.get("data", "")).startswith("imc-"):
                    values["data"] = "imc-mix:" + ",".join(IMC_DEFAULT_CHANNEL_NAMES)
            options = dict(base.get("model_options", {}))
            if tiny:
                options.update(width=8, groups=1, blocks=1, reduction=2, spectrum_size=16)
                if arch == "cmgan":
                    options = {"base_width": 4, "depth": 2}
                if arch == "imcsr":
                    options = {"width": 4, "groups": 1, "blocks": 1, "reduction": 2}
                values.update(batch_size=2, patch_px=32, emulator_size_px=40, validation_count=2)
            options.update(
                _model_overrides(
                    width=width,
                    groups=groups,
                    blocks=blocks,
                    spectrum_size=spectrum_size,
                    reduction=reduction,
                    base_width=base_width,
                    depth=depth,
                )
            )
            values["model_options"] = options
            values.update(
                _model_overrides(
                    steps=steps,
                    batch_size=batch_size,
                    patch_px=patch_px,
                    emulator_size_px=emulator_size_px,
                    validation_every=validation_every,
                    validation_count=validation_count,
                    checkpoint_every=checkpoint_every,
                    learning_rate=learning_rate,
                    discriminator_learning_rate=d_learning_rate,
                    seed=seed,
                    device=device,
                    threads=threads,
                )
            )
            trainer = Trainer(TrainingConfig.model_validate(values), output, init=init)

    cfg = trainer.config
    typer.echo(f"training {cfg.arch} ({cfg.mode}) on {trainer.description}")
    typer.echo(f"options {trainer.options}; device {trainer.device}; amp {trainer.use_amp}")
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[figures]}"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("train", total=cfg.steps, completed=trainer.step, figures="")
        state = {"val": float("nan")}
        metric = cfg.validation_metric

        def on_row(row: dict[str, float]) -> None:
            state["val"] = row.get(f"val_{metric}", state["val"])
            figures = f"loss {row['loss']:.4f} val {metric} {state['val']:.4f} lr {row['lr']:.2g}"
            progress.update(task, completed=int(row["step"]) + 1, figures=figures)

        with StopRequest() as stop:
            while True:
                chunk = cfg.steps if deadline is None else min(cfg.steps, trainer.step + 50)
                result = trainer.run(
                    until_step=chunk,
                    on_row=on_row,
                    checkpoint=checkpoint,
                    plot=False,
                    should_stop=stop.requested,
                )
                if stop.signal_name is not None:
                    typer.echo(
                        f"{stop.signal_name}: stopped at step {trainer.step}, checkpoint "
                        f"{checkpoint} (continue with --resume {checkpoint})",
                        err=True,
                    )
                    break
                if trainer.step >= cfg.steps:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    trainer.save_checkpoint(checkpoint)
                    typer.echo(f"--time-limit-s reached at step {trainer.step}", err=True)
                    break
    if trainer.best_state is None or not output.is_file():
        trainer.save_model()
    trainer.write_log(plot=True)
    card = output.with_suffix(".md")
    card.write_text(model_card(output, [_command_line()], [trainer.summary()]))
    typer.echo(
        f"{output}: best validation {metric} {result.best_val:.4f} at step "
        f"{result.best_step}; {trainer.step} steps; checkpoint {checkpoint}; "
        f"log {result.log_files['csv']}, {result.log_files['png']}; card {card}"
    )
    if stop.signal_name is not None:
        raise typer.Exit(130)


def _command_line() -> str:
    """The command as typed (for the model card), or a note when not run from the shell."""
    import shlex
    import sys

    if Path(sys.argv[0]).name == "livesim":
        return "livesim " + shlex.join(sys.argv[1:])
    return "# (trained programmatically; see the training log JSON for the configuration)"


def models() -> None:
    """List bundled models: name, architecture, mode, parameters, SHA-256 and model card."""
    from inference.model_file import BUNDLED_DIR, BUNDLED_NAMES, ModelFileError, read_model_file

    typer.echo(f"{'name':11s} {'arch':20s} {'mode':5s} {'params':>8s}  {'sha256':16s} card")
    for name in BUNDLED_NAMES:
        path = BUNDLED_DIR / f"{name}.pt"
        card = BUNDLED_DIR / f"{name}.md"
        card_text = str(card) if card.is_file() else "(no card)"
        if not path.is_file():
            typer.echo(f"{name:11s} (not installed: {path} missing)")
            continue
        try:
            info, state = read_model_file(path)
        except ModelFileError as exc:
            typer.echo(f"{name:11s} unusable: {exc}")
            continue
        count = sum(int(t.numel()) for t in state.values())
        typer.echo(
            f"{name:11s} {info.architecture:20s} {info.mode:5s} {count:8,d}  "
            f"{info.weights_sha256[:16]} {card_text}"
        )
        typer.echo(f"{'':11s} domain: {_domain_summary(info.domain)}")
        typer.echo(f"{'':11s} input: {_normalisation_summary(info.normalisation)}")


def _normalisation_summary(normalisation: Normalisation) -> str:
    """One line: how a model scales its input (it changes what the network draws)."""
    if normalisation.kind == "none":
        return "not normalised"
    low, high = normalisation.low_pct, normalisation.high_pct
    if (low, high) == (0, 100):
        return "min-max of each set (the authors'; one outlier pixel sets the scale)"
    return f"percentiles {low:g}-{high:g} of each set mapped to 0-1" + (
        ", clipped" if normalisation.clip else "")


def _domain_summary(domain: ModelDomain | None) -> str:
    """One line: the training domain a model card records (what --model auto checks)."""
    if domain is None:
        return "not recorded (--model auto never uses this network)"
    parts = [f"NA {domain.na}", f"emission {domain.emission_nm} nm",
             f"pixel {domain.pixel_size_nm} nm"]
    if domain.pattern_period_nm is not None:
        parts.append(f"period {domain.pattern_period_nm} nm")
    if domain.orientations_deg is not None:
        angles = "/".join(f"{a:g}" for a in domain.orientations_deg)
        parts.append(f"orientations {angles} deg +-{domain.orientation_tolerance_deg:g}")
    parts += [f"photon count {domain.photon_count_e} e-",
              f"background fraction {domain.background_fraction}"]
    if domain.better_than_wiener_below_e is not None:
        parts.append(f"beats Wiener below {domain.better_than_wiener_below_e:g} e-")
    return ", ".join(parts)


def evaluate(
    structures: str = typer.Option("microtubules,f-actin,er,ccps", "--structures"),
    photon_counts_e: str = typer.Option(
        "15,30,60,120,240,480", "--photon-counts-e",
        help="photon levels, average photon count in e- (docs/emulator.md)",
    ),
    methods: str = typer.Option("wf,wiener,dfcan-sisr,dfcan-sim,dfgan-sim", "--methods"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for CSV, markdown and PNG"),
    samples: int = typer.Option(4, "--samples", help="held-out fields per structure and level"),
    size_px: opt.SizePx = 128,
    decorrelation: bool = typer.Option(True, "--decorrelation/--no-decorrelation"),
    border_px: int = typer.Option(
        16, "--border", help="raw px left out at each edge before scoring (Wiener's taper)"
    ),
    threads: opt.Threads = 0,
) -> None:
    """The assessment matrix on held-out emulator seeds: NRMSE, MS-SSIM and decorrelation
    resolution per structure x photon level x method, and where each network beats Wiener."""
    from inference.assessment import AssessmentConfig, run_assessment, write_assessment

    with exit_on(ValueError):
        config = AssessmentConfig(
            structures=[s for s in structures.split(",") if s],
            photon_counts_e=[float(p) for p in photon_counts_e.split(",") if p],
            methods=[m for m in methods.split(",") if m],
            samples=samples,
            size_px=size_px,
            decorrelation=decorrelation,
            border_px=border_px,
            threads=threads,
        )
        result = run_assessment(config, progress=lambda text: typer.echo(text, err=True))
    files = write_assessment(result, output)
    typer.echo(files["markdown"].read_text())
    typer.echo("wrote " + ", ".join(str(p) for p in files.values()))


def evaluate_real(
    model: list[str] = typer.Option(
        ["dfcan-sim"], "--model", "-m", help="bundled name or model file (repeat for several)"
    ),
    shared: Path = typer.Option(
        Path("../shared"), "--shared", help="folder holding dlsr_assets/ and real_sim/"
    ),
    regions: str = typer.Option("1,2,3", "--regions", help="T-SIM ER regions to score"),
    threads: opt.Threads = 0,
) -> None:
    """Networks against Wiener SIM and wide-field on the real SIM data (docs/assessment.md):
    filament width, resolution-scaled Pearson and fine-scale agreement with Wiener SIM on the
    real TIRF-SIM microtubule stack; Pearson and NRMSE on the T-SIM ER regions."""
    import numpy as np
    import torch

    from inference.model_file import ModelFileError, load_model
    from inference.real_data import Reconstruct, er_report, markdown_tables, microtubule_report
    from inference.reconstruction import ModelReconstructor

    if threads:
        torch.set_num_threads(threads)
    if not (shared / "dlsr_assets").is_dir() or not (shared / "real_sim").is_dir():
        fail(f"{shared} holds no dlsr_assets/ and real_sim/ folders")
    methods: dict[str, Reconstruct] = {}

    def network(reconstructor: ModelReconstructor) -> Reconstruct:
        return lambda raw: np.asarray(reconstructor.reconstruct(raw).image)

    with exit_on(ModelFileError, FileNotFoundError, ValueError):
        for name in model:
            methods[name] = network(ModelReconstructor(load_model(name), None, device="cpu"))
        region_list = [int(r) for r in regions.split(",") if r]
    typer.echo(markdown_tables(microtubule_report(shared, methods),
                               er_report(shared, region_list, methods)))
