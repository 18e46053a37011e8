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
    VALIDATION_FIRST_SEED,
    assess_fields,
    held_out_fields,
    module_separator,
    scores_dict,
)
from inference.imc.loss import ImcLossWeights, imc_loss
from inference.imc.metrics import channel_scores
from inference.imc.mixtures import (
    MixtureConfig,
    MixturePool,
    RenderedField,
    add_noise,
    render_field,
)
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
    training_brightness_range: tuple[float, float] | None = Field(
        default=None, description="relative brightness range of the training fields only "
        "(None: mixtures.brightness_range); validation and held-out fields keep the mixtures'. "
        "A wider range makes brightness a weaker cue, so the network must separate by shape"
    )
    training_fields: int = Field(default=48, ge=1, le=100_000)
    held_out_fields: int = Field(default=8, ge=0, le=10_000)
    field_refresh_every: int = Field(
        default=0, ge=0, description="steps between swapping one training field for a new seed "
        "(0: the fixed pool of training_fields)"
    )
    validation_fields: int = Field(
        default=0, ge=0, le=10_000, description="fields scored every validate_every steps (mean "
        "Pearson); the best checkpoint is saved (0: the last one)"
    )
    validate_every: int = Field(default=250, ge=1)
    max_seconds: float | None = Field(
        default=None, gt=0, description="stop training after this wall time (s)"
    )
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
        self.training_mixtures  # noqa: B018 (validates training_brightness_range)
        if self.crop_px > 2 * self.mixtures.field_px:
            raise ValueError(
                f"crop_px={self.crop_px} exceeds the SR field of 2 x field_px="
                f"{self.mixtures.field_px}"
            )
        return self

    @property
    def training_mixtures(self) -> MixtureConfig:
        """The mixtures the training fields are drawn from."""
        if self.training_brightness_range is None:
            return self.mixtures
        return MixtureConfig.model_validate(
            {**self.mixtures.model_dump(), "brightness_range": self.training_brightness_range}
        )

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
    validation_history: list[tuple[int, float]] = Field(default_factory=list)
    best_step: int | None = None
    steps_done: int | None = None


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
        config.training_mixtures,
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
    validation = [
        render_field(config.mixtures, VALIDATION_FIRST_SEED + i)
        for i in range(config.validation_fields)
    ]
    modules, paths, hashes, history = [], [], [], []
    fit = _Fit()
    for path, channel_names, channels in plans:
        module = Imcsr(config.network(tuple(channel_names)))
        if config.init_from is not None:
            _load_start(module, config.init_from)
        fit = _fit(module, pool, config, weights, channels, rng, label=path.stem,
                   validation=validation, deadline=start + (config.max_seconds or float("inf")))
        history += fit.loss_history
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
        validation_history=fit.validation_history,
        best_step=fit.best_step,
        steps_done=fit.steps_done,
    )
    report = output.with_suffix(".json")
    report.write_text(json.dumps(result.model_dump(mode="json"), indent=1))
    logger.info("IMC-SR training done in %.0f s; report %s", result.seconds, report)
    return result


def _load_start(module: Imcsr, init_from: str) -> None:
    """Start from another model file's weights: the same architecture options, or the same
    but fewer residual groups (the model is deepened by function-preserving new groups), or
    other output structures (the features carry over; see `_renamed_outputs`)."""
    info, state = read_model_file(init_from)
    wanted = module.options.model_dump(mode="json")
    have = dict(info.options)
    extra = wanted["groups"] - int(have.get("groups", 0))
    outputs = {k: wanted[k] for k in ("groups", "channel_names", "output_channels")}
    if info.architecture != "imcsr" or {**have, **outputs} != wanted or extra < 0:
        raise ValueError(
            f"init_from={init_from}: {info.architecture} {info.options} does not match the "
            f"configured imcsr {wanted}"
        )
    old_names = tuple(have.get("channel_names", ()))
    if old_names != module.options.channel_names:
        state = _renamed_outputs(module, state, old_names)
    if extra:
        state = _deepened(module, state, extra)
    module.load_state_dict(state, strict=True)
    logger.info(
        "starting from %s (sha256 %s)%s", init_from, info.weights_sha256,
        f", {extra} residual groups added" if extra else "",
    )


def _renamed_outputs(
    module: Imcsr, state: dict[str, torch.Tensor], old_names: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """`state` with the output conv re-mapped to the module's channel names: a structure the
    old model also produced keeps its output filter; a new structure gets the fresh
    initialisation (its channel is learnt anew on the transferred features)."""
    fresh = module.state_dict()
    weight, bias = fresh["output.weight"].clone(), fresh["output.bias"].clone()
    kept = []
    for index, name in enumerate(module.options.channel_names):
        if name in old_names:
            weight[index] = state["output.weight"][old_names.index(name)]
            bias[index] = state["output.bias"][old_names.index(name)]
            kept.append(name)
    logger.info(
        "output channels %s (was %s): kept %s, new %s", module.options.channel_names,
        old_names, kept, [n for n in module.options.channel_names if n not in kept],
    )
    return {**state, "output.weight": weight, "output.bias": bias}


def _deepened(
    module: Imcsr, state: dict[str, torch.Tensor], extra: int
) -> dict[str, torch.Tensor]:
    """`state` of a shallower model extended by `extra` residual groups that start as x -> 2x
    (each RCAB's last conv zeroed, so every block is the identity); the tail conv's weights are
    divided by 2**extra, so the deeper model computes exactly what the shallower one did."""
    grown = {k: v.clone() for k, v in module.state_dict().items()}
    first_new = module.options.groups - extra
    for key, value in state.items():
        grown[key] = value.clone()
    for key in grown:
        parts = key.split(".")
        if parts[0] == "groups" and int(parts[1]) >= first_new and parts[4] == "conv2":
            grown[key] = torch.zeros_like(grown[key])
    grown["tail.weight"] = state["tail.weight"] / 2.0**extra
    return grown


class _Fit:
    """What one module's training loop produced."""

    def __init__(self) -> None:
        self.loss_history: list[tuple[int, float]] = []
        self.validation_history: list[tuple[int, float]] = []
        self.best_step: int | None = None
        self.steps_done = 0


def validation_pearson(
    module: torch.nn.Module,
    fields: list[RenderedField],
    channels: list[int],
    noise_std: float,
    input_frames: int,
) -> float:
    """Mean Pearson over `fields` and `channels` of the module's separation of the middle
    frame (fixed noise, so successive checkpoints are scored on the same inputs)."""
    rng = np.random.default_rng([0, 0x7A1])
    was_training = module.training
    module.eval()
    predictions, truths = [], []
    with torch.inference_mode():
        for field in fields:
            centre = field.targets.shape[0] // 2
            times = [centre - 1, centre, centre + 1] if input_frames == 3 else [centre]
            noisy = add_noise(field.mixture[times], noise_std, rng)
            predictions.append(module(torch.from_numpy(noisy[None])).numpy()[0])
            truths.append(field.targets[centre][channels])
    module.train(was_training)
    return float(np.mean(channel_scores(np.stack(predictions), np.stack(truths)).pearson))


def _fit(
    module: Imcsr,
    pool: MixturePool,
    config: ImcTrainingConfig,
    weights: ImcLossWeights,
    channels: list[int],
    rng: np.random.Generator,
    label: str,
    validation: list[RenderedField],
    deadline: float,
) -> _Fit:
    """Adam with cosine decay to 10 % of the learning rate; with validation fields, the module
    ends holding its best-scoring weights (checked every `validate_every` steps and at the end).
    """
    module.train()
    optimiser = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=config.steps, eta_min=config.learning_rate * 0.1
    )
    fit = _Fit()
    best_score = -np.inf
    best_state: dict[str, torch.Tensor] | None = None
    running: list[float] = []
    next_seed = pool.fields[-1].seed + 1

    def check(step: int) -> None:
        nonlocal best_score, best_state
        score = validation_pearson(
            module, validation, channels, config.mixtures.noise_std, config.input_frames
        )
        fit.validation_history.append((step, score))
        logger.info("%s step %d validation mean Pearson %.4f", label, step, score)
        if score > best_score:
            best_score, fit.best_step = score, step
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    if validation:
        check(0)
    for step in range(1, config.steps + 1):
        if config.field_refresh_every and step % config.field_refresh_every == 0:
            pool.replace(step // config.field_refresh_every % len(pool.fields), next_seed)
            next_seed += 1
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
        fit.steps_done = step
        out_of_time = time.perf_counter() > deadline
        last = step == config.steps or out_of_time
        if step % config.log_every == 0 or last:
            mean = float(np.mean(running))
            fit.loss_history.append((step, mean))
            running.clear()
            logger.info("%s step %d/%d loss %.5f", label, step, config.steps, mean)
        if validation and (step % config.validate_every == 0 or last):
            check(step)
        if out_of_time:
            logger.warning("%s: max_seconds reached after %d steps", label, step)
            break
    if best_state is not None:
        module.load_state_dict(best_state)
        logger.info("%s keeps step %d (validation %.4f)", label, fit.best_step, best_score)
    return fit
