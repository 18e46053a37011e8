"""train_imcsr writes loadable model files with a report; the single variant writes one per
structure; bad configuration is refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.imc.live import ImcSeparator
from inference.imc.mixtures import MixtureConfig, render_field
from inference.imc.training import ImcTrainingConfig, train_imcsr, validation_pearson
from inference.models.imcsr import OUTPUT_BIAS_INIT, Imcsr


def _config(**changes: object) -> ImcTrainingConfig:
    base: dict[str, object] = {
        "steps": 2, "batch_size": 1, "crop_px": 32, "width": 4, "groups": 1, "blocks": 1,
        "reduction": 2, "training_fields": 1, "held_out_fields": 1, "log_every": 1,
        "mixtures": MixtureConfig(field_px=16),
    }
    base.update(changes)
    return ImcTrainingConfig.model_validate(base)


def test_temporal_all_model_round_trips_through_the_separator(tmp_path: Path) -> None:
    output = tmp_path / "imc.pt"
    result = train_imcsr(output, config=_config(temporal=True))
    assert result.config.mixtures.time_points >= 3
    assert result.model_paths == [str(output)] and len(result.loss_history) == 2
    report = json.loads(output.with_suffix(".json").read_text())
    assert list(report["held_out"]) == ["microtubules", "er", "lysosomes"]  # the default trio
    assert report["weights_sha256"][0] == ImcSeparator(output).sha256
    separator = ImcSeparator(output)
    assert separator.temporal
    assert separator.push(np.ones((32, 32), np.float32)) is None


def test_single_variant_writes_one_model_per_structure(tmp_path: Path) -> None:
    result = train_imcsr(tmp_path / "one.pt", config=_config(variant="single"))
    names = [Path(p).name for p in result.model_paths]
    assert names == ["one-microtubules.pt", "one-er.pt", "one-lysosomes.pt"]
    assert ImcSeparator(result.model_paths[1]).channel_names == ("er",)


def test_bad_configuration_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="crop_px=256"):
        _config(crop_px=256)
    with pytest.raises(ValueError, match=r"\.pt"):
        train_imcsr(tmp_path / "model.h5", config=_config())


def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path) -> None:
    from inference.model_file import read_model_file

    first = train_imcsr(tmp_path / "a.pt", config=_config(held_out_fields=0))
    tuned = train_imcsr(
        tmp_path / "b.pt",
        config=_config(held_out_fields=0, init_from=first.model_paths[0], learning_rate=1e-9),
    )
    _, start = read_model_file(first.model_paths[0])
    _, end = read_model_file(tuned.model_paths[0])
    assert all(torch.allclose(start[k], end[k], atol=1e-6) for k in start)
    with pytest.raises(ValueError, match="does not match"):
        train_imcsr(
            tmp_path / "c.pt",
            config=_config(held_out_fields=0, init_from=first.model_paths[0], width=8),
        )


def test_starting_from_a_model_of_other_structures_keeps_features_and_shared_channels(
    tmp_path: Path,
) -> None:
    from inference.model_file import read_model_file

    old_trio = MixtureConfig(field_px=16, structures=("ccps", "microtubules", "f-actin"))
    first = train_imcsr(tmp_path / "a.pt", config=_config(held_out_fields=0, mixtures=old_trio))
    moved = train_imcsr(
        tmp_path / "b.pt",
        config=_config(held_out_fields=0, init_from=first.model_paths[0], learning_rate=1e-9),
    )
    assert ImcSeparator(moved.model_paths[0]).channel_names == ("microtubules", "er", "lysosomes")
    _, start = read_model_file(first.model_paths[0])
    _, end = read_model_file(moved.model_paths[0])
    for key in start:
        if not key.startswith("output."):
            torch.testing.assert_close(end[key], start[key], atol=1e-6, rtol=0)
    # microtubules (old output 1) keep their filter as new output 0; ER and lysosomes start
    # fresh: small weights and the sigmoid bias of an untrained model
    torch.testing.assert_close(end["output.weight"][0], start["output.weight"][1], atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(end["output.bias"][0], start["output.bias"][1], atol=1e-6, rtol=0)
    torch.testing.assert_close(end["output.bias"][1:], torch.full((2,), OUTPUT_BIAS_INIT),
                               atol=1e-6, rtol=0)
    assert not torch.allclose(start["output.bias"][[0, 2]], torch.full((2,), OUTPUT_BIAS_INIT),
                              atol=1e-6)  # the old model's own outputs had moved off the init


def test_training_brightness_widens_only_the_training_fields() -> None:
    config = _config(training_brightness_range=(0.1, 1.0))
    assert config.training_mixtures.brightness_range == (0.1, 1.0)
    assert config.mixtures.brightness_range == (0.4, 1.0)  # validation and held-out fields
    plain_config = _config()
    assert plain_config.training_mixtures == plain_config.mixtures
    # the same seed, the wider range: the components' relative weights differ
    wide = render_field(config.training_mixtures, 5).targets[0]
    plain = render_field(config.mixtures, 5).targets[0]
    assert not np.allclose(wide.max(axis=(1, 2)) / wide.max(), plain.max(axis=(1, 2)) /
                           plain.max(), atol=1e-3)
    with pytest.raises(ValueError, match="brightness_range"):
        _config(training_brightness_range=(0.0, 1.0))


def test_deepening_a_model_keeps_its_output(tmp_path: Path) -> None:
    from inference.model_file import load_model

    first = train_imcsr(tmp_path / "a.pt", config=_config(held_out_fields=0))
    deeper = train_imcsr(
        tmp_path / "b.pt",
        config=_config(
            held_out_fields=0, init_from=first.model_paths[0], groups=3, learning_rate=1e-9
        ),
    )
    shallow, deep = (load_model(p).module for p in (first.model_paths[0], deeper.model_paths[0]))
    assert isinstance(deep, Imcsr) and isinstance(shallow, Imcsr)
    assert len(deep.groups) == 3 and len(shallow.groups) == 1
    x = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(deep(x), shallow(x), atol=1e-5, rtol=0)


def test_validation_keeps_the_best_checkpoint_and_time_limit_stops(tmp_path: Path) -> None:
    config = _config(
        steps=4, held_out_fields=0, validation_fields=1, validate_every=1, learning_rate=0.05,
        field_refresh_every=1,
    )
    result = train_imcsr(tmp_path / "v.pt", config=config)
    steps = [step for step, _ in result.validation_history]
    scores = [score for _, score in result.validation_history]
    assert steps == [0, 1, 2, 3, 4] and result.steps_done == 4
    assert result.best_step == steps[int(np.argmax(scores))]
    module = ImcSeparator(result.model_paths[0]).model.module
    field = render_field(config.mixtures, 50_000)  # the first validation seed
    assert validation_pearson(module, [field], [0, 1, 2], 0.02, 1) == pytest.approx(max(scores))
    quick = train_imcsr(
        tmp_path / "q.pt", config=_config(steps=50, held_out_fields=0, max_seconds=1e-6)
    )
    assert quick.steps_done == 1 and quick.loss_history == [(1, quick.loss_history[0][1])]
