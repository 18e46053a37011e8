"""Emulator mixtures (sum = input, determinism, temporal windows) and the IMC metrics."""

from __future__ import annotations

import numpy as np
import pytest

from inference.imc.metrics import (
    cross_talk_fraction,
    false_positive_fraction,
    flicker,
    hallucination_fraction,
    static_signal_mask,
)
from inference.imc.mixtures import MixtureConfig, MixturePool, render_field


def test_field_targets_sum_to_the_mixture_and_are_seeded() -> None:
    config = MixtureConfig(field_px=24, time_points=2)
    field = render_field(config, seed=5)
    assert field.targets.shape == (2, 3, 48, 48)
    assert field.mixture.max() == pytest.approx(1.0, abs=1e-6)
    assert field.targets.min() >= 0.0
    for channel in range(3):  # every structure is present
        assert field.targets[0, channel].max() > 0.1
    np.testing.assert_array_equal(render_field(config, seed=5).targets, field.targets)
    assert not np.array_equal(render_field(config, seed=6).targets, field.targets)


def test_temporal_batches_are_windows_around_the_target_frame() -> None:
    config = MixtureConfig(field_px=16, time_points=3, noise_std=0.0)
    pool = MixturePool(config, n_fields=1, first_seed=3)
    batch = pool.batch(np.random.default_rng(0), 2, 24, frames=3)
    assert batch.inputs.shape == (2, 3, 24, 24) and batch.targets.shape == (2, 3, 24, 24)
    # without noise the middle input frame is exactly the sum of the targets
    np.testing.assert_allclose(batch.inputs[:, 1], batch.targets.sum(axis=1), atol=1e-6)
    np.testing.assert_array_equal(batch.mixture[:, 0], batch.inputs[:, 1])
    with pytest.raises(ValueError, match="crop_px"):
        pool.batch(np.random.default_rng(0), 1, 64, frames=1)
    with pytest.raises(ValueError, match="structures"):
        MixtureConfig(structures=("ccps", "microtubules", "nuclei"))


def test_false_positive_fraction_counts_signal_where_the_truth_is_dark() -> None:
    truth = np.zeros((1, 2, 10, 10))
    truth[0, 0, :5] = 1.0
    truth[0, 1, 5:] = 1.0
    prediction = truth.copy()
    assert false_positive_fraction(prediction, truth) == pytest.approx(np.zeros((1, 2)))
    prediction[0, 0, 5:] = 0.25  # channel 0 leaks into channel 1's structure
    expected = (0.25 * 50) / (50 + 0.25 * 50)
    assert false_positive_fraction(prediction, truth)[0, 0] == pytest.approx(expected)
    # a flat label background is not signal: the same leak on top of it scores the same
    assert false_positive_fraction(prediction + 0.02, truth + 0.02)[0, 0] == pytest.approx(
        expected
    )
    assert false_positive_fraction(truth + 0.02, truth + 0.02)[0, 1] == pytest.approx(0.0)


def test_cross_talk_counts_only_signal_put_on_another_structure() -> None:
    truth = np.full((2, 10, 10), 0.02)  # label background
    truth[0, :4] += 1.0  # structure 0 in rows 0-3, structure 1 in rows 4-6, rows 7-9 empty
    truth[1, 4:7] += 1.0
    mixture = truth.sum(axis=0)
    prediction = truth.copy()
    assert cross_talk_fraction(prediction, truth, mixture) == pytest.approx(np.zeros(2))
    prediction[0, 4:7] += 0.5  # channel 0 copies structure 1 at half strength: cross-talk
    prediction[0, 7:] += 0.3  # and invents signal where nothing is: not cross-talk
    expected = (0.5 * 30) / (40 + 0.5 * 30 + 0.3 * 30)
    values = cross_talk_fraction(prediction, truth, mixture)
    assert values[0] == pytest.approx(expected) and values[1] == pytest.approx(0.0)
    # the older false-positive fraction counts both
    assert false_positive_fraction(prediction, truth)[0] == pytest.approx(24 / 64)
    batch = cross_talk_fraction(prediction[None], truth[None], mixture[None])
    assert batch.shape == (1, 2) and batch[0, 0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="do not match"):
        cross_talk_fraction(prediction, truth, mixture[:5])


def test_hallucination_counts_signal_where_the_input_is_background() -> None:
    truth = np.full((2, 10, 10), 0.02)  # each label's flat background: mixture floor 0.04
    truth[0, :4] += 1.0  # structure 0 in rows 0-3, structure 1 in rows 4-6, rows 7-9 empty
    truth[1, 4:7] += 1.0
    mixture = truth.sum(axis=0)
    assert hallucination_fraction(truth, truth, mixture) == pytest.approx(0.0)
    prediction = truth.copy()
    prediction[1, 7:] += 0.2  # invented in the empty rows: counted
    prediction[0, 4:7] += 0.5  # put on the other structure: cross-talk, not hallucination
    expected = (0.2 * 30) / (40 + 30 + 0.2 * 30 + 0.5 * 30)
    assert hallucination_fraction(prediction, truth, mixture) == pytest.approx(expected)
    # faint signal in the input (above 2 x the mixture's floor of 0.04) is not background
    faint = mixture.copy()
    faint[7:, :5] += 0.05
    assert hallucination_fraction(prediction, truth, faint) == pytest.approx(expected / 2)
    batch = hallucination_fraction(prediction[None], truth[None], mixture[None])
    assert batch.shape == (1,) and batch[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="do not match"):
        hallucination_fraction(prediction, truth, mixture[:5])


def test_pool_replace_renders_the_new_seed() -> None:
    config = MixtureConfig(field_px=16)
    pool = MixturePool(config, n_fields=2, first_seed=3)
    pool.replace(0, 11)
    assert [f.seed for f in pool.fields] == [11, 4]
    np.testing.assert_array_equal(pool.fields[0].targets, render_field(config, 11).targets)


def test_flicker_measures_output_change_on_static_signal_only() -> None:
    mixture = np.zeros((3, 8, 8))
    mixture[:, :4] = 0.5  # static signal
    mixture[1, 6:] = 0.5  # appears at t = 1 only: moving, not counted
    assert static_signal_mask(mixture).sum() == 2 * 32
    steady = np.repeat(mixture[:, None], 2, axis=1) / 2
    assert flicker(steady, mixture) == pytest.approx(0.0)
    wobbling = steady.copy()
    wobbling[1, 0, :4] += 0.05
    wobbling[1, 1, :4] -= 0.05  # channels swap intensity at t = 1 (sum unchanged)
    # |change| summed over channels: 0.1 at t 0->1 and 0.1 at 1->2 on the static pixels
    assert flicker(wobbling, mixture) == pytest.approx(0.1 / 0.5)
