"""Training IMC-SR on emulator mixtures: IMC-SR-All (one 3-channel model, summation loss) or
IMC-SR-Single (one model per structure), single-frame or temporal (3 frames in, middle out).

`train_imcsr` is what `livesim train --arch imcsr` calls. It writes livesim model files
(`inference.model_file.save_model`, mode "imc") and a JSON report beside them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference.imc.assessment import (
    TRAINING_FIRST_SEED,
    assess_fields,
    held_out_fields,
    module_separator,
    scores_dict,
)
from inference.imc.loss import ImcLossWeights, imc_loss
from inference.imc.mixtures import MixtureConfig, MixturePool
from inference.model_file import read_model_file, save_model
from inference.models.imcsr import Imcsr, ImcsrOptions

logger = logging.getLogger(__name__)

Variant = Literal["all", "single"]


class ImcTrainingConfig(BaseModel):
    """Everything that determines an IMC-SR training run (the seed makes it reproducible)."""

    model_config = ConfigDict(extra="forbid")

    variant: Variant = "all"
    temporal: bool = False
    steps: int = Field(default=1500, ge=1, le=10_000_000)
    batch_size: int = Field(default=4, ge=1, le=1024)
    crop_px: int = Field(default=64, ge=16, le=2048, description="SR pixels per crop side")
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    gradient_clip: float = Field(default=1.0, gt=0, description="max global gradient norm")
    seed: int = 0
    width: int = Field(default=16, ge=1)
    groups: int = Field(default=3, ge=1)
    blocks: int = Field(default=4, ge=1)
    reduction: int = Field(default=4, ge=1)
    loss: ImcLossWeights = Field(default_factory=ImcLossWeights)
    mixtures: MixtureConfig = Field(default_factory=MixtureConfig)
    training_fields: int = Field(default=48, ge=1, le=100_000)
    held_out_fields: int = Field(default=8, ge=0, le=10_000)
    threads: int = Field(default=1, ge=0, le=256, description="torch threads (0: leave as is)")
    init_from: str | None = Field(
        default=None, description="model file to start from (fine-tuning; 'all' variant only)"
    )
    log_every: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ImcTrainingConfig:
        if self.temporal and self.mixtures.time_points < 3:
            mixtures = self.mixtures.model_copy(update={"time_points": 4})
            object.__setattr__(self, "mixtures", mixtures)
        if self.crop_px > 2 * self.mixtures.field_px:
            raise ValueError(
                f"crop_px={self.crop_px} exceeds the SR field of 2 x field_px="
                f"{self.mixtures.field_px}"
            )
        return self

    @property
    def input_frames(self) -> Literal[1, 3]:
        """Frames per model input."""
        return 3 if self.temporal else 1

    def network(self, channel_names: tuple[str, ...]) -> ImcsrOptions:
        """The architecture options for a model producing `channel_names`."""
        return ImcsrOptions(
            input_frames=self.input_frames,
            output_channels=len(channel_names),
            width=self.width,
            groups=self.groups,
            blocks=self.blocks,
            reduction=self.reduction,
            channel_names=channel_names,
        )


class ImcTrainingResult(BaseModel):
    """What a training run produced: model files, their hashes, losses and held-out scores."""

    model_config = ConfigDict(extra="forbid")

    config: ImcTrainingConfig
    model_paths: list[str]
    weights_sha256: list[str]
    seconds: float
    loss_history: list[tuple[int, float]]
    held_out: dict[str, dict[str, float]]
    parameters: int


def train_imcsr(
    output: str | Path,
    *,
    steps: int = 1500,
    variant: Variant = "all",
    temporal: bool = False,
    seed: int = 0,
    crop_px: int = 64,
    batch_size: int = 4,
    summation_loss: bool = True,
    mixtures: MixtureConfig | None = None,
    config: ImcTrainingConfig | None = None,
    threads: int = 1,
) -> ImcTrainingResult:
    """Train IMC-SR on emulator mixtures and write the model file(s) to `output`.

    The keyword arguments build an `ImcTrainingConfig` unless `config` is given (then they are
    ignored). `variant="single"` writes `<stem>-<structure>.pt` per structure.
    """
    if config is None:
        config = ImcTrainingConfig(
            variant=variant,
            temporal=temporal,
            steps=steps,
            seed=seed,
            crop_px=crop_px,
            batch_size=batch_size,
            loss=ImcLossWeights(summation_weight=0.02 if summation_loss else 0.0),
            mixtures=mixtures or MixtureConfig(),
            threads=threads,
        )
    return run_training(Path(output), config)


def run_training(output: Path, config: ImcTrainingConfig) -> ImcTrainingResult:
    """Train per `config` and save; see `train_imcsr`."""
    if output.suffix != ".pt":
        raise ValueError(f"output={output}: model files end in .pt")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 0x7EA1])
    start = time.perf_counter()
    pool = MixturePool(
        config.mixtures,
        config.training_fields,
        first_seed=TRAINING_FIRST_SEED + 1000 * config.seed,
    )
    names = config.mixtures.structures
    plans: list[tuple[Path, tuple[str, ...], list[int]]]
    if config.variant == "all":
        plans = [(output, names, list(range(len(names))))]
        weights = config.loss
    else:
        plans = [
            (output.with_name(f"{output.stem}-{name}.pt"), (name,), [i])
            for i, name in enumerate(names)
        ]
        weights = config.loss.model_copy(update={"summation_weight": 0.0})
    modules, paths, hashes, history = [], [], [], []
    for path, channel_names, channels in plans:
        module = Imcsr(config.network(tuple(channel_names)))
        if config.init_from is not None:
            _load_start(module, config.init_from)
        history += _fit(module, pool, config, weights, channels, rng, label=path.stem)
        module.eval()
        info = save_model(
            path,
            module,
            architecture="imcsr",
            mode="imc",
            name=path.stem,
            options=module.options,
            source=f"train_imcsr on emulator mixtures: {config.model_dump_json()}",
        )
        modules.append(module)
        paths.append(str(path))
        hashes.append(info.weights_sha256)
    held_out: dict[str, dict[str, float]] = {}
    if config.held_out_fields:
        fields = held_out_fields(config.mixtures, config.held_out_fields)
        scores = assess_fields(
            module_separator(modules), fields, config.mixtures.noise_std, config.input_frames
        )
        held_out = scores_dict(scores, names)
    result = ImcTrainingResult(
        config=config,
        model_paths=paths,
        weights_sha256=hashes,
        seconds=time.perf_counter() - start,
        loss_history=history,
        held_out=held_out,
        parameters=sum(p.numel() for m in modules for p in m.parameters()),
    )
    report = output.with_suffix(".json")
    report.write_text(json.dumps(result.model_dump(mode="json"), indent=1))
    logger.info("IMC-SR training done in %.0f s; report %s", result.seconds, report)
    return result


def _load_start(module: Imcsr, init_from: str) -> None:
    """Start from another model file's weights (same architecture options required)."""
    info, state = read_model_file(init_from)
    wanted = module.options.model_dump(mode="json")
    if info.architecture != "imcsr" or info.options != wanted:
        raise ValueError(
            f"init_from={init_from}: {info.architecture} {info.options} does not match the "
            f"configured imcsr {wanted}"
        )
    module.load_state_dict(state, strict=True)
    logger.info("starting from %s (sha256 %s)", init_from, info.weights_sha256)


def _fit(
    module: Imcsr,
    pool: MixturePool,
    config: ImcTrainingConfig,
    weights: ImcLossWeights,
    channels: list[int],
    rng: np.random.Generator,
    label: str,
) -> list[tuple[int, float]]:
    """Adam with cosine decay to 10 % of the learning rate; returns (step, mean loss) points."""
    module.train()
    optimiser = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=config.steps, eta_min=config.learning_rate * 0.1
    )
    history: list[tuple[int, float]] = []
    running: list[float] = []
    for step in range(1, config.steps + 1):
        batch = pool.batch(rng, config.batch_size, config.crop_px, config.input_frames)
        inputs = torch.from_numpy(batch.inputs)
        targets = torch.from_numpy(batch.targets[:, channels])
        mixture = torch.from_numpy(batch.mixture)
        loss = imc_loss(module(inputs), targets, mixture, weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.gradient_clip)
        optimiser.step()
        schedule.step()
        running.append(float(loss.detach()))
        if step % config.log_every == 0 or step == config.steps:
            mean = float(np.mean(running))
            history.append((step, mean))
            running.clear()
            logger.info("%s step %d/%d loss %.5f", label, step, config.steps, mean)
    return history
