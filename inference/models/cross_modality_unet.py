"""Cross-modality U-net GAN generator (Wang et al., Nat. Methods 2019), a baseline model.

Four down blocks (three conv3x3 + LeakyReLU each, residual with zero-padded channels, 2x2
average pooling), a bottleneck, four up blocks (bilinear x2, concatenate the skip, three conv3x3
+ LeakyReLU, residual), a 1x1 output conv. For super-resolution the input is first upsampled
bilinearly by `scale`, as in the paper's wide-field -> SIM transforms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from settings_file import StrictModel

LEAK = 0.1


class CrossModalityUnetOptions(StrictModel):
    """Options of the cross-modality U-net generator."""

    input_channels: int = Field(default=1, ge=1)
    base_width: int = Field(default=32, ge=1)
    depth: int = Field(default=4, ge=1, le=6)
    scale: int = Field(default=2, ge=1, le=4)


class _ResidualConvs(nn.Module):
    """Three conv3x3 + LeakyReLU with a residual from the (channel-padded) input."""

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.in_width, self.out_width = in_width, out_width
        self.convs = nn.ModuleList(
            [nn.Conv2d(in_width, out_width, 3, padding=1)]
            + [nn.Conv2d(out_width, out_width, 3, padding=1) for _ in range(2)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.convs:
            y = F.leaky_relu(conv(y), LEAK)
        if self.in_width < self.out_width:
            x = F.pad(x, (0, 0, 0, 0, 0, self.out_width - self.in_width))
        elif self.in_width > self.out_width:
            x = x[:, : self.out_width]
        return x + y


class CrossModalityUnet(nn.Module):
    """(N, C, H, W) -> (N, 1, scale*H, scale*W); H, W must be divisible by 2**depth."""

    def __init__(self, options: CrossModalityUnetOptions | None = None) -> None:
        super().__init__()
        self.options = options or CrossModalityUnetOptions()
        o = self.options
        widths = [o.base_width * 2**i for i in range(o.depth + 1)]
        self.stem = nn.Conv2d(o.input_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(
            [_ResidualConvs(widths[i], widths[i + 1]) for i in range(o.depth)]
        )
        self.bottleneck = nn.Conv2d(widths[-1], widths[-1], 3, padding=1)
        self.up = nn.ModuleList(
            [
                _ResidualConvs(widths[i + 1] + widths[i + 1], widths[i])
                for i in reversed(range(o.depth))
            ]
        )
        self.out = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.options
        factor = 2**o.depth
        if x.shape[-2] * o.scale % factor or x.shape[-1] * o.scale % factor:
            raise ValueError(
                f"cross-modality U-net needs scale*H and scale*W divisible by {factor}, "
                f"got input {tuple(x.shape[-2:])} with scale {o.scale}"
            )
        if o.scale != 1:
            x = F.interpolate(x, scale_factor=o.scale, mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.stem(x), LEAK)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = F.leaky_relu(self.bottleneck(x), LEAK)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)
