"""The trainer: DFCAN (supervised MSE-SSIM), DFGAN (1 discriminator step then 3 generator
steps, generator loss 0.1 BCE + MSE-SSIM), the cross-modality U-net (trained like DFGAN) and
IMC-SR (mode imc: SR image in, structure channels out, `inference.imc.loss.imc_loss`).

Validation every `validation_every` steps (NRMSE; IMC-SR: mean Pearson per channel) keeps the
best weights (written to the model file at each improvement); the learning rate halves after
`patience` validations without improvement, down to `lr_floor_fraction` of the start. Batches
depend only on (seed, step), and checkpoints carry optimizer, schedule and RNG state, so a
resumed run continues the same loss trajectory.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.evaluation import score
from inference.model_file import Normalisation, load_model, save_model
from inference.models import build_model, validate_options
from inference.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from inference.training.config import TrainingConfig
from inference.training.data import DataSource, PatchSampler, Sampler, open_source
from inference.training.losses import bce, pixel_ssim_loss
from inference.training.training_log import LogRow, log_paths, write_log

log = logging.getLogger(__name__)

GAN_ARCHS = ("dfgan", "cmgan")
BATCHES_PER_ITERATION = 8  # batch draws reserved per iteration: 1 D + up to 7 G steps
# a DFGAN generator is a DFCAN network, so a trained DFCAN can start (pre-train) a DFGAN
INIT_COMPATIBLE = {"dfgan": ("dfcan",)}
DEFAULT_DISCRIMINATOR = {"stem_width": 16, "block_widths": (16, 32, 64, 64), "dense_width": 64}
# the run's bookkeeping a checkpoint carries, with its type
PROGRESS_FIELDS: dict[str, type] = {
    "init_source": str, "step": int, "lr_scale": float, "elapsed_s": float,
    "bad_validations": int, "best_val": float, "best_step": int}


class TrainingError(ValueError):
    """A training run that cannot start (bad init model, incompatible checkpoint...)."""


@dataclass
class TrainingResult:
    """What a run produced: model file, best validation NRMSE and the step it was reached."""

    output: Path
    steps: int
    best_val: float  # NRMSE, or IMC-SR's mean Pearson (config.validation_metric)
    best_step: int
    rows: list[LogRow] = field(default_factory=list)
    log_files: dict[str, Path] = field(default_factory=dict)
    elapsed_s: float = 0.0


def resolve_training_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; an explicit 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


class Trainer:
    """One training run of `config` writing the best model to `output`."""

    def __init__(
        self,
        config: TrainingConfig,
        output: Path,
        source: DataSource | None = None,
        init: str | Path | None = None,
    ) -> None:
        self.config = config
        self.output = Path(output)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_training_device(config.device)
        self.use_amp = self.device.type == "cuda" and config.amp != "off"
        if config.amp == "on" and self.device.type != "cuda":
            log.warning("mixed precision needs CUDA; training in float32 on %s", self.device)
        self.normalisation = Normalisation() if config.mode == "imc" else config.normalisation
        self.sampler: Sampler
        structures: tuple[str, ...] = ()
        if config.mode == "imc":
            from inference.imc.data import open_imc_source

            self.sampler = open_imc_source(config)
            structures = self.sampler.structures
        else:
            source = source or open_source(config.data, config.mode, config.emulator_size_px)
            self.sampler = PatchSampler(source, config.mode, config.patch_px, config.batch_size,
                                        config.seed, self.normalisation, config.augment)
        self.description = self.sampler.description
        torch.manual_seed(config.seed)
        self.options = config.generator_options(structures)
        self.init_source = ""
        if init is not None and config.mode == "imc":  # sizes not configured: the init's
            from inference.model_file import read_model_file, resolve_model_path

            try:
                info, _ = read_model_file(resolve_model_path(init))
            except (ValueError, FileNotFoundError) as exc:
                raise TrainingError(f"--init {init}: {exc}") from exc
            names = ("width", "groups", "blocks", "reduction", "downscale")
            sizes: dict[str, Any] = {k: info.options[k] for k in names if k in info.options}
            self.options = {**sizes, **self.options}
        elif init is not None:
            self._apply_init(init)
        # every option explicit in the model file (defaults differ between dfcan and dfgan)
        self.options = validate_options(config.registry_name, self.options).model_dump(mode="json")
        self.generator = build_model(config.registry_name, self.options).to(self.device)
        if init is not None and config.mode == "imc":
            from inference.imc.transfer import load_start

            try:
                self.init_source = load_start(self.generator, init)  # type: ignore[arg-type]
            except (ValueError, FileNotFoundError) as exc:
                raise TrainingError(f"--init {init}: {exc}") from exc
        elif init is not None:
            self.generator.load_state_dict(self._init_state)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=config.learning_rate)
        self.discriminator: nn.Module | None = None
        self.d_optimizer: torch.optim.Optimizer | None = None
        if config.arch in GAN_ARCHS:
            d_options = {**DEFAULT_DISCRIMINATOR, **config.discriminator_options}
            self.discriminator = build_model("dfgan-discriminator", d_options).to(self.device)
            self.d_optimizer = torch.optim.Adam(
                self.discriminator.parameters(), lr=config.discriminator_learning_rate
            )
        # one loss scaler per optimizer (mixed precision on CUDA only)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.lr_scale = 1.0
        self.bad_validations = 0
        self.higher_is_better = config.validation_metric == "pearson"
        self.best_val = -math.inf if self.higher_is_better else math.inf
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.rows: list[LogRow] = []
        self.elapsed_s = 0.0
        self._validation: list[tuple[torch.Tensor, np.ndarray]] | None = None

    # --- set-up ---------------------------------------------------------------------------

    def _apply_init(self, init: str | Path) -> None:
        """Transfer learning: start from an existing model file (its options win)."""
        try:
            loaded = load_model(init)
        except ValueError as exc:
            raise TrainingError(f"--init {init}: {exc}") from exc
        compatible = {self.config.registry_name, *INIT_COMPATIBLE.get(self.config.arch, ())}
        if loaded.info.architecture not in compatible:
            raise TrainingError(
                f"--init {init} is a {loaded.info.architecture} model, "
                f"training {self.config.registry_name}"
            )
        if loaded.info.mode != self.config.mode:
            raise TrainingError(
                f"--init {init} is a {loaded.info.mode} model, training mode {self.config.mode}"
            )
        full = validate_options(loaded.info.architecture, loaded.info.options)
        self.options = full.model_dump(mode="json")
        self._init_state = {k: v.clone() for k, v in loaded.module.state_dict().items()}
        self.init_source = f"{init} (sha256 {loaded.sha256[:12]})"

    def _validation_set(self) -> list[tuple[torch.Tensor, np.ndarray]]:
        if self._validation is None:
            pairs = self.sampler.validation(self.config.validation_count)
            self._validation = [(torch.from_numpy(x)[None], y) for x, y in pairs]
        return self._validation

    # --- one step -------------------------------------------------------------------------

    def _tensors(self, step: int, part: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `part` (0: discriminator / DFCAN, 1..: generator steps) of iteration `step`."""
        x, y = self.sampler.batch(step * BATCHES_PER_ITERATION + part)
        return (
            torch.from_numpy(x).to(self.device, non_blocking=True),
            torch.from_numpy(y).to(self.device, non_blocking=True),
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp)

    def _generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """One generator update; returns (total loss, MSE-SSIM part)."""
        self.generator.train()
        with self._autocast():
            prediction = self.generator(x)
            content = self._content_loss(prediction, x, y)
            loss = content
            if self.discriminator is not None:
                loss = content + self.config.adversarial_weight * bce(
                    self.discriminator(prediction), real=True)
        _update(self.g_optimizer, self.scaler, loss)
        return float(loss.detach()), float(content.detach())

    def _content_loss(
        self, prediction: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """MSE-SSIM; IMC-SR: its loss with the summation term against the (middle) input."""
        if self.config.mode != "imc":
            return pixel_ssim_loss(prediction, y, self.config.pixel_loss, self.config.ssim_weight)
        from inference.imc.loss import imc_loss

        middle = int(self.options["input_frames"]) // 2  # the SR frame separated
        weights = self.config.imc.loss_weights(single_output=y.shape[1] == 1)
        return imc_loss(prediction, y, x[:, middle : middle + 1], weights)

    def _discriminator_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        assert self.discriminator is not None and self.d_optimizer is not None
        self.discriminator.train()
        with torch.no_grad(), self._autocast():
            fake = self.generator(x)
        with self._autocast():
            loss = bce(self.discriminator(y), real=True) + bce(
                self.discriminator(fake.detach()), real=False
            )
        _update(self.d_optimizer, self.d_scaler, loss)
        return float(loss.detach())

    def train_step(self) -> LogRow:
        """One iteration (DFCAN: one update; GAN: 1 D + `generator_steps` G updates)."""
        row: LogRow = {"step": float(self.step)}
        if self.discriminator is None:
            loss, _ = self._generator_step(*self._tensors(self.step, 0))
            row["loss"] = loss
        else:
            row["d_loss"] = self._discriminator_step(*self._tensors(self.step, 0))
            totals, contents = [], []
            for part in range(1, self.config.generator_steps + 1):
                total, content = self._generator_step(*self._tensors(self.step, part))
                totals.append(total)
                contents.append(content)
            row["g_loss"] = float(np.mean(totals))
            row["loss"] = float(np.mean(contents))
        row["lr"] = self.config.learning_rate * self.lr_scale
        self.step += 1
        return row

    # --- validation and schedule ----------------------------------------------------------

    def validate(self) -> float:
        """Mean NRMSE (linear fit onto the normalised GT) over the held-out examples; IMC-SR:
        mean Pearson over examples and channels."""
        from inference.evaluation import pearson

        self.generator.eval()
        values = []
        with torch.no_grad():
            for x, y in self._validation_set():
                with self._autocast():
                    prediction = self.generator(x.to(self.device))
                image = prediction.float().cpu().numpy()[0]
                if self.higher_is_better:
                    values += [float(pearson(p, t)) for p, t in zip(image, y, strict=True)]
                else:
                    values.append(float(score(image[0], y[0], align=False).nrmse))
        return float(np.mean(values))

    def _after_validation(self, value: float) -> bool:
        """Best-model bookkeeping and the plateau schedule; True when the model improved."""
        if value > self.best_val if self.higher_is_better else value < self.best_val:
            self.best_val = value
            self.best_step = self.step
            self.best_state = copy.deepcopy(self.generator.state_dict())
            self.bad_validations = 0
            return True
        self.bad_validations += 1
        if self.bad_validations >= self.config.patience:
            self.lr_scale = max(self.lr_scale * 0.5, self.config.lr_floor_fraction)
            self.bad_validations = 0
            for group in self.g_optimizer.param_groups:
                group["lr"] = self.config.learning_rate * self.lr_scale
            if self.d_optimizer is not None:
                for group in self.d_optimizer.param_groups:
                    group["lr"] = self.config.discriminator_learning_rate * self.lr_scale
            log.info("validation plateau: learning rate x%.3g", self.lr_scale)
        return False

    # --- the run --------------------------------------------------------------------------

    def run(
        self,
        until_step: int | None = None,
        on_row: Callable[[LogRow], None] | None = None,
        checkpoint: Path | None = None,
        plot: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainingResult:
        """Train up to `until_step` (default config.steps), validating, saving the best model,
        writing the log (and its PNG when `plot`). Checkpoints (with the log so far) go to
        `checkpoint` every `checkpoint_every` steps (0: at every validation), at the end, and
        when `should_stop()` turns true between steps (Ctrl-C: the run can be resumed)."""
        target = self.config.steps if until_step is None else min(until_step, self.config.steps)
        start = time.perf_counter() - self.elapsed_s
        every = self.config.checkpoint_every or self.config.validation_every
        while self.step < target:
            row = self.train_step()
            last = self.step == target
            if self.step % self.config.validation_every == 0 or self.step == self.config.steps:
                value = self.validate()
                row[f"val_{self.config.validation_metric}"] = value
                if self._after_validation(value):
                    self.save_model()
            row["elapsed_s"] = time.perf_counter() - start
            self.rows.append(row)
            if on_row is not None:
                on_row(row)
            stopping = should_stop is not None and should_stop()
            if checkpoint is not None and (last or stopping or self.step % every == 0):
                self.elapsed_s = time.perf_counter() - start
                self.save_checkpoint(checkpoint)
                if not last:
                    self.write_log(plot=False)  # a killed run keeps its curve up to here
            if stopping:
                break
        self.elapsed_s = time.perf_counter() - start
        paths = self.write_log(plot)
        return TrainingResult(self.output, self.step, self.best_val, self.best_step, self.rows,
                              paths, self.elapsed_s)

    def write_log(self, plot: bool = True) -> dict[str, Path]:
        """Write the CSV/JSON log (and the PNG of the curves) next to the model file."""
        paths = log_paths(self.output)
        write_log(self.rows, paths, self.summary(), plot)
        return paths

    def summary(self) -> dict[str, Any]:
        """What the log's JSON and the model card say about the run."""
        return {
            "title": f"{self.config.arch} {self.config.mode} on {self.config.data}",
            "config": self.config.model_dump(mode="json"),
            "options": self.options,
            "data": self.description,
            "init": self.init_source,
            "steps": self.step,
            "validation_metric": self.config.validation_metric,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "lr_scale": self.lr_scale,
            "elapsed_s": self.elapsed_s,
        }

    def save_model(self) -> None:
        """Write the best weights so far (or the current ones) as a livesim model file."""
        module = build_model(self.config.registry_name, self.options)
        module.load_state_dict(self.best_state or self.generator.state_dict())
        source = (
            f"livesim train --arch {self.config.arch} --mode {self.config.mode} "
            f"--data {self.config.data}: step {self.best_step}, "
            f"validation {self.config.validation_metric} {self.best_val:.4f}"
        )
        if self.init_source:
            source += f"; init {self.init_source}"
        save_model(
            self.output,
            module,
            architecture=self.config.registry_name,
            mode=self.config.mode,
            options=self.options,
            normalisation=self.normalisation,
            source=source,
        )

    # --- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(self, path: Path) -> None:
        """Everything needed to continue this run exactly (see `Trainer.resume`)."""
        state: dict[str, Any] = {
            "config_json": json.dumps(self.config.model_dump(mode="json")),
            "options_json": json.dumps(self.options),
            **{name: getattr(self, name) for name in PROGRESS_FIELDS},
            "generator": self.generator.state_dict(),
            "generator_optimizer": self.g_optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "d_scaler": self.d_scaler.state_dict(),
            "best_state": self.best_state or {},
            "rows": self.rows,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.discriminator is not None and self.d_optimizer is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["discriminator_optimizer"] = self.d_optimizer.state_dict()
        save_checkpoint(path, state)
        log.info("checkpoint %s at step %d", path, self.step)

    @classmethod
    def resume(
        cls,
        path: Path,
        output: Path,
        source: DataSource | None = None,
        steps: int | None = None,
    ) -> Trainer:
        """A trainer continuing the checkpointed run (optionally to a new total of `steps`)."""
        state = load_checkpoint(path)
        data = dict(state["config"])
        if steps is not None:
            data["steps"] = steps
        config = TrainingConfig.model_validate(data)
        trainer = cls(config, output, source)
        options = json.loads(state["options_json"])
        if options != trainer.options:
            trainer.options = options
            trainer.generator = build_model(config.registry_name, options).to(trainer.device)
            trainer.g_optimizer = torch.optim.Adam(
                trainer.generator.parameters(), lr=config.learning_rate
            )
        try:
            trainer.generator.load_state_dict(state["generator"])
            trainer.g_optimizer.load_state_dict(state["generator_optimizer"])
            if trainer.discriminator is not None and trainer.d_optimizer is not None:
                trainer.discriminator.load_state_dict(state["discriminator"])
                trainer.d_optimizer.load_state_dict(state["discriminator_optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: state does not fit the model: {exc}") from exc
        trainer.scaler.load_state_dict(state["scaler"])
        if "d_scaler" in state:
            trainer.d_scaler.load_state_dict(state["d_scaler"])
        progress = {"elapsed_s": 0.0, **state}  # older checkpoints have no elapsed_s
        for name, kind in PROGRESS_FIELDS.items():
            setattr(trainer, name, kind(progress[name]))
        trainer.best_state = state["best_state"] or None
        trainer.rows = list(state["rows"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return trainer


def _update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor
            ) -> None:
    """One optimizer step on ``loss`` through its (mixed-precision) loss scaler."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
