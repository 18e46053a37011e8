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


@pytest.mark.parametrize("scale", [2, 4])
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
