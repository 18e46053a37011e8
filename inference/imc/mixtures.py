"""IMC-SR training and test data from the emulator: three structures rendered separately.

Each field of view is a fresh seeded emulator sample of three structures. Every structure is
rendered alone at SR resolution (noiseless, through the SIM-extended OTF), normalised to its
own high percentile, given a random relative brightness and a small uniform background (the
label's diffuse fluorescence; exactly-zero targets let the SSIM term drive sigmoid outputs
into saturation); the mixture is their sum scaled so the brightest time point peaks at 1.
Targets are the scaled components, so the mixture equals the sum of the targets before noise.
Time points follow the emulator's motion (drift, diffusion, microtubule growth, bleaching)
for the temporal model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference.imc import DEFAULT_STRUCTURES
from sim_emulator.microscope import EmulatorConfig, Microscope
from sim_emulator.samples import STRUCTURES

logger = logging.getLogger(__name__)

__all__ = [  # DEFAULT_STRUCTURES re-exported: acquisition imports it from here
    "DEFAULT_STRUCTURES", "Batch", "MixtureConfig", "MixturePool", "RenderedField", "add_noise",
    "render_field",
]



class MixtureConfig(BaseModel):
    """How mixtures of three structures are drawn from the emulator."""

    model_config = ConfigDict(extra="forbid")

    structures: tuple[str, str, str] = DEFAULT_STRUCTURES
    field_px: int = Field(default=64, ge=16, le=1024, description="camera pixels per field side")
    time_points: int = Field(default=1, ge=1, le=64, description="frames rendered per field")
    interval_s: float = Field(default=0.5, gt=0, le=60, description="time between frames")
    brightness_range: tuple[float, float] = (0.4, 1.0)
    component_percentile: float = Field(default=99.5, gt=50, le=100)
    noise_std: float = Field(
        default=0.02, ge=0, le=0.5, description="shot-like noise: std = noise_std * sqrt(x)"
    )
    background: float = Field(
        default=0.02, ge=0, le=0.2, description="diffuse background of each label (of peak 1)"
    )

    @model_validator(mode="after")
    def _check(self) -> MixtureConfig:
        for name in self.structures:
            if name not in STRUCTURES:
                raise ValueError(f"structures: {name!r} is not one of {STRUCTURES}")
        low, high = self.brightness_range
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"brightness_range={self.brightness_range} must satisfy 0 < low <= high <= 1"
            )
        return self


@dataclass
class RenderedField:
    """One rendered field: targets (T, 3, sY, sX) in [0, 1]; noiseless mixture (T, sY, sX)."""

    targets: np.ndarray
    seed: int

    @property
    def mixture(self) -> np.ndarray:
        """The noiseless single-channel SR image: the sum of the three structures."""
        return self.targets.sum(axis=1)


def render_field(config: MixtureConfig, seed: int) -> RenderedField:
    """Render one seeded field of view at `config.time_points` times (deterministic in seed)."""
    emulator = Microscope(
        EmulatorConfig(
            structure="mix",
            mix_structures=config.structures,
            size_px=config.field_px,
            seed=seed,
        ).without_realism()  # the distribution the bundled imcsr was trained on (no envelope)
    )
    frames = np.stack(
        [
            emulator.ground_truth_components(t * config.interval_s)
            for t in range(config.time_points)
        ]
    )  # (T, 3, sY, sX)
    frames = np.clip(frames, 0.0, None)
    rng = np.random.default_rng([seed, 0x1AC])
    low, high = config.brightness_range
    for channel in range(frames.shape[1]):
        level = float(np.percentile(frames[0, channel], config.component_percentile))
        weight = rng.uniform(low, high) / max(level, 1e-12)
        frames[:, channel] *= np.float32(weight)
    frames += np.float32(config.background)  # each label's diffuse (cytosolic) background
    peak = float(frames.sum(axis=1).max())
    frames /= np.float32(max(peak, 1e-12))
    return RenderedField(targets=np.ascontiguousarray(frames, dtype=np.float32), seed=seed)


def add_noise(mixture: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """Shot-like noise (std = noise_std * sqrt(x)), clipped to [0, 1]; float32."""
    if noise_std == 0:
        return mixture.astype(np.float32, copy=True)
    noisy = mixture + noise_std * np.sqrt(np.clip(mixture, 0, None)) * rng.standard_normal(
        mixture.shape
    )
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


@dataclass
class Batch:
    """A training batch: inputs (N, F, c, c) with F = 1 or 3 frames, targets (N, 3, c, c) and
    the noisy middle frame (N, 1, c, c) that the summation loss compares with."""

    inputs: np.ndarray
    targets: np.ndarray
    mixture: np.ndarray


class MixturePool:
    """Pre-rendered fields; random crops, flips and rotations with fresh noise per batch."""

    def __init__(self, config: MixtureConfig, n_fields: int, first_seed: int) -> None:
        if n_fields < 1:
            raise ValueError(f"n_fields={n_fields} must be >= 1")
        self.config = config
        self.fields = [render_field(config, first_seed + i) for i in range(n_fields)]
        logger.info(
            "rendered %d IMC fields (seeds %d..%d, %d time points)",
            n_fields, first_seed, first_seed + n_fields - 1, config.time_points,
        )

    def replace(self, index: int, seed: int) -> None:
        """Swap field `index` for a freshly rendered field of `seed` (an endless supply of fields
        keeps a long run from memorising a fixed pool)."""
        self.fields[index] = render_field(self.config, seed)

    @property
    def sr_shape(self) -> tuple[int, int]:
        """(sY, sX) of a field."""
        shape = self.fields[0].targets.shape
        return int(shape[-2]), int(shape[-1])

    def batch(
        self, rng: np.random.Generator, batch_size: int, crop_px: int, frames: int,
        augment: bool = True,
    ) -> Batch:
        """Random crops (rotated and flipped when `augment`); `frames` = 3 gives (t-1, t, t+1)
        windows (needs >= 3 time points)."""
        t_count = self.config.time_points
        if frames not in (1, 3):
            raise ValueError(f"frames={frames} must be 1 or 3")
        if frames == 3 and t_count < 3:
            raise ValueError(f"temporal batches need time_points >= 3, got {t_count}")
        sy, sx = self.sr_shape
        if crop_px > min(sy, sx):
            raise ValueError(f"crop_px={crop_px} is larger than the SR field {sy}x{sx}")
        inputs, targets, mixtures = [], [], []
        for _ in range(batch_size):
            field = self.fields[int(rng.integers(len(self.fields)))]
            centre = int(rng.integers(1, t_count - 1)) if frames == 3 else int(
                rng.integers(t_count)
            )
            times = [centre - 1, centre, centre + 1] if frames == 3 else [centre]
            y0 = int(rng.integers(sy - crop_px + 1))
            x0 = int(rng.integers(sx - crop_px + 1))
            window = (slice(y0, y0 + crop_px), slice(x0, x0 + crop_px))
            target = field.targets[centre][:, window[0], window[1]]
            clean = field.targets[times][:, :, window[0], window[1]].sum(axis=1)
            noisy = add_noise(clean, self.config.noise_std, rng)
            k = int(rng.integers(4)) if augment else 0
            flip = bool(rng.integers(2)) if augment else False
            target, noisy = (_orient(a, k, flip) for a in (target, noisy))
            inputs.append(noisy)
            targets.append(target)
            mixtures.append(noisy[len(times) // 2][None])
        return Batch(
            inputs=np.stack(inputs).astype(np.float32),
            targets=np.stack(targets).astype(np.float32),
            mixture=np.stack(mixtures).astype(np.float32),
        )


def _orient(stack: np.ndarray, quarter_turns: int, flip: bool) -> np.ndarray:
    """Rotate/flip the last two axes (same for inputs and targets)."""
    out = np.rot90(stack, quarter_turns, axes=(-2, -1))
    if flip:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)
