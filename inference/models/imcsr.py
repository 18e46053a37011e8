"""IMC-SR (Wang et al. 2021): RCAN-style network separating one SR image into structure channels.

conv3x3 + GELU head; residual groups of residual channel-attention blocks (RCABs), each group
with a skip from its input to its output; a conv-GELU module and a conv + sigmoid tail giving
one channel per structure. The temporal variant takes three consecutive SR frames as input
channels and separates the middle one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from inference.imc import DEFAULT_STRUCTURES
from inference.models.registry import register_architecture
from settings_file import StrictModel


class ImcsrOptions(StrictModel):
    """Architecture options; defaults are the paper's (width 64, 5 groups x 10 RCABs)."""

    input_frames: Literal[1, 3] = Field(
        default=1, description="1: single SR frame; 3: frames t-1, t, t+1 (separates t)"
    )
    output_channels: int = Field(default=3, ge=1, le=16, description="one per structure")
    width: int = Field(default=64, ge=1, description="feature channels")
    groups: int = Field(default=5, ge=1, description="residual groups")
    blocks: int = Field(default=10, ge=1, description="RCABs per residual group")
    reduction: int = Field(default=16, ge=1, description="channel reduction in the attention")
    downscale: Literal[1, 2, 4, 8] = Field(
        default=1,
        description="the residual groups work at 1/downscale of the SR sampling (pixel unshuffle "
        "in, pixel shuffle out): downscale^2 x fewer operations per layer and downscale x the "
        "reach in SR pixels, to tell structures apart by their shape over long distances",
    )
    channel_names: tuple[str, ...] = Field(
        default=DEFAULT_STRUCTURES, description="structure of each output"
    )
    widefield_input: bool = Field(
        default=False,
        description="a second input: the set's wide-field image on the SR grid "
        "(`inference.imc.live.widefield_on_sr_grid`), context that survives where the SR "
        "image lost dim structure; single-frame models only",
    )
    output: Literal["intensity", "shares"] = Field(
        default="intensity",
        description="intensity: each channel is a sigmoid image (the paper's). shares: a "
        "softmax over the structures and a background share, each structure's share times "
        "the (middle) input frame, so the channels only redistribute measured signal and "
        "never sum to more than the input",
    )

    @model_validator(mode="after")
    def _check(self) -> ImcsrOptions:
        if len(self.channel_names) != self.output_channels:
            raise ValueError(
                f"channel_names={list(self.channel_names)} must name each of the "
                f"{self.output_channels} output_channels"
            )
        if self.widefield_input and self.input_frames != 1:
            raise ValueError("widefield_input=true needs input_frames=1 (temporal models take "
                             "SR frames only)")
        return self

    @property
    def input_channels(self) -> int:
        """Input channels the network takes: the SR frame(s), then the wide-field if used."""
        return self.input_frames + (1 if self.widefield_input else 0)


OUTPUT_BIAS_INIT = -3.0


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="none")


class ChannelAttention(nn.Module):
    """Global average pool, reduce (1x1 conv), ReLU, expand (1x1 conv), sigmoid, rescale."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        hidden = max(width // reduction, 1)
        self.reduce = nn.Conv2d(width, hidden, 1)
        self.expand = nn.Conv2d(hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.adaptive_avg_pool2d(x, 1)
        weights = torch.sigmoid(self.expand(F.relu(self.reduce(weights))))
        return x * weights


class Rcab(nn.Module):
    """Residual channel-attention block: two conv-GELU modules, channel attention, skip."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.attention = ChannelAttention(width, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _gelu(self.conv2(_gelu(self.conv1(x))))
        return x + self.attention(y)


class ResidualGroup(nn.Module):
    """`blocks` RCABs with a skip connection from the group input to the group output."""

    def __init__(self, width: int, blocks: int, reduction: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Rcab(width, reduction) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blocks(x)


class Imcsr(nn.Module):
    """(N, input_channels, Y, X) SR image(s) in [0, 1] (then the wide-field on the SR grid,
    with `widefield_input`) -> (N, output_channels, Y, X) in [0, 1] (with `output` "shares",
    each pixel's channels sum to at most the SR input's)."""

    def __init__(self, options: ImcsrOptions | None = None) -> None:
        super().__init__()
        self.options = options or ImcsrOptions()
        o = self.options
        cells = o.downscale * o.downscale  # SR pixels per working pixel
        self.head = nn.Conv2d(o.input_channels * cells, o.width, 3, padding=1)
        self.groups = nn.Sequential(
            *(ResidualGroup(o.width, o.blocks, o.reduction) for _ in range(o.groups))
        )
        self.tail = nn.Conv2d(o.width, o.width, 3, padding=1)
        maps = o.output_channels + (1 if o.output == "shares" else 0)  # + background share
        self.output: nn.Conv2d = nn.Conv2d(o.width, maps * cells, 3, padding=1)
        # intensity: start near the sparse targets' mean (sigmoid(-3) ~ 0.05) with small output
        # weights, so the first updates do not drive the sigmoid into saturation (dead
        # outputs); shares: start from equal shares
        assert self.output.bias is not None
        with torch.no_grad():
            self.output.weight.mul_(0.1)
            nn.init.constant_(
                self.output.bias, OUTPUT_BIAS_INIT if o.output == "intensity" else 0.0
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.options.input_channels:
            raise ValueError(
                f"IMC-SR expects (N, {self.options.input_channels}, Y, X), got {tuple(x.shape)}"
            )
        logits = self._logits(x)
        if self.options.output == "intensity":
            return torch.sigmoid(logits)
        middle = self.options.input_frames // 2  # the SR frame separated
        shares = torch.softmax(logits, dim=1)[:, : self.options.output_channels]
        return shares * x[:, middle : middle + 1]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.options.downscale
        if scale == 1:
            features = self.groups(_gelu(self.head(x)))
            return self.output(_gelu(self.tail(features)))
        height, width = x.shape[-2:]
        padded = x
        pad_y, pad_x = -height % scale, -width % scale
        if pad_y or pad_x:  # whole working pixels: mirror the last rows/columns
            padded = F.pad(x, (0, pad_x, 0, pad_y), mode="replicate")
        features = self.groups(_gelu(self.head(F.pixel_unshuffle(padded, scale))))
        logits = F.pixel_shuffle(self.output(_gelu(self.tail(features))), scale)
        return logits[..., :height, :width]


register_architecture(
    "imcsr", ImcsrOptions, Imcsr, "IMC-SR structure separation (Wang et al. 2021)"
)
