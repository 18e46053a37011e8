"""Network building blocks: TF1 resize, quadrant swap, DFT-as-matmul, shapes, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.models import (
    ARCHITECTURES,
    CrossModalityUnet,
    CrossModalityUnetOptions,
    Dfcan,
    DfcanOptions,
    DfganDiscriminator,
    DiscriminatorOptions,
    build_model,
)
from inference.models.dfcan import FourierChannelAttention, cpu_fusion_available, set_cpu_fusion
from inference.models.spectrum import (
    MatmulSpectrum,
    _swapped_full_index,
    fold_factor,
    folded_power_spectrum,
    power_spectrum_fft,
    quadrant_swap,
    tf1_resize_bilinear,
)

TINY = {"width": 8, "groups": 2, "blocks": 2, "reduction": 4, "spectrum_size": 16}


def _loop_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 legacy bilinear (align_corners False, no half pixel) as plain loops."""
    in_h, in_w = img.shape
    out = np.zeros((out_h, out_w), dtype=np.float64)
    for y in range(out_h):
        fy = y * in_h / out_h
        y0, y1 = int(np.floor(fy)), min(int(np.ceil(fy)), in_h - 1)
        for x in range(out_w):
            fx = x * in_w / out_w
            x0, x1 = int(np.floor(fx)), min(int(np.ceil(fx)), in_w - 1)
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * (fx - np.floor(fx))
            bot = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * (fx - np.floor(fx))
            out[y, x] = top + (bot - top) * (fy - np.floor(fy))
    return out


def test_tf1_resize_upsampling_is_corner_aligned_and_clamped() -> None:
    row = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    got = tf1_resize_bilinear(row, (1, 8))[0].tolist()
    assert got == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]  # no half-pixel shift; edge clamp


def test_tf1_resize_downsampling_decimates() -> None:
    row = torch.arange(5.0)[None] ** 2  # 0 1 4 9 16
    got = tf1_resize_bilinear(row, (1, 2))[0].tolist()
    assert got == pytest.approx([0.0, 4.0 + 0.5 * (9.0 - 4.0)])  # src = 0 and 2.5


@pytest.mark.parametrize("shape", [(7, 9), (8, 6), (5, 5), (12, 13), (32, 48)])
@pytest.mark.parametrize("out", [(16, 16), (4, 3)])
def test_tf1_resize_matches_loop_reference(shape: tuple[int, int], out: tuple[int, int]) -> None:
    img = np.random.default_rng(1).random(shape)
    got = tf1_resize_bilinear(torch.from_numpy(img), out).numpy()
    np.testing.assert_allclose(got, _loop_resize(img, *out), atol=1e-6)


@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_quadrant_swap_matches_authors_slicing(n: int) -> None:
    x = np.arange(n * (n + 1)).reshape(n, n + 1)
    h, w = x.shape
    top = np.concatenate([x[-h // 2 : h, -w // 2 : w], x[0 : h // 2, -w // 2 : w]], axis=0)
    bottom = np.concatenate([x[-h // 2 : h, 0 : w // 2], x[0 : h // 2, 0 : w // 2]], axis=0)
    expected = np.concatenate([top, bottom], axis=1)
    np.testing.assert_array_equal(quadrant_swap(torch.from_numpy(x)).numpy(), expected)


def test_quadrant_swap_differs_from_numpy_fftshift_on_odd_sizes() -> None:
    x = torch.arange(5)
    swapped = quadrant_swap(x[None])[0].tolist()
    assert swapped == [2, 3, 4, 0, 1]  # roll by ceil(5/2) = 3; np.fft.fftshift rolls by 2
    assert swapped != np.fft.fftshift(np.arange(5)).tolist()


@pytest.mark.parametrize("shape", [(16, 16), (13, 18), (40, 33)])
@pytest.mark.parametrize("resize_to", [None, 16])
def test_matmul_spectrum_matches_fft(shape: tuple[int, int], resize_to: int | None) -> None:
    torch.manual_seed(0)
    u = torch.randn(2, 3, *shape) * 2
    reference = quadrant_swap(power_spectrum_fft(u, 0.8))
    if resize_to is not None:
        reference = tf1_resize_bilinear(reference, (resize_to, resize_to))
    got = MatmulSpectrum(*shape, gamma=0.8, resize_to=resize_to)(u)
    assert got.shape == reference.shape
    rel = (got - reference).abs().max() / reference.abs().max()
    assert rel < 1e-4


def test_matmul_attention_model_matches_fft_model() -> None:
    torch.manual_seed(0)
    fft_model = Dfcan(DfcanOptions(**TINY)).eval()
    matmul_model = Dfcan(DfcanOptions(**TINY, attention="matmul")).eval()
    matmul_model.load_state_dict(fft_model.state_dict())
    x = torch.rand(1, 9, 20, 24)
    with torch.no_grad():
        assert (fft_model(x) - matmul_model(x)).abs().max() < 1e-4


@pytest.mark.parametrize(
    ("channels", "scale", "hw"), [(1, 2, (17, 20)), (9, 2, (16, 16)), (25, 3, (12, 10))]
)
def test_dfcan_shapes_and_range(channels: int, scale: int, hw: tuple[int, int]) -> None:
    model = Dfcan(DfcanOptions(**TINY, input_channels=channels, scale=scale)).eval()
    with torch.no_grad():
        y = model(torch.rand(2, channels, *hw))
    assert y.shape == (2, 1, hw[0] * scale, hw[1] * scale)
    assert float(y.min()) > 0 and float(y.max()) < 1


def test_full_size_parameter_counts_match_the_authors() -> None:
    assert (
        sum(p.numel() for p in build_model("dfcan", {"input_channels": 1}).parameters())
        == 1_930_753
    )
    assert (
        sum(p.numel() for p in build_model("dfcan", {"input_channels": 9}).parameters())
        == 1_935_361
    )
    dfgan = build_model("dfgan", {"input_channels": 1})
    assert sum(p.numel() for p in dfgan.parameters()) == 5_717_129
    assert isinstance(dfgan, Dfcan) and dfgan.options.gamma == 0.1


def test_spectrum_resize_option_changes_the_graph() -> None:
    torch.manual_seed(0)
    on = Dfcan(DfcanOptions(**TINY)).eval()
    off = Dfcan(DfcanOptions(**{**TINY, "spectrum_resize": False})).eval()
    off.load_state_dict(on.state_dict())
    x = torch.rand(1, 9, 16, 16)
    with torch.no_grad():
        assert torch.equal(on(x), off(x))  # 16 -> 16: the resize is the identity
        x = torch.rand(1, 9, 12, 12)
        assert not torch.equal(on(x), off(x))


def test_discriminator_and_unet_shapes() -> None:
    disc = DfganDiscriminator(
        DiscriminatorOptions(stem_width=4, block_widths=(4, 8), dense_width=8)
    )
    p = disc(torch.rand(3, 1, 32, 32))
    assert p.shape == (3, 1) and bool(((p > 0) & (p < 1)).all())
    full = DfganDiscriminator()
    assert full.convs[-1].out_channels == 512 and full.dense.out_features == 256
    unet = CrossModalityUnet(CrossModalityUnetOptions(base_width=4, depth=2, scale=2))
    assert unet(torch.rand(1, 1, 8, 12)).shape == (1, 1, 16, 24)
    with pytest.raises(ValueError, match="divisible"):
        unet(torch.rand(1, 1, 7, 8))


def test_registry_names_and_errors() -> None:
    assert {"dfcan", "dfgan", "dfgan-discriminator", "cross-modality-unet"} <= set(ARCHITECTURES)
    with pytest.raises(KeyError, match="unknown architecture 'nope'"):
        build_model("nope")
    with pytest.raises(ValueError, match="gamma"):
        build_model("dfcan", {"gamma": -1})
    with pytest.raises(ValueError, match="colour"):
        build_model("dfcan", {"colour": 3})


@pytest.mark.parametrize(
    ("shape", "out"), [((256, 256), 128), ((512, 384), 128), ((64, 48), 16), ((96, 96), 32)]
)
def test_folded_spectrum_equals_swap_then_tf1_resize(shape: tuple[int, int], out: int) -> None:
    torch.manual_seed(1)
    u = torch.randn(2, 3, *shape) * 2
    reference = tf1_resize_bilinear(quadrant_swap(power_spectrum_fft(u, 0.8)), (out, out))
    got = folded_power_spectrum(u, 0.8, (out, out))
    assert got is not None and got.shape == reference.shape
    assert ((got - reference).abs().max() / reference.abs().max()) < 2e-6
    as_channels_last = folded_power_spectrum(u.contiguous(memory_format=torch.channels_last),
                                             0.8, (out, out))
    assert as_channels_last is not None
    assert as_channels_last.is_contiguous(memory_format=torch.channels_last)
    assert ((as_channels_last - reference).abs().max() / reference.abs().max()) < 2e-6


@pytest.mark.parametrize(("size", "out"), [(250, 125), (30, 15), (45, 15), (100, 40), (64, 64)])
def test_spectrum_is_not_folded_where_the_resize_is_no_exact_decimation(size: int,
                                                                        out: int) -> None:
    assert fold_factor(size, out) is None
    assert folded_power_spectrum(torch.ones(1, 1, size, size), 0.8, (out, out)) is None


@pytest.mark.parametrize(("h", "w"), [(6, 5), (7, 8), (9, 9)])
def test_full_swapped_spectrum_from_the_rfft_half(h: int, w: int) -> None:
    u = torch.randn(2, h, w, dtype=torch.float64)
    half = torch.fft.rfft2(u).abs()
    got = half.flatten(-2)[..., torch.as_tensor(_swapped_full_index(h, w))].reshape(2, h, w)
    torch.testing.assert_close(got, quadrant_swap(torch.fft.fft2(u).abs()))


def test_fused_cpu_inference_matches_the_plain_layers() -> None:
    if not cpu_fusion_available():
        pytest.skip("torch without oneDNN fused convolutions")
    torch.manual_seed(0)
    model = Dfcan(DfcanOptions(**{**TINY, "spectrum_size": 12})).eval()
    x = torch.rand(1, 9, 24, 36)
    for sub in model.modules():
        if isinstance(sub, FourierChannelAttention):
            sub.fold_spectrum = False  # the authors' spectrum path on both sides
    with torch.no_grad():
        plain = model(x)
        set_cpu_fusion(model, True)
        fused = model(x.contiguous(memory_format=torch.channels_last))
    assert (fused - plain).abs().max() < 1e-5
    assert not torch.equal(fused, plain)  # the fused path did run (rounding differs)
    with torch.enable_grad():  # training never takes the fused (no autograd) path
        y = model(x.requires_grad_())
        y.sum().backward()
    assert x.grad is not None
