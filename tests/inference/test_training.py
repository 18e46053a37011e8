"""Training: exact resume, overfitting a tiny example, augmentation consistency, the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from acquisition.cli import build_app
from inference.model_file import load_model
from inference.training import (
    EmulatorSource,
    Example,
    PatchSampler,
    Trainer,
    TrainingConfig,
    TrainingError,
    open_source,
)
from inference.training.data import DataSourceError, dihedral, model_input
from tests.inference.conftest import straight_and_resumed

TINY = {"width": 8, "groups": 1, "blocks": 1, "reduction": 2, "spectrum_size": 16}


def tiny_config(**overrides: object) -> TrainingConfig:
    values: dict[str, object] = {
        "arch": "dfcan",
        "mode": "sim",
        "data": "emulator:microtubules",
        "steps": 4,
        "batch_size": 2,
        "patch_px": 32,
        "emulator_size_px": 40,
        "validation_every": 2,
        "validation_count": 2,
        "model_options": TINY,
        "device": "cpu",
    }
    values.update(overrides)
    return TrainingConfig.model_validate(values)


class FixedSource:
    """One synthetic example (a few bright lines) returned for every draw."""

    description = "fixed synthetic example"

    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        gt = np.zeros((64, 64), np.float32)
        gt[10, :] = 1.0
        gt[:, 40] = 1.0
        gt[30:34, 20:24] = 1.0
        blurred = gt.reshape(32, 2, 32, 2).mean(axis=(1, 3))
        raw = 100 + 200 * blurred[None] * (1 + 0.5 * np.cos(np.arange(9))[:, None, None])
        self.example_ = Example(
            (raw + rng.normal(0, 1, raw.shape)).astype(np.uint16), gt, "fixed"
        )

    def example(self, index: int, rng: np.random.Generator) -> Example:
        return self.example_

    def validation(self, count: int) -> list[Example]:
        return [self.example_]


def test_resume_reproduces_the_uninterrupted_loss_trajectory(tmp_path: Path) -> None:
    config = tiny_config(steps=4, validation_every=2)
    straight, result = straight_and_resumed(config, tmp_path, stop_step=2)
    losses_a = [row["loss"] for row in straight.rows]
    losses_b = [row["loss"] for row in result.rows]
    assert len(losses_a) == 4
    assert losses_a == losses_b  # bit-exact, not approximately
    assert [r.get("val_nrmse") for r in straight.rows] == [r.get("val_nrmse") for r in result.rows]
    a, b = load_model(tmp_path / "a.pt"), load_model(tmp_path / "b.pt")
    assert a.sha256 == b.sha256


def test_checkpoint_at_every_validation_with_the_log_so_far(tmp_path: Path) -> None:
    config = tiny_config(steps=6, validation_every=2)
    trainer = Trainer(config, tmp_path / "m.pt")
    seen: list[tuple[int, int | None, bool]] = []

    def on_row(row: dict[str, float]) -> None:
        # called before the step's checkpoint: what a kill at this point would leave behind
        ckpt = tmp_path / "m.ckpt"
        step = Trainer.resume(ckpt, tmp_path / "m.pt").step if ckpt.is_file() else None
        seen.append((int(row["step"]) + 1, step, (tmp_path / "m.log.csv").is_file()))

    trainer.run(checkpoint=tmp_path / "m.ckpt", plot=False, on_row=on_row)
    assert seen == [(1, None, False), (2, None, False), (3, 2, True), (4, 2, True),
                    (5, 4, True), (6, 4, True)]
    assert Trainer.resume(tmp_path / "m.ckpt", tmp_path / "m.pt").step == 6


def test_a_stop_request_checkpoints_between_steps_and_resumes_exactly(tmp_path: Path) -> None:
    config = tiny_config(steps=5, validation_every=2)
    straight = Trainer(config, tmp_path / "a.pt").run(plot=False)
    first = Trainer(config, tmp_path / "b.pt")
    first.run(checkpoint=tmp_path / "b.ckpt", plot=False, should_stop=lambda: first.step >= 3)
    assert first.step == 3
    resumed = Trainer.resume(tmp_path / "b.ckpt", tmp_path / "b.pt")
    assert resumed.step == 3
    result = resumed.run(plot=False)
    assert [r["loss"] for r in result.rows] == [r["loss"] for r in straight.rows]


def test_dfgan_resume_is_exact_too(tmp_path: Path) -> None:
    config = tiny_config(
        arch="dfgan",
        steps=2,
        validation_every=1,
        generator_steps=2,
        discriminator_options={"stem_width": 4, "block_widths": [4, 8], "dense_width": 8},
    )
    straight, result = straight_and_resumed(config, tmp_path, stop_step=1)
    keys = ("d_loss", "g_loss", "loss")
    expected = [[r[k] for k in keys] for r in straight.rows]
    assert expected == [[r[k] for k in keys] for r in result.rows]
    assert all(np.isfinite(r["d_loss"]) and r["d_loss"] > 0 for r in straight.rows)


def test_adversarial_weight_scales_the_generator_bce_term(tmp_path: Path) -> None:
    losses = []
    for weight in (0.1, 0.4):
        config = tiny_config(arch="dfgan", steps=1, adversarial_weight=weight,
                             discriminator_options={"stem_width": 4, "block_widths": [4, 8],
                                                    "dense_width": 8})
        trainer = Trainer(config, tmp_path / f"g{weight}.pt")
        total, content = trainer._generator_step(*trainer._tensors(0, 1))
        losses.append((total, content))
    (total_a, content_a), (total_b, content_b) = losses
    assert content_a == pytest.approx(content_b, rel=1e-6)  # same seed, same first update
    assert total_a - content_a > 0.01  # BCE of an untrained discriminator ~ ln 2
    assert (total_b - content_b) == pytest.approx(4 * (total_a - content_a), rel=1e-4)


def test_loss_decreases_when_overfitting_one_example(tmp_path: Path) -> None:
    config = tiny_config(
        steps=40, validation_every=40, learning_rate=2e-3, batch_size=1, augment=False
    )
    trainer = Trainer(config, tmp_path / "m.pt", source=FixedSource())
    result = trainer.run(plot=False)
    losses = [row["loss"] for row in result.rows]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_content_loss_options_change_the_pixel_term_and_the_ssim_weight() -> None:
    from inference.evaluation import ssim_torch
    from inference.training.losses import min_max_torch, pixel_ssim_loss

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 32, 32, generator=generator)
    prediction = target + 0.2 * torch.randn(2, 1, 32, 32, generator=generator)
    p, t = min_max_torch(prediction), min_max_torch(target)
    structure = 1.0 - float(ssim_torch(p, t).mean())
    mse = float(((p - t) ** 2).mean())
    l1 = float((p - t).abs().mean())
    assert float(pixel_ssim_loss(prediction, target)) == pytest.approx(mse + 0.1 * structure)
    assert float(pixel_ssim_loss(prediction, target, "l1", 0.5)) == pytest.approx(
        l1 + 0.5 * structure
    )
    config = tiny_config(pixel_loss="l1", ssim_weight=0.3)
    assert (config.pixel_loss, config.ssim_weight) == ("l1", 0.3)
    with pytest.raises(ValueError, match="pixel_loss"):
        tiny_config(pixel_loss="l2")


def test_plateau_halves_learning_rate_down_to_the_floor(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(patience=2, lr_floor_fraction=0.3), tmp_path / "m.pt")
    assert trainer._after_validation(0.5)
    for _ in range(2):
        assert not trainer._after_validation(0.6)
    assert trainer.lr_scale == 0.5
    for _ in range(6):
        trainer._after_validation(0.7)
    assert trainer.lr_scale == pytest.approx(0.3)
    assert trainer.g_optimizer.param_groups[0]["lr"] == pytest.approx(0.3e-4)
    assert trainer.best_val == 0.5


def test_augmentation_moves_raw_and_ground_truth_together() -> None:
    # raw pixel i and SR pixel 2 i sample the same point (the emulator's grid convention)
    raw = np.zeros((9, 16, 16), np.uint16)
    raw[:, 3, 5] = 1000
    gt = np.zeros((32, 32), np.float32)
    gt[6, 10] = 1.0
    sampler = PatchSampler(FixedSource(), "sim", patch_px=12, batch_size=1, seed=0)
    seen = set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        x, y = sampler.prepare(Example(raw, gt), rng)
        assert x.shape == (9, 12, 12) and y.shape == (1, 24, 24)
        if x.max() == 0:  # the bright pixel was cropped away: so was its GT
            assert y.max() == y.min()
            continue
        iy, ix = np.argwhere(x[0] == x[0].max())[0]
        assert np.argwhere(y[0] == 1.0).tolist() == [[2 * iy, 2 * ix]]
        seen.add((iy, ix))
    assert len(seen) > 8  # many crops and orientations were exercised
    assert np.array_equal(dihedral(dihedral(gt, 5), 5), gt)


def test_every_augmentation_keeps_emulator_ground_truth_registered() -> None:
    """A flip must not shift the SR target against the raw frames (it did by one SR pixel)."""
    from inference.training.data import target_window
    from sim_emulator.training_pairs import make_training_pair

    pair = make_training_pair("microtubules", "sim", photon_count_e=5000.0, size_px=48, seed=3)
    n = 36
    corner = (5, 7)
    wf = pair.wf_gt[corner[0] : corner[0] + n, corner[1] : corner[1] + n].astype(np.float64)

    def upsampled(image: np.ndarray) -> np.ndarray:  # zero-padded spectrum: grid from 0
        spectrum = np.fft.fftshift(np.fft.fft2(image))
        padded = np.zeros((2 * n, 2 * n), complex)
        padded[n // 2 : n // 2 + n, n // 2 : n // 2 + n] = spectrum
        return np.real(np.fft.ifft2(np.fft.ifftshift(padded)))

    def offset(a: np.ndarray, b: np.ndarray) -> list[int]:
        corr = np.real(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))))
        peak = np.unravel_index(np.argmax(corr), corr.shape)
        return [int((v + n) % (2 * n) - n) for v in peak]

    for transform in range(8):
        target = pair.sr_gt[target_window(transform, n, 2, corner, pair.sr_gt.shape)]
        assert offset(upsampled(dihedral(wf, transform)), target) == [0, 0], transform
        if transform in (1, 2, 4):  # the old flip of the SR crop alone was one pixel off
            y0, x0 = 2 * corner[0], 2 * corner[1]
            sr = pair.sr_gt[y0 : y0 + 2 * n, x0 : x0 + 2 * n]
            assert offset(upsampled(dihedral(wf, transform)), dihedral(sr, transform)) != [0, 0]


def test_sisr_input_is_the_normalised_frame_mean() -> None:
    raw = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
    x = model_input(raw, "sisr", load_normalisation())
    mean = raw.astype(np.float64).mean(axis=0)
    assert x.shape == (1, 4, 4)
    np.testing.assert_allclose(x[0], (mean - mean.min()) / (mean.max() - mean.min()), atol=1e-6)


def load_normalisation():  # type: ignore[no-untyped-def]
    from inference.model_file import Normalisation

    return Normalisation()


def test_batches_depend_only_on_seed_and_step() -> None:
    source = EmulatorSource(["ccps"], "sim", 40)
    a = PatchSampler(source, "sim", 32, 2, seed=3).batch(7)
    b = PatchSampler(source, "sim", 32, 2, seed=3).batch(7)
    c = PatchSampler(source, "sim", 32, 2, seed=3).batch(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (2, 9, 32, 32) and a[1].shape == (2, 1, 64, 64)
    assert a[0].min() >= 0.0 and a[0].max() <= 1.0 and a[1].max() == pytest.approx(1.0)


def test_bad_sources_and_init_give_specific_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="bananas"):
        open_source("emulator:bananas", "sim")
    with pytest.raises(DataSourceError, match="expected emulator"):
        open_source("somewhere/else", "sim")
    with pytest.raises(DataSourceError, match="does not exist"):
        open_source(f"biosr:{tmp_path / 'missing'}", "sim")
    Trainer(tiny_config(steps=1, validation_every=1), tmp_path / "sim.pt").run(plot=False)
    with pytest.raises(TrainingError, match="sim model, training mode sisr"):
        Trainer(tiny_config(mode="sisr"), tmp_path / "x.pt", init=tmp_path / "sim.pt")
    with pytest.raises(ValueError, match="emulator_size_px"):
        tiny_config(patch_px=64, emulator_size_px=40)


def test_init_starts_from_the_given_weights(tmp_path: Path) -> None:
    Trainer(tiny_config(steps=1, validation_every=1), tmp_path / "base.pt").run(plot=False)
    base = load_model(tmp_path / "base.pt")
    trainer = Trainer(tiny_config(), tmp_path / "ft.pt", init=tmp_path / "base.pt")
    for key, value in base.module.state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[key], value)


def test_train_cli_writes_a_loadable_model_and_log(tmp_path: Path) -> None:
    output = tmp_path / "cli.pt"
    result = CliRunner().invoke(
        build_app(),
        [
            "train",
            "--arch", "dfcan", "--mode", "sisr", "--data", "emulator:er",
            "--output", str(output), "--tiny", "--steps", "2", "--validation-every", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_model(output)
    assert model.info.mode == "sisr" and model.info.architecture == "dfcan"
    assert model.info.options["input_channels"] == 1
    with torch.no_grad():
        out = model.module(torch.rand(1, 1, 16, 16))
    assert out.shape == (1, 1, 32, 32)
    assert (tmp_path / "cli.log.csv").read_text().startswith("step,loss,lr")
    assert (tmp_path / "cli.curves.png").stat().st_size > 1000
    assert (tmp_path / "cli.ckpt").is_file()
    card = (tmp_path / "cli.md").read_text()
    assert model.sha256 in card and "## Reproduce" in card


def test_train_cli_stops_on_ctrl_c_with_a_resumable_checkpoint(tmp_path: Path) -> None:
    output = tmp_path / "m.pt"
    command = [sys.executable, "-m", "acquisition.cli", "train", "--arch", "dfcan", "--mode",
               "sisr", "--data", "emulator:er", "--tiny", "--steps", "100000",
               "--validation-every", "2", "--output", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "m.ckpt").is_file() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 130, stderr
    assert "SIGINT: stopped at step" in stderr and f"--resume {tmp_path / 'm.ckpt'}" in stderr
    resumed = Trainer.resume(tmp_path / "m.ckpt", output)
    assert 2 <= resumed.step < 100000
    rows = (tmp_path / "m.log.csv").read_text().splitlines()
    assert len(rows) == resumed.step + 1  # header + one row per step done
    assert load_model(output).info.mode == "sisr"


def test_train_cli_reports_bad_arguments(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_app(),
        ["train", "--arch", "dfcan", "--data", "emulator:nope", "--output", str(tmp_path / "m.pt")],
    )
    assert result.exit_code == 2
    assert "nope" in result.output


@pytest.mark.gpu
def test_mixed_precision_training_step_on_cuda(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(device="cuda", steps=2), tmp_path / "m.pt")
    assert trainer.use_amp
    result = trainer.run(plot=False)
    assert all(np.isfinite(row["loss"]) for row in result.rows)


def test_a_trained_dfcan_can_start_a_dfgan(tmp_path: Path) -> None:
    options = {**TINY, "gamma": 0.8}
    Trainer(tiny_config(steps=1, model_options=options), tmp_path / "d.pt").run(plot=False)
    gan = Trainer(tiny_config(arch="dfgan"), tmp_path / "g.pt", init=tmp_path / "d.pt")
    assert gan.options["gamma"] == 0.8 and gan.options["groups"] == 1
    base = load_model(tmp_path / "d.pt").module.state_dict()
    assert all(torch.equal(gan.generator.state_dict()[k], v) for k, v in base.items())


def test_train_cli_takes_a_toml_config_and_command_line_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "train.toml"
    toml.write_text(
        'arch = "dfcan"\nmode = "sisr"\ndata = "emulator:ccps"\nsteps = 50\nbatch_size = 1\n'
        "patch_px = 16\nemulator_size_px = 24\nvalidation_count = 1\n"
        "[model_options]\nwidth = 4\ngroups = 1\nblocks = 1\nreduction = 2\nspectrum_size = 8\n"
    )
    output = tmp_path / "m.pt"
    args = ["train", "--config", str(toml), "--steps", "1", "--output", str(output)]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    info = load_model(output).info
    assert info.mode == "sisr" and info.options["width"] == 4
    toml.write_text('arch = "dfcan"\nbogus_field = 3\n')
    result = CliRunner().invoke(build_app(), [*args, "--overwrite"])
    assert result.exit_code == 2 and "bogus_field" in result.output


def test_run_file_from_livesim_emulate_is_a_training_source(tmp_path: Path) -> None:
    run = tmp_path / "run.h5"
    result = CliRunner().invoke(
        build_app(),
        ["emulate", "--output", str(run), "--structure", "er", "--size-px", "32", "-t", "3"],
    )
    assert result.exit_code == 0, result.output
    source = open_source(str(run), "sim")
    assert source.description.endswith("(3 time points, channel 0)")
    held_out = source.validation(5)
    assert len(held_out) == 1 and held_out[0].label == "t=2"
    example = source.example(0, np.random.default_rng(0))
    assert example.raw.shape == (9, 32, 32) and example.sr_gt.shape == (64, 64)
    assert example.label in ("t=0", "t=1")
    x, y = PatchSampler(source, "sim", 16, 2, seed=0).batch(0)
    assert x.shape == (2, 9, 16, 16) and y.shape == (2, 1, 32, 32)
    with pytest.raises(DataSourceError, match="needs 25"):
        open_source(str(run), "nlsim")


def test_nlsim_and_cmgan_train_to_loadable_models(tmp_path: Path) -> None:
    nl = tiny_config(mode="nlsim", steps=1, patch_px=16, emulator_size_px=20, validation_count=1)
    Trainer(nl, tmp_path / "nl.pt").run(plot=False)
    model = load_model(tmp_path / "nl.pt")
    assert model.info.mode == "nlsim" and model.info.options["scale"] == 3
    with torch.no_grad():
        assert model.module(torch.rand(1, 25, 16, 16)).shape == (1, 1, 48, 48)
    cm = tiny_config(
        arch="cmgan",
        steps=1,
        validation_count=1,
        model_options={"base_width": 4, "depth": 2},
        discriminator_options={"stem_width": 4, "block_widths": [4], "dense_width": 4},
    )
    Trainer(cm, tmp_path / "cm.pt").run(plot=False)
    assert load_model(tmp_path / "cm.pt").info.architecture == "cross-modality-unet"


def test_models_command_lists_the_bundled_models_with_their_cards() -> None:
    from inference.model_file import BUNDLED_DIR, bundled_models, read_model_file

    result = CliRunner().invoke(build_app(), ["models"])
    assert result.exit_code == 0, result.output
    assert {"dfcan-sim", "dfcan-sisr", "dfgan-sim"} <= set(bundled_models())
    for name in ("dfcan-sim", "dfcan-sisr", "dfgan-sim"):
        info, state = read_model_file(BUNDLED_DIR / f"{name}.pt")
        line = next(row for row in result.output.splitlines() if row.startswith(name + " "))
        count = sum(int(t.numel()) for t in state.values())
        assert info.weights_sha256[:16] in line and f"{count:,}" in line
        assert line.endswith(f"{name}.md") and info.mode in line.split()
        card = (BUNDLED_DIR / f"{name}.md").read_text()
        assert info.weights_sha256 in card and "livesim train" in card
    lines = result.output.splitlines()
    inputs = [lines[i + 2] for i, row in enumerate(lines) if row.startswith("dfcan-sim ")]
    assert inputs == [" " * 12 + "input: percentiles 0.1-99.99 of each set mapped to 0-1, clipped"]


def test_randomised_emulator_source_varies_the_instrument() -> None:
    from inference.training.data import open_source

    source = open_source("emulator-randomised:ccps", "sim", 40)
    assert "emulator-randomised" in source.description
    rng = np.random.default_rng(4)
    examples = [source.example(i, rng) for i in range(3)]
    assert all(e.raw.shape == (9, 40, 40) and e.sr_gt.shape == (80, 80) for e in examples)
    labels = {e.label.split(" e- ")[0] for e in examples}
    assert len(labels) == 3  # three different drawn photon counts
    # validation keeps the default instrument: the same fields as the plain source
    plain = open_source("emulator:ccps", "sim", 40).validation(1)[0]
    assert np.array_equal(source.validation(1)[0].raw, plain.raw)


def test_training_after_inference_in_the_same_process() -> None:
    """Cached index tensors made under inference_mode (a prediction or a validation) must not
    break a later training step: autograd saves them for backward."""
    import torch

    from inference.models import build_model

    model = build_model("dfcan", {"input_channels": 9, "width": 8, "groups": 1, "blocks": 1,
                                  "reduction": 2, "spectrum_size": 16})
    x = torch.rand(1, 9, 32, 32)  # 32 = 2 x the spectrum size: the folded spectrum path
    with torch.inference_mode():
        model(x)
    loss = model(x).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_pair_folder_tiff_pairs_and_mixtures(tmp_path: Path) -> None:
    """`pairs:` holds out the last files, `tiff-pairs:` holds out the right quarter of every
    stack's columns (never a trained-on reference pixel), `A@w+B@w` draws by weight."""
    import tifffile

    from inference.training.data import MixedSource, open_source

    rng = np.random.default_rng(0)
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(40):
        np.savez(folder / f"p{i:03d}.npz", raw=np.full((9, 16, 16), i, np.float32),
                 gt=np.full((32, 32), i, np.float32), label=f"pair {i}")
    pairs = open_source(f"pairs:{folder}", "sim")
    trained = {int(pairs.example(k, rng).raw[0, 0, 0]) for k in range(200)}
    assert trained == set(range(38))  # 5 %: the last two held out
    assert [int(e.raw[0, 0, 0]) for e in pairs.validation(5)] == [38, 39]

    stack = rng.random((2, 9, 16, 64)).astype(np.float32)
    reference = rng.random((32, 128)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cell.tif", stack.reshape(18, 16, 64))
    tifffile.imwrite(tmp_path / "cell_gt.tif", reference)
    tiffs = open_source(f"tiff-pairs:{tmp_path / 'cell.tif'}", "sim")
    example = tiffs.example(0, rng)
    assert example.raw.shape == (9, 16, 48) and example.sr_gt.shape == (32, 96)
    np.testing.assert_array_equal(example.sr_gt, reference[:, :96])
    held = tiffs.validation(4)
    assert len(held) == 2 and held[0].raw.shape == (9, 16, 16)
    np.testing.assert_array_equal(held[1].sr_gt, reference[:, 96:])

    mixed = open_source(f"pairs:{folder}@3+tiff-pairs:{tmp_path / 'cell.tif'}@1", "sim")
    assert isinstance(mixed, MixedSource)
    draws = [mixed.example(k, rng).raw.shape[-1] for k in range(400)]
    assert 0.68 < draws.count(16) / 400 < 0.82  # pairs (16 px wide) at weight 3 of 4
    with pytest.raises(DataSourceError, match="weight"):
        open_source(f"pairs:{folder}@lots", "sim")
    with pytest.raises(DataSourceError, match="_gt"):
        open_source(f"tiff-pairs:{tmp_path / 'missing.tif'}", "sim")


def test_sr_only_settings_are_refused_for_imc_sr_instead_of_ignored() -> None:
    base = {"arch": "imcsr", "mode": "imc", "patch_px": 32, "emulator_size_px": 32}
    TrainingConfig.model_validate(base)  # the defaults are fine
    with pytest.raises(ValueError, match=r"normalisation=.*high_pct=100.*not used by IMC-SR"):
        TrainingConfig.model_validate({**base, "normalisation": {"high_pct": 100.0,
                                                                 "low_pct": 0.0}})
    with pytest.raises(ValueError, match=r"ssim_weight=0\.5.*\[imc\]"):
        TrainingConfig.model_validate({**base, "ssim_weight": 0.5})
    sr = TrainingConfig.model_validate({"arch": "dfcan", "mode": "sim", "ssim_weight": 0.5,
                                        "normalisation": {"high_pct": 100.0, "low_pct": 0.0}})
    assert sr.ssim_weight == 0.5 and sr.normalisation.high_pct == 100.0
