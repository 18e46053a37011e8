"""The live IMC-SR separator: window latency semantics, normalisation, bundled-model channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.imc.live import ImcSeparator, widefield_on_sr_grid
from inference.model_file import BUNDLED_DIR, ModelFileError, save_model
from inference.models.imcsr import Imcsr, ImcsrOptions


def _model_file(tmp_path: Path, frames: int) -> tuple[Path, Imcsr]:
    torch.manual_seed(frames)
    options = ImcsrOptions.model_validate(
        {"input_frames": frames, "width": 4, "groups": 1, "blocks": 1, "reduction": 2}
    )
    module = Imcsr(options)
    path = tmp_path / f"imc{frames}.pt"
    save_model(path, module, architecture="imcsr", mode="imc", options=module.options)
    return path, module.eval()


def _expected(module: Imcsr, frames: list[np.ndarray]) -> np.ndarray:
    stack = np.stack(frames).astype(np.float32)
    low, span = float(stack.min()), float(stack.max() - stack.min())
    with torch.no_grad():
        y = module(torch.from_numpy((stack - low) / (span + 1e-7))[None])[0].numpy()
    return y * span


def test_temporal_window_has_one_frame_latency(tmp_path: Path) -> None:
    path, module = _model_file(tmp_path, 3)
    separator = ImcSeparator(path)
    assert separator.temporal and separator.latency_frames == 1
    rng = np.random.default_rng(0)
    f = [rng.random((12, 10), dtype=np.float32) * (i + 1) for i in range(3)]
    assert separator.push(f[0]) is None
    first = separator.push(f[1])
    assert first is not None and first[0] == 0
    np.testing.assert_allclose(first[1], _expected(module, [f[0], f[0], f[1]]), rtol=1e-5)
    second = separator.push(f[2])
    assert second is not None and second[0] == 1
    np.testing.assert_allclose(second[1], _expected(module, [f[0], f[1], f[2]]), rtol=1e-5)
    last = separator.flush()
    assert last is not None and last[0] == 2
    np.testing.assert_allclose(last[1], _expected(module, [f[1], f[2], f[2]]), rtol=1e-5)
    assert separator.flush() is None
    with pytest.raises(ValueError, match="push"):
        separator.separate(f[0])


def test_single_frame_model_has_no_latency(tmp_path: Path) -> None:
    path, module = _model_file(tmp_path, 1)
    separator = ImcSeparator(path)
    image = np.random.default_rng(1).random((10, 14), dtype=np.float32) * 500 + 100
    pushed = separator.push(image)
    assert pushed is not None and pushed[0] == 0
    out = separator.separate(image)
    assert out.shape == (3, 10, 14) and out.dtype == np.float32
    np.testing.assert_allclose(out, _expected(module, [image]), rtol=1e-5)
    np.testing.assert_allclose(pushed[1], out, rtol=1e-6)
    assert separator.flush() is None
    assert separator.channel_names == ("microtubules", "er", "lysosomes")
    with pytest.raises(ValueError, match=r"\(sY, sX\)"):
        separator.separate(np.zeros((2, 8, 8), np.float32))


def test_rejects_a_non_imc_model(tmp_path: Path) -> None:
    from inference.models import build_model

    module = build_model("dfcan", {"input_channels": 1, "width": 4, "groups": 1, "blocks": 1,
                                   "reduction": 2, "spectrum_size": 8})
    path = tmp_path / "dfcan.pt"
    save_model(path, module, architecture="dfcan", mode="sisr")
    with pytest.raises(ModelFileError, match="not an IMC-SR model"):
        ImcSeparator(path)


@pytest.mark.skipif(not (BUNDLED_DIR / "imcsr.pt").is_file(), reason="bundled imcsr.pt absent")
def test_bundled_model_returns_three_distinct_channels_matching_their_structures() -> None:
    """On live-like input (the realistic emulator's mix through the bundled DFCAN-SIM, as the
    worker feeds it) each channel matches its own structure better than any other."""
    from inference.imc.live_data import render_live_field

    separator = ImcSeparator("imcsr")
    correlations = []
    for seed in range(987_010, 987_016):  # far from the training seeds
        field = render_live_field(seed, 100.0, 64, methods=("dfcan-sim",))
        out = separator.separate(field.sr["dfcan-sim"], field.widefield)
        assert out.shape == (3, 128, 128)
        # the field's wide-field image (e-, camera grid) shows the same structures
        assert field.widefield is not None and field.widefield.shape == (64, 64)
        binned = field.components.sum(axis=0).reshape(64, 2, 64, 2).sum(axis=(1, 3))
        assert np.corrcoef(binned.ravel(), field.widefield.ravel())[0, 1] > 0.8
        flat = out.reshape(3, -1)
        truth = field.components.reshape(3, -1)
        correlations.append(np.corrcoef(np.concatenate([flat, truth]))[:3, 3:])
        assert np.corrcoef(flat).max(where=~np.eye(3, dtype=bool), initial=-1) < 0.9
        sr = field.sr["dfcan-sim"]  # the channels add up to the input above its minimum
        assert np.abs(out.sum(axis=0) - (sr - sr.min())).mean() < 0.05 * np.ptp(sr)
    mean = np.mean(correlations, axis=0)
    assert (np.argmax(mean, axis=1) == np.arange(3)).all(), mean
    # the bundled model here: microtubules 0.845, ER 0.806, lysosomes 0.992; each line
    # channel correlates 0.15-0.16 with the other line structure. The model bundled before
    # (trained without the wide-field context) scored 0.746 / 0.712 with 0.34-0.37 cross-talk
    assert np.diag(mean)[:2].min() > 0.77 and mean[2, 2] > 0.95, mean
    assert max(mean[0, 1], mean[1, 0]) < 0.25, mean


def test_stream_sends_each_result_under_its_own_time_point(tmp_path: Path) -> None:
    from inference.imc.live import ImcStream

    path, module = _model_file(tmp_path, 3)
    stream = ImcStream(ImcSeparator(path))
    rng = np.random.default_rng(2)
    f = [rng.random((8, 8), dtype=np.float32) for _ in range(4)]
    assert stream.process(10, f[0]) == []
    ready = stream.process(11, f[1])
    assert [t for t, _ in ready] == [10]
    # time point 12 was skipped: 11 is flushed with its edge window, then 13 starts afresh
    ready = stream.process(13, f[2])
    assert [t for t, _ in ready] == [11]
    np.testing.assert_allclose(ready[0][1], _expected(module, [f[0], f[1], f[1]]), rtol=1e-5)
    ready = stream.process(14, f[3])
    assert [t for t, _ in ready] == [13]
    np.testing.assert_allclose(ready[0][1], _expected(module, [f[2], f[2], f[3]]), rtol=1e-5)
    assert [t for t, _ in stream.finish()] == [14]
    assert stream.finish() == []


def test_unexplained_fraction_is_the_residual_share_of_the_input_variance() -> None:
    from scipy.ndimage import gaussian_filter

    from inference.imc.live import unexplained_fraction

    rng = np.random.default_rng(3)
    channels = gaussian_filter(rng.random((3, 32, 32)), (0, 2, 2)).astype(np.float32)
    image = channels.sum(axis=0)
    assert unexplained_fraction(image, channels) == pytest.approx(0.0, abs=1e-12)
    half = channels * 0.5  # half of every pixel unexplained
    expected = ((image * 0.5) ** 2).sum() / ((image - image.mean()) ** 2).sum()
    assert unexplained_fraction(image, half, sigma_px=0) == pytest.approx(expected, rel=1e-6)
    residual, smooth = gaussian_filter(image * 0.5, 1.0), gaussian_filter(image, 1.0)
    expected = (residual**2).sum() / ((smooth - smooth.mean()) ** 2).sum()
    assert unexplained_fraction(image, half) == pytest.approx(expected, rel=1e-6)
    assert unexplained_fraction(np.ones((8, 8)), np.zeros((3, 8, 8))) == 0.0  # flat: no spread
    # pixel noise the channels leave out counts far less than a missing structure
    noisy = image + rng.normal(0, 0.1 * image.std(), image.shape)
    assert unexplained_fraction(noisy, channels) < 0.2 * unexplained_fraction(
        noisy, channels, sigma_px=0)
    missing = image.copy()
    missing[8:16, 8:16] += 2 * image.std()  # a blob no channel has
    assert unexplained_fraction(missing, channels) > 0.5 * unexplained_fraction(
        missing, channels, sigma_px=0)


@pytest.mark.skipif(not (BUNDLED_DIR / "imcsr.pt").is_file(), reason="bundled imcsr.pt absent")
def test_domain_check_passes_the_trained_trio_and_flags_a_structure_outside_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """Live-like fields (the realistic emulator through the bundled DFCAN-SIM, 100 photons):
    with the bundled model's own measured limits, mixtures of microtubules, ER and lysosomes
    pass, fields of F-actin alone and of mitochondria alone are flagged; the log warns once
    when the flags start, not for every flagged frame."""
    import logging

    caplog.set_level(logging.INFO, logger="inference.imc.live")
    from inference.imc.live import ImcStream
    from inference.imc.live_data import render_live_field
    from inference.model_file import read_model_file

    separator = ImcSeparator("imcsr")
    info = read_model_file(BUNDLED_DIR / "imcsr.pt")[0]
    assert info.imc_unexplained_limit is not None and info.imc_channel_shares is not None
    assert separator.unexplained_limit == info.imc_unexplained_limit
    stream = ImcStream(separator)
    for t, seed in enumerate((987_001, 987_003)):
        trio = render_live_field(seed, 100.0, 64, methods=("dfcan-sim",))
        stream.process(t, trio.sr["dfcan-sim"], trio.widefield)
        assert separator.last_reason is None, separator.last_unexplained
    assert stream.out_of_domain == {}
    outside = [("f-actin", 987_001), ("f-actin", 987_002), ("mitochondria", 987_001)]
    for t, (structure, seed) in enumerate(outside, start=2):
        field = render_live_field(seed, 100.0, 64, methods=("dfcan-sim",),
                                  structures=(structure,))
        stream.process(t, field.sr["dfcan-sim"], field.widefield)
        assert separator.last_reason is not None, (structure, seed, separator.last_shares)
    assert sorted(stream.out_of_domain) == [2, 3, 4]
    assert "not a mixture of the structures" in stream.out_of_domain[2]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "out of domain" in warnings[0].getMessage()


def test_widefield_on_sr_grid_normalises_and_keeps_pixel_areas_aligned() -> None:
    """Min-max to [0, 1], then linear interpolation with pixel areas aligned: each camera
    pixel's value lands on the centre of its 2 x 2 SR block (a ramp stays a ramp, centred)."""
    ramp = np.tile(np.arange(8, dtype=np.float32) * 10 + 100, (6, 1))
    grid = widefield_on_sr_grid(ramp, (12, 16))
    assert grid.shape == (12, 16) and grid.dtype == np.float32
    assert float(grid.min()) == 0.0 and float(grid.max()) == pytest.approx(1.0, abs=1e-6)
    # SR pixels 2k, 2k+1 lie a quarter camera pixel either side of camera pixel k's centre
    inner = grid[0, 1:-1]
    np.testing.assert_allclose(inner[1::2] - inner[0::2], 0.5 / 7, atol=1e-6)
    np.testing.assert_allclose(grid[0, 2:-2:2] + grid[0, 3:-1:2], 2 * np.arange(1, 7) / 7,
                               atol=1e-6)
    np.testing.assert_allclose(widefield_on_sr_grid(ramp, (6, 8)), (ramp - 100) / 70,
                               atol=1e-6)
    with pytest.raises(ValueError, match="whole factor"):
        widefield_on_sr_grid(ramp, (12, 12))
    with pytest.raises(ValueError, match="finite"):
        widefield_on_sr_grid(np.full((6, 8), np.nan, np.float32), (12, 16))


def test_a_widefield_model_needs_and_uses_the_widefield(tmp_path: Path) -> None:
    """A widefield_input model refuses to run without the wide-field image; with it, the
    output is the module's on [normalised SR, normalised wide-field on the SR grid], and a
    different wide-field changes the separation (the context is really used)."""
    torch.manual_seed(3)
    options = ImcsrOptions.model_validate(
        {"width": 4, "groups": 1, "blocks": 1, "reduction": 2, "widefield_input": True,
         "output": "shares"})
    module = Imcsr(options).eval()
    with torch.no_grad():
        module.head.weight.mul_(5.0)  # a context the output notices
    path = tmp_path / "wf.pt"
    save_model(path, module, architecture="imcsr", mode="imc", options=module.options)
    separator = ImcSeparator(path)
    rng = np.random.default_rng(4)
    image = rng.random((12, 16), dtype=np.float32) * 400 + 50
    widefield = rng.random((6, 8), dtype=np.float32) * 90 + 10
    with pytest.raises(ValueError, match="wide-field"):
        separator.separate(image)
    out = separator.separate(image, widefield)
    low, span = float(image.min()), float(image.max() - image.min())
    x = np.stack([(image - low) / (span + 1e-7), widefield_on_sr_grid(widefield, image.shape)])
    with torch.no_grad():
        expected = module(torch.from_numpy(x[None]))[0].numpy() * span
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    assert bool((out.sum(axis=0) <= image - low + 1e-3).all())  # shares of the SR input
    other = separator.separate(image, widefield[::-1].copy())
    assert float(np.abs(other - out).max()) > 1e-3 * span
    pushed = separator.push(image, widefield)
    assert pushed is not None
    np.testing.assert_allclose(pushed[1], out, rtol=1e-6)
