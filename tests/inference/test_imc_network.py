"""IMC-SR network: shapes, parameter layout, registry and input checks."""

from __future__ import annotations

import pytest
import torch

from inference.models import build_model
from inference.models.imcsr import ChannelAttention, Imcsr, ImcsrOptions


def _tiny(**changes: object) -> ImcsrOptions:
    base: dict[str, object] = {"width": 8, "groups": 2, "blocks": 3, "reduction": 4}
    base.update(changes)
    return ImcsrOptions.model_validate(base)


def test_paper_defaults() -> None:
    options = ImcsrOptions()
    assert (options.width, options.groups, options.blocks) == (64, 5, 10)
    assert options.output_channels == 3 and options.input_frames == 1


@pytest.mark.parametrize("frames", [1, 3])
def test_output_shape_and_range(frames: int) -> None:
    torch.manual_seed(0)
    model = Imcsr(_tiny(input_frames=frames)).eval()
    x = torch.rand(2, frames, 24, 20)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 24, 20)
    assert float(y.min()) > 0.0 and float(y.max()) < 1.0  # sigmoid output


def test_parameter_layout_matches_the_paper_structure() -> None:
    w, g, b, r, f, c = 8, 2, 3, 4, 3, 3
    model = Imcsr(_tiny(input_frames=f))
    conv3 = w * w * 9 + w
    attention = (w * (w // r) + w // r) + ((w // r) * w + w)
    rcab = 2 * conv3 + attention
    expected = (f * w * 9 + w) + g * b * rcab + conv3 + (w * c * 9 + c)
    assert sum(p.numel() for p in model.parameters()) == expected
    names = {n for n, _ in model.named_parameters()}
    assert "groups.1.blocks.2.attention.reduce.weight" in names
    assert "groups.2.blocks.0.conv1.weight" not in names  # exactly `groups` groups
    assert tuple(model.output.weight.shape) == (c, w, 3, 3)
    assert tuple(model.head.weight.shape) == (w, f, 3, 3)


def test_group_skip_and_attention_are_used() -> None:
    """Zeroing every RCAB's attention expand bias to -inf-ish must change the output."""
    torch.manual_seed(1)
    model = Imcsr(_tiny()).eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
        for module in model.modules():
            if isinstance(module, ChannelAttention):
                assert module.expand.bias is not None
                module.expand.bias.fill_(-50.0)  # attention ~0: every RCAB becomes identity
        after = model(x)
    assert not torch.allclose(before, after, atol=1e-4)


def test_registry_builds_imcsr_and_rejects_bad_input() -> None:
    model = build_model("imcsr", {"width": 4, "groups": 1, "blocks": 1, "reduction": 2})
    assert isinstance(model, Imcsr)
    with pytest.raises(ValueError, match=r"expects \(N, 1, Y, X\)"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="channel_names"):
        ImcsrOptions(output_channels=2)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_downscaled_trunk_keeps_the_sr_sampling_on_any_size(scale: int) -> None:
    """The groups work on (Y/scale, X/scale) cells; the output is at the input's own size,
    sizes that are not multiples of the scale included."""
    torch.manual_seed(2)
    model = Imcsr(_tiny(downscale=scale)).eval()
    seen: list[tuple[int, ...]] = []
    model.groups.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        y = model(torch.rand(1, 1, 33, 30))
    assert y.shape == (1, 3, 33, 30)
    assert seen == [(1, 8, -(-33 // scale), -(-30 // scale))]
    assert tuple(model.head.weight.shape) == (8, scale * scale, 3, 3)
    assert tuple(model.output.weight.shape) == (3 * scale * scale, 8, 3, 3)


def test_downscaled_output_resolves_single_sr_pixels() -> None:
    """Pixel shuffle, not interpolation: each output SR pixel has its own output filter, so an
    impulse at one SR pixel changes the output differently at its neighbours in the same cell."""
    torch.manual_seed(3)
    model = Imcsr(_tiny(downscale=2)).eval()
    x = torch.zeros(1, 1, 16, 16)
    impulse = x.clone()
    impulse[0, 0, 8, 8] = 1.0
    with torch.no_grad():
        change = (model(impulse) - model(x))[0, 0, 8:10, 8:10]
    assert len({round(float(v), 6) for v in change.ravel()}) == 4
    assert ImcsrOptions().downscale == 1  # the paper's layout (and older model files) unchanged
    with pytest.raises(ValueError, match="downscale"):
        ImcsrOptions(downscale=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("frames", "scale"), [(1, 1), (1, 2), (3, 4)])
def test_share_output_only_redistributes_the_input(frames: int, scale: int) -> None:
    """output="shares": one more map (the background share) and a softmax; each channel is its
    share of the (middle) input frame, so the channels are >= 0 and their sum never exceeds
    the input, pixel by pixel; a pixel with no signal has empty channels, whatever the
    network thinks of its neighbourhood."""
    torch.manual_seed(4)
    model = Imcsr(_tiny(input_frames=frames, downscale=scale, output="shares")).eval()
    assert model.output.weight.shape[0] == 4 * scale * scale
    x = torch.rand(2, frames, 21, 18)
    x[:, frames // 2, 5, 7] = 0.0
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 21, 18)
    middle = x[:, frames // 2]
    total = y.sum(dim=1)
    assert float(y.min()) >= 0.0
    assert bool((total <= middle + 1e-6).all())
    assert bool((total >= 0.5 * middle).all())  # equal shares at the start: 3/4 of the input
    assert float(y[:, :, 5, 7].abs().max()) == 0.0
    if frames == 3:  # the neighbours in time steer the shares, not the intensity
        other = x.clone()
        other[:, 0] = torch.rand_like(other[:, 0])
        with torch.no_grad():
            y_other = model(other)
        ratio = y_other.sum(dim=1) / middle.clamp_min(1e-6)
        assert bool((ratio <= 1.0 + 1e-5).all())
        assert not torch.allclose(y, y_other)


def test_share_output_learns_a_spatial_assignment() -> None:
    """A few steps on a two-channel toy (left half channel 0, right half channel 1) move the
    shares toward the split, starting from equal shares."""
    torch.manual_seed(5)
    model = Imcsr(_tiny(output="shares", output_channels=2, channel_names=("a", "b")))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.rand(4, 1, 16, 16)
    target = torch.zeros(4, 2, 16, 16)
    target[:, 0, :, :8] = x[:, 0, :, :8]
    target[:, 1, :, 8:] = x[:, 0, :, 8:]
    start = float(((model(x) - target) ** 2).mean())
    for _ in range(60):
        optimiser.zero_grad()
        loss = ((model(x) - target) ** 2).mean()
        loss.backward()
        optimiser.step()
    assert float(loss) < 0.2 * start


def test_widefield_input_is_a_second_input_channel_and_not_what_shares_divide() -> None:
    torch.manual_seed(6)
    model = Imcsr(_tiny(widefield_input=True, output="shares", downscale=2)).eval()
    assert model.options.input_channels == 2
    assert tuple(model.head.weight.shape) == (8, 2 * 4, 3, 3)
    sr = torch.rand(1, 1, 16, 16)
    context = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        y = model(torch.cat([sr, context], dim=1))
    assert bool((y.sum(dim=1) <= sr[:, 0] + 1e-6).all())  # shares of the SR frame
    with pytest.raises(ValueError, match=r"expects \(N, 2, Y, X\)"):
        model(sr)
    with pytest.raises(ValueError, match="input_frames=1"):
        ImcsrOptions(input_frames=3, widefield_input=True)
