"""IMC-SR training data for the trainer: SR image(s) in, per-structure components out.

Two sources, chosen by `TrainingConfig.data`:
- `imc-mix:<a>,<b>,<c>` noiseless emulator mixtures (`inference.imc.mixtures`) with shot-like
  input noise; a fresh field per example (rendering one costs ~0.01 s).
- `imc-live:<folder>` live reconstructions (`inference.imc.live_data`): the DFCAN-SIM and
  Wiener SIM outputs of the realistic emulator, cached as `<folder>/train/*.npz` and
  `<folder>/validation/*.npz`; the input is normalised as `ImcSeparator` does live.

Batch `k` depends only on (seed, k), so a resumed run sees the same batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from inference.imc.assessment import TRAINING_FIRST_SEED, VALIDATION_FIRST_SEED
from inference.imc.live import widefield_on_sr_grid
from inference.imc.live_data import fit_targets, load_field, normalised
from inference.imc.mixtures import MixtureConfig, MixturePool, add_noise, render_field
from inference.models.imcsr import ImcsrOptions
from inference.training.config import TrainingConfig
from inference.training.data import DataSourceError, dihedral

Pair = tuple[np.ndarray, np.ndarray]  # input (F, Y, X), target (C, Y, X)
_SEED_STRIDE = 10_000_000  # training seeds of different run seeds never meet


class ImcSampler(Protocol):
    """What the trainer needs from IMC-SR data."""

    description: str
    structures: tuple[str, ...]

    def batch(self, step: int) -> Pair:
        """Inputs (N, F, c, c) and targets (N, C, c, c) of training step `step`."""
        ...

    def validation(self, count: int) -> list[Pair]:
        """`count` held-out whole fields (disjoint from training)."""
        ...


def open_imc_source(config: TrainingConfig) -> ImcSampler:
    """The sampler of `config.data` (`imc-mix:...` or `imc-live:<folder>`)."""
    kind, _, rest = config.data.partition(":")
    if kind == "imc-mix":
        return MixtureSampler(config, tuple(n.strip() for n in rest.split(",") if n.strip()))
    if kind == "imc-live":
        if config.imc.temporal:
            raise DataSourceError(f"--data {config.data}: live fields are single frames; "
                                  "a temporal model trains on imc-mix data")
        return LiveFieldSampler(config, Path(rest))
    raise DataSourceError(f"IMC-SR data {config.data!r}: expected imc-mix:<a>,<b>,<c> "
                          "or imc-live:<folder>")


def _output_indices(config: TrainingConfig, structures: tuple[str, ...]) -> list[int]:
    outputs = config.imc.outputs or structures
    missing = [name for name in outputs if name not in structures]
    if missing:
        raise DataSourceError(f"imc.outputs {list(outputs)}: {missing} not in the data's "
                              f"structures {list(structures)}")
    return [structures.index(name) for name in outputs]


class MixtureSampler:
    """Emulator mixtures: a fresh seeded field per example, random crop/orientation, noise."""

    def __init__(self, config: TrainingConfig, structures: tuple[str, ...]) -> None:
        try:
            self.mixtures = MixtureConfig(structures=structures,  # type: ignore[arg-type]
                                          field_px=config.emulator_size_px,
                                          time_points=3 if config.imc.temporal else 1)
            brightness = config.imc.training_brightness_range or self.mixtures.brightness_range
            self.training = self.mixtures.model_copy(update={"brightness_range": brightness})
            MixtureConfig.model_validate(self.training.model_dump())
        except ValueError as exc:
            raise DataSourceError(f"--data {config.data}: {exc}") from exc
        self.structures: tuple[str, ...] = self.mixtures.structures
        self.channels = _output_indices(config, self.structures)
        self.config = config
        self.frames = 3 if config.imc.temporal else 1
        self.description = (f"emulator mixtures of {', '.join(self.structures)} "
                            f"({config.emulator_size_px} px fields, brightness {brightness})")

    def batch(self, step: int) -> Pair:
        c = self.config
        rng = np.random.default_rng([c.seed, step])
        first = TRAINING_FIRST_SEED + _SEED_STRIDE * c.seed + step * c.batch_size
        pool = MixturePool(self.training, c.batch_size, first_seed=first)
        batch = pool.batch(rng, c.batch_size, c.patch_px, self.frames, c.augment)
        return batch.inputs, batch.targets[:, self.channels]

    def validation(self, count: int) -> list[Pair]:
        rng = np.random.default_rng([0, 0x7A1])  # fixed noise: checkpoints see the same inputs
        pairs = []
        for i in range(count):
            field = render_field(self.mixtures, VALIDATION_FIRST_SEED + i)
            centre = field.targets.shape[0] // 2
            times = [centre - 1, centre, centre + 1] if self.frames == 3 else [centre]
            noisy = add_noise(field.mixture[times], self.mixtures.noise_std, rng)
            pairs.append((noisy, field.targets[centre][self.channels]))
        return pairs


class LiveFieldSampler:
    """Cached live reconstructions: each example one field and one SR method (DFCAN-SIM or
    Wiener), the whole field normalised as live, then a random crop and orientation."""

    def __init__(self, config: TrainingConfig, folder: Path) -> None:
        from inference.imc import DEFAULT_STRUCTURES

        self.train_files = sorted((folder / "train").glob("field-*.npz"))
        self.validation_files = sorted((folder / "validation").glob("field-*.npz"))
        if not self.train_files or not self.validation_files:
            raise DataSourceError(f"{folder}: needs train/field-*.npz and validation/field-*.npz "
                                  "(`livesim imc-live-fields`)")
        self.structures: tuple[str, ...] = DEFAULT_STRUCTURES
        self.channels = _output_indices(config, self.structures)
        self.config = config
        self.widefield_input = ImcsrOptions.model_validate(
            config.generator_options(self.structures)).widefield_input
        self.description = (f"live reconstructions {folder} ({len(self.train_files)} training, "
                            f"{len(self.validation_files)} validation fields)"
                            + (", with their wide-field images" if self.widefield_input else ""))

    def _pairs(self, path: Path) -> list[Pair]:
        field = load_field(path)
        context = None
        if self.widefield_input:
            if field.widefield is None:
                raise DataSourceError(f"{path}: no wide-field image (widefield_input=true): "
                                      "make the fields again with `livesim imc-live-fields`")
            image = next(iter(field.sr.values()))
            context = widefield_on_sr_grid(field.widefield, image.shape)
        pairs = []
        for image in field.sr.values():
            x = normalised(image)
            inputs = x[None] if context is None else np.stack([x, context])
            pairs.append((inputs, fit_targets(field.components, x)[self.channels]))
        return pairs

    def batch(self, step: int) -> Pair:
        c = self.config
        rng = np.random.default_rng([c.seed, step])
        inputs, targets = [], []
        for _ in range(c.batch_size):
            pairs = self._pairs(self.train_files[int(rng.integers(len(self.train_files)))])
            x, y = pairs[int(rng.integers(len(pairs)))]
            size_y, size_x = x.shape[-2:]
            if c.patch_px > min(size_y, size_x):
                raise DataSourceError(f"patch_px={c.patch_px} exceeds the SR field "
                                      f"{size_y}x{size_x}")
            y0 = int(rng.integers(size_y - c.patch_px + 1))
            x0 = int(rng.integers(size_x - c.patch_px + 1))
            window = np.s_[..., y0: y0 + c.patch_px, x0: x0 + c.patch_px]
            transform = int(rng.integers(8)) if c.augment else 0
            inputs.append(dihedral(x[window], transform))
            targets.append(dihedral(y[window], transform))
        return np.stack(inputs), np.stack(targets)

    def validation(self, count: int) -> list[Pair]:
        pairs = [pair for path in self.validation_files for pair in self._pairs(path)]
        return pairs[:count]
