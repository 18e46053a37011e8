"""Held-out assessment of IMC-SR models on emulator mixtures (fidelity, false positives, flicker).

Held-out fields use emulator seeds from `HELD_OUT_FIRST_SEED`, disjoint from the training seeds
(`TRAINING_FIRST_SEED` + 1000 * training seed + i) and from the validation seeds that pick a
run's best checkpoint (`VALIDATION_FIRST_SEED` + i). A separator here is any function mapping an
input batch (N, F, Y, X) in [0, 1] to channels (N, C, Y, X).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from inference.imc.metrics import (
    ChannelScores,
    channel_scores,
    cross_talk_fraction,
    flicker,
    hallucination_fraction,
)
from inference.imc.mixtures import MixtureConfig, RenderedField, add_noise, render_field

HELD_OUT_FIRST_SEED = 1
VALIDATION_FIRST_SEED = 50_000
TRAINING_FIRST_SEED = 100_000

BatchSeparator = Callable[[np.ndarray], np.ndarray]


def module_separator(modules: Sequence[nn.Module]) -> BatchSeparator:
    """A batch separator from one IMC-SR-All module or several single-structure modules."""

    def separate(inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
            outputs = [module(x) for module in modules]
        return torch.cat(outputs, dim=1).numpy()

    return separate


def held_out_fields(config: MixtureConfig, n_fields: int) -> list[RenderedField]:
    """Fields rendered from the held-out seeds."""
    return [render_field(config, HELD_OUT_FIRST_SEED + i) for i in range(n_fields)]


def assess_fields(
    separate: BatchSeparator,
    fields: Sequence[RenderedField],
    noise_std: float,
    input_frames: int,
    seed: int = 0,
) -> ChannelScores:
    """Scores of the middle time point of each field (noisy input, clean ground truth)."""
    rng = np.random.default_rng([seed, 0xA55])
    predictions, truths = [], []
    for field in fields:
        t_count = field.targets.shape[0]
        centre = t_count // 2
        if input_frames == 3:
            if t_count < 3:
                raise ValueError("the temporal model needs fields with >= 3 time points")
            times = [centre - 1, centre, centre + 1]
        else:
            times = [centre]
        noisy = add_noise(field.mixture[times], noise_std, rng)
        predictions.append(separate(noisy[None])[0])
        truths.append(field.targets[centre])
    return channel_scores(np.stack(predictions), np.stack(truths))


def cross_talk_per_field(
    separate: BatchSeparator,
    fields: Sequence[RenderedField],
    noise_std: float,
    seed: int = 0,
) -> np.ndarray:
    """Cross-talk fraction (N fields, C) of a single-frame separator on each field's middle
    frame; the same `seed` gives every model the same noisy inputs (paired comparisons)."""
    return false_positives_per_field(separate, fields, noise_std, seed)[0]


def false_positives_per_field(
    separate: BatchSeparator,
    fields: Sequence[RenderedField],
    noise_std: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-talk fraction (N, C) and hallucination fraction (N,) of a single-frame separator
    on each field's middle frame; the same `seed` gives every model the same noisy inputs."""
    rng = np.random.default_rng([seed, 0xC7A1])
    cross_talk, hallucination = [], []
    for field in fields:
        centre = field.targets.shape[0] // 2
        noisy = add_noise(field.mixture[[centre]], noise_std, rng)
        prediction = separate(noisy[None])[0]
        truth, clean = field.targets[centre], field.mixture[centre]
        cross_talk.append(cross_talk_fraction(prediction, truth, clean))
        hallucination.append(hallucination_fraction(prediction, truth, clean))
    return np.stack(cross_talk), np.asarray(hallucination, dtype=np.float64)


def separate_time_lapse(
    separate: BatchSeparator, noisy: np.ndarray, input_frames: int
) -> np.ndarray:
    """Separate every frame of a noisy time-lapse (T, Y, X) -> (T, C, Y, X).

    The temporal model sees (t-1, t, t+1) with the edge frames repeated at both ends.
    """
    outputs = []
    for t in range(noisy.shape[0]):
        if input_frames == 3:
            window = noisy[[max(t - 1, 0), t, min(t + 1, noisy.shape[0] - 1)]]
        else:
            window = noisy[[t]]
        outputs.append(separate(window[None])[0])
    return np.stack(outputs)


def time_lapse_flicker(
    separate: BatchSeparator,
    fields: Sequence[RenderedField],
    noise_std: float,
    input_frames: int,
    seed: int = 0,
) -> dict[str, float]:
    """Mean flicker of the model's output and of the ground truth over the fields' time-lapses."""
    rng = np.random.default_rng([seed, 0xF11C])
    model_values, truth_values, pearson_values = [], [], []
    for field in fields:
        clean = field.mixture
        noisy = add_noise(clean, noise_std, rng)
        prediction = separate_time_lapse(separate, noisy, input_frames)
        model_values.append(flicker(prediction, clean))
        truth_values.append(flicker(field.targets, clean))
        pearson_values.append(float(np.mean(channel_scores(prediction, field.targets).pearson)))
    return {
        "flicker": float(np.mean(model_values)),
        "ground_truth_flicker": float(np.mean(truth_values)),
        "mean_pearson": float(np.mean(pearson_values)),
    }


def scores_dict(scores: ChannelScores, channel_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """{channel: {metric: value}} for reports and JSON."""
    plain = asdict(scores)
    return {
        name: {metric: float(values[i]) for metric, values in plain.items()}
        for i, name in enumerate(channel_names)
    }
