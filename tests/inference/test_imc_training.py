"""IMC-SR is a configuration of the one Trainer: a tiny model trains, checkpoints, resumes
exactly and logs; temporal, single-output and fine-tuned (renamed, deepened) models; live
reconstruction fields as data; bad configuration is refused with the field named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from acquisition.cli import build_app
from inference.imc.data import LiveFieldSampler
from inference.imc.live import ImcSeparator, widefield_on_sr_grid
from inference.imc.live_data import LiveField, fit_targets, load_field, normalised, save_field
from inference.imc.mixtures import MixtureConfig, render_field
from inference.model_file import load_model, read_model_file
from inference.models.imcsr import OUTPUT_BIAS_INIT, Imcsr
from inference.training import Trainer, TrainingConfig, TrainingError
from inference.training.data import DataSourceError
from tests.inference.conftest import straight_and_resumed

TINY = {"width": 4, "groups": 1, "blocks": 1, "reduction": 2}


def imc_config(**overrides: object) -> TrainingConfig:
    values: dict[str, object] = {
        "arch": "imcsr", "mode": "imc", "data": "imc-mix:microtubules,er,lysosomes",
        "steps": 4, "batch_size": 1, "patch_px": 24, "emulator_size_px": 16,
        "validation_every": 2, "validation_count": 1, "model_options": TINY, "device": "cpu",
        "learning_rate": 1e-3,
    }
    values.update(overrides)
    return TrainingConfig.model_validate(values)


def test_tiny_imcsr_checkpoints_resumes_exactly_and_logs(tmp_path: Path) -> None:
    config = imc_config()
    straight, result = straight_and_resumed(config, tmp_path, stop_step=2)
    assert [r["loss"] for r in straight.rows] == [r["loss"] for r in result.rows]
    assert [r.get("val_pearson") for r in straight.rows] == [
        r.get("val_pearson") for r in result.rows
    ]
    assert "val_nrmse" not in result.rows[1] and -1 <= result.rows[1]["val_pearson"] <= 1
    rows = (tmp_path / "b.log.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and "val_pearson" in rows[0]
    assert load_model(tmp_path / "a.pt").sha256 == load_model(tmp_path / "b.pt").sha256
    separator = ImcSeparator(tmp_path / "b.pt")
    assert separator.channel_names == ("microtubules", "er", "lysosomes")
    assert separator.separate(np.ones((32, 32), np.float32)).shape == (3, 32, 32)


def test_best_validation_pearson_is_kept(tmp_path: Path) -> None:
    config = imc_config(steps=6, validation_every=1, learning_rate=0.05)
    trainer = Trainer(config, tmp_path / "m.pt")
    result = trainer.run(plot=False)
    scores = [row["val_pearson"] for row in result.rows]
    assert result.best_val == max(scores) and result.best_step == 1 + int(np.argmax(scores))
    saved = Trainer(imc_config(), tmp_path / "x.pt")
    saved.generator = load_model(tmp_path / "m.pt").module
    assert saved.validate() == pytest.approx(max(scores), abs=1e-6)


def test_train_cli_imcsr_has_resume_and_time_limit(tmp_path: Path) -> None:
    output = tmp_path / "i.pt"
    base = ["train", "--arch", "imcsr", "--tiny", "--output", str(output), "--size-px", "16",
            "--patch", "24", "--validation-every", "1"]
    result = CliRunner().invoke(build_app(), [*base, "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "best validation pearson" in result.output
    result = CliRunner().invoke(
        build_app(), [*base, "--steps", "3", "--resume", str(output.with_suffix(".ckpt"))]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "i.log.csv").read_text().splitlines()) == 1 + 3
    result = CliRunner().invoke(build_app(), [*base, "--steps", "500", "--time-limit-s", "0.01",
                                              "--output", str(tmp_path / "t.pt")])
    assert result.exit_code == 0 and "--time-limit-s reached" in result.output
    bad = CliRunner().invoke(build_app(), [*base, "--data", "biosr:/x",
                                           "--output", str(tmp_path / "b.pt")])
    assert bad.exit_code == 2 and "imc-mix" in bad.output


def test_temporal_and_single_output_models(tmp_path: Path) -> None:
    Trainer(imc_config(steps=1, imc={"temporal": True}), tmp_path / "t.pt").run(plot=False)
    separator = ImcSeparator(tmp_path / "t.pt")
    assert separator.temporal and separator.push(np.ones((32, 32), np.float32)) is None
    Trainer(imc_config(steps=1, imc={"outputs": ["er"]}), tmp_path / "e.pt").run(plot=False)
    assert ImcSeparator(tmp_path / "e.pt").channel_names == ("er",)
    with pytest.raises(DataSourceError, match="ccps"):
        Trainer(imc_config(imc={"outputs": ["ccps"]}), tmp_path / "c.pt")


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="patch_px=64"):
        imc_config(patch_px=64)
    with pytest.raises(ValueError, match="mode=sim"):
        imc_config(mode="sim")
    with pytest.raises(ValueError, match="brightness_range"):
        Trainer(imc_config(imc={"training_brightness_range": (0.0, 1.0)}), Path("/tmp/x.pt"))


def test_fine_tuning_renaming_and_deepening_start_from_the_given_weights(tmp_path: Path) -> None:
    old_trio = "imc-mix:ccps,microtubules,f-actin"
    Trainer(imc_config(steps=1, data=old_trio), tmp_path / "a.pt").run(plot=False)
    _, start = read_model_file(tmp_path / "a.pt")
    moved = Trainer(imc_config(steps=1, model_options={}), tmp_path / "b.pt",
                    init=tmp_path / "a.pt")
    assert moved.options["width"] == 4  # the init's sizes when none are configured
    end = moved.generator.state_dict()
    for key in start:
        if not key.startswith("output."):
            torch.testing.assert_close(end[key], start[key], atol=0, rtol=0)
    # microtubules (old output 1) keep their filter as new output 0; ER and lysosomes are fresh
    torch.testing.assert_close(end["output.weight"][0], start["output.weight"][1])
    torch.testing.assert_close(end["output.bias"][1:], torch.full((2,), OUTPUT_BIAS_INIT))
    deeper = Trainer(imc_config(steps=1, data=old_trio, model_options={**TINY, "groups": 3}),
                     tmp_path / "c.pt", init=tmp_path / "a.pt")
    shallow = load_model(tmp_path / "a.pt").module
    assert isinstance(deeper.generator, Imcsr) and len(deeper.generator.groups) == 3
    x = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(deeper.generator(x), shallow(x), atol=1e-5, rtol=0)
    with pytest.raises(TrainingError, match="does not match"):
        Trainer(imc_config(model_options={**TINY, "width": 8}), tmp_path / "d.pt",
                init=tmp_path / "a.pt")


def test_fine_tuning_a_downscaled_model_keeps_its_layout_and_output_filters(
    tmp_path: Path,
) -> None:
    """--init without sizes takes the init's downscale too; a renamed structure keeps all of
    its downscale^2 pixel-shuffle output rows, not one row of another structure's."""
    old_trio = "imc-mix:ccps,microtubules,f-actin"
    Trainer(imc_config(steps=1, data=old_trio, model_options={**TINY, "downscale": 2}),
            tmp_path / "a.pt").run(plot=False)
    _, start = read_model_file(tmp_path / "a.pt")
    moved = Trainer(imc_config(steps=1, model_options={}), tmp_path / "b.pt",
                    init=tmp_path / "a.pt")
    assert moved.options["downscale"] == 2
    end = moved.generator.state_dict()
    assert end["output.weight"].shape[0] == 3 * 4
    # microtubules: old structure 1 (rows 4-7) -> new structure 0 (rows 0-3)
    torch.testing.assert_close(end["output.weight"][0:4], start["output.weight"][4:8])
    torch.testing.assert_close(end["output.bias"][4:], torch.full((8,), OUTPUT_BIAS_INIT))


def test_an_intensity_model_starts_a_share_model_with_its_features(tmp_path: Path) -> None:
    """--init an intensity model into output="shares": every feature weight carries over, the
    output conv (one more map: the background share) starts as a fresh share model's does."""
    Trainer(imc_config(steps=1, model_options={**TINY, "downscale": 2}),
            tmp_path / "a.pt").run(plot=False)
    _, start = read_model_file(tmp_path / "a.pt")
    shares = Trainer(imc_config(steps=1, model_options={"output": "shares"}), tmp_path / "b.pt",
                     init=tmp_path / "a.pt")
    assert shares.options["output"] == "shares" and shares.options["downscale"] == 2
    end = shares.generator.state_dict()
    for key in start:
        if not key.startswith("output."):
            torch.testing.assert_close(end[key], start[key], atol=0, rtol=0)
    assert end["output.weight"].shape[0] == 4 * 4
    torch.testing.assert_close(end["output.bias"], torch.zeros(16))
    shares.run(plot=False)
    assert load_model(tmp_path / "b.pt").info.options["output"] == "shares"


def test_training_brightness_widens_only_the_training_fields(tmp_path: Path) -> None:
    trainer = Trainer(imc_config(imc={"training_brightness_range": (0.1, 1.0)}), tmp_path / "m.pt")
    sampler = trainer.sampler
    assert sampler.training.brightness_range == (0.1, 1.0)  # type: ignore[attr-defined]
    assert sampler.mixtures.brightness_range == (0.4, 1.0)  # type: ignore[attr-defined]
    wide = render_field(sampler.training, 5).targets[0]  # type: ignore[attr-defined]
    plain = render_field(MixtureConfig(field_px=16), 5).targets[0]
    assert not np.allclose(wide.max(axis=(1, 2)) / wide.max(),
                           plain.max(axis=(1, 2)) / plain.max(), atol=1e-3)


def _live_field(seed: int, size: int = 32) -> LiveField:
    rng = np.random.default_rng(seed)
    components = rng.random((3, size, size)).astype(np.float32) * [[[1]], [[2]], [[6]]]
    components[:, 0, 0] = 0.0  # a dark pixel: the normalised input's zero
    total = components.sum(axis=0)
    return LiveField({"dfcan-sim": 0.1 + 0.01 * total, "wiener": total / total.max()},
                     components.astype(np.float32), seed, 100.0)


def test_live_fields_train_with_the_normalisation_the_separator_uses(tmp_path: Path) -> None:
    for part, seed in (("train", 1), ("train", 2), ("validation", 3)):
        (tmp_path / part).mkdir(exist_ok=True)
        save_field(tmp_path / part / f"field-{seed:07d}.npz", _live_field(seed))
    config = imc_config(data=f"imc-live:{tmp_path}", patch_px=16, validation_count=4)
    sampler = LiveFieldSampler(config, tmp_path)
    x, y = sampler.batch(0)
    assert x.shape == (1, 1, 16, 16) and y.shape == (1, 3, 16, 16)
    pairs = sampler.validation(4)
    assert len(pairs) == 2  # one field, two methods
    field = _live_field(3)
    for (x_full, y_full), image in zip(pairs, field.sr.values(), strict=True):
        np.testing.assert_allclose(x_full[0], normalised(image), atol=1e-6)
        assert x_full.min() == 0 and x_full.max() == pytest.approx(1, abs=1e-5)
        # the targets add up to the network's input (the fit is exact for an SR linear in the
        # components with a dark pixel)
        np.testing.assert_allclose(y_full.sum(axis=0), x_full[0], atol=1e-4)
        np.testing.assert_allclose(y_full, fit_targets(field.components, x_full[0]))
    Trainer(config, tmp_path / "m.pt").run(plot=False)
    with pytest.raises(DataSourceError, match="temporal"):
        Trainer(imc_config(data=f"imc-live:{tmp_path}", imc={"temporal": True}), tmp_path / "t.pt")
    with pytest.raises(DataSourceError, match="validation"):
        LiveFieldSampler(config, tmp_path / "train")


def test_widefield_models_train_on_the_fields_widefield_on_the_sr_grid(tmp_path: Path) -> None:
    """widefield_input: the second input channel is the field's wide-field image as the
    separator feeds it (same crop and orientation as the SR); a field cached without one is
    refused, naming the file."""
    for part, seed in (("train", 1), ("validation", 3)):
        (tmp_path / part).mkdir(exist_ok=True)
        field = _live_field(seed)
        field.widefield = np.random.default_rng(seed).random((16, 16)).astype(np.float32)
        save_field(tmp_path / part / f"field-{seed:07d}.npz", field)
    options = {**TINY, "widefield_input": True, "output": "shares"}
    config = imc_config(data=f"imc-live:{tmp_path}", patch_px=32, validation_count=4,
                        model_options=options, augment=False)
    sampler = LiveFieldSampler(config, tmp_path)
    x, _ = sampler.batch(0)
    assert x.shape == (1, 2, 32, 32)
    widefield = load_field(tmp_path / "train" / "field-0000001.npz").widefield
    assert widefield is not None
    np.testing.assert_allclose(x[0, 1], widefield_on_sr_grid(widefield, (32, 32)), atol=1e-6)
    Trainer(config, tmp_path / "m.pt").run(plot=False)
    assert load_model(tmp_path / "m.pt").info.options["widefield_input"] is True
    save_field(tmp_path / "train" / "field-0000001.npz", _live_field(1))
    with pytest.raises(DataSourceError, match=r"field-0000001\.npz: no wide-field"):
        LiveFieldSampler(config, tmp_path).batch(0)


def test_assignment_loss_terms_reach_the_trainer_from_the_imc_table(tmp_path: Path) -> None:
    from inference.imc.loss import ImcLossWeights, imc_loss

    x = torch.rand(2, 1, 24, 24)
    y = torch.rand(2, 3, 24, 24) * 0.3
    prediction = torch.rand(2, 3, 24, 24) * 0.3
    plain = Trainer(imc_config(), tmp_path / "a.pt")._content_loss(prediction, x, y)
    assert float(plain) == pytest.approx(float(imc_loss(prediction, y, x)), rel=1e-6)
    config = imc_config(imc={"pearson_weight": 0.3, "coarse_mse_weight": 2.0})
    weighted = Trainer(config, tmp_path / "b.pt")._content_loss(prediction, x, y)
    expected = imc_loss(prediction, y, x,
                        ImcLossWeights(pearson_weight=0.3, coarse_mse_weight=2.0))
    assert float(weighted) == pytest.approx(float(expected), rel=1e-6)
    assert float(weighted) > float(plain) + 0.2  # random channels: 1 - Pearson ~ 1
    with pytest.raises(ValueError, match="pearson_weight"):
        imc_config(imc={"pearson_weight": -1.0})
    # every ImcLossWeights field is an [imc] key (mse_weight too)
    heavy = Trainer(imc_config(imc={"mse_weight": 5.0}), tmp_path / "c.pt")
    expected = imc_loss(prediction, y, x, ImcLossWeights(mse_weight=5.0))
    assert float(heavy._content_loss(prediction, x, y)) == pytest.approx(float(expected),
                                                                         rel=1e-6)
    # a wide-field model: the summation term holds the channels to the SR input (channel 0),
    # not to the wide-field context after it
    context = Trainer(imc_config(model_options={**TINY, "widefield_input": True},
                                 imc={"summation_weight": 1.0}), tmp_path / "d.pt")
    both = torch.cat([x, torch.rand(2, 1, 24, 24)], dim=1)
    expected = imc_loss(prediction, y, x, ImcLossWeights(summation_weight=1.0))
    assert float(context._content_loss(prediction, both, y)) == pytest.approx(float(expected),
                                                                              rel=1e-6)


@pytest.mark.parametrize("command", [["imc-assess", "imcsr"],
                                     ["imc-cross-talk", "imcsr", "imcsr"]])
def test_noiseless_mixture_commands_name_a_model_that_needs_the_widefield(
        command: list[str]) -> None:
    """The bundled model takes the wide-field image, which noiseless mixtures lack: the
    commands on them stop with the model named and the command to use instead."""
    result = CliRunner().invoke(build_app(), [*command, "--fields", "1"])
    assert result.exit_code == 2, result.output
    assert "'imcsr' takes the wide-field image" in result.output
    assert "imc-assess-live" in result.output
