"""DFGAN discriminator (Qiao et al. 2021): a plain CNN judging 256x256 SR images.

The DFGAN generator is DFCAN with 5 groups x 10 FCABs and gamma 0.1
(`inference.models.dfcan.dfgan_generator_options`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from settings_file import StrictModel

LEAK = 0.1


class DiscriminatorOptions(StrictModel):
    """Widths of the DFGAN discriminator (authors' values by default)."""

    input_channels: int = Field(default=1, ge=1)
    stem_width: int = Field(default=32, ge=1)
    block_widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    dense_width: int = Field(default=256, ge=1)


class DfganDiscriminator(nn.Module):
    """conv3x3->32 + LeakyReLU; 5 blocks of two conv3x3 + LeakyReLU; GAP; dense 256; dense 1."""

    def __init__(self, options: DiscriminatorOptions | None = None) -> None:
        super().__init__()
        self.options = options or DiscriminatorOptions()
        o = self.options
        self.stem = nn.Conv2d(o.input_channels, o.stem_width, 3, padding=1)
        convs: list[nn.Module] = []
        previous = o.stem_width
        for width in o.block_widths:
            convs += [
                nn.Conv2d(previous, width, 3, padding=1),
                nn.Conv2d(width, width, 3, padding=1),
            ]
            previous = width
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(previous, o.dense_width)
        self.out = nn.Linear(o.dense_width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1) probability that the image is real."""
        x = F.leaky_relu(self.stem(x), LEAK)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAK)
        pooled = x.mean(dim=(-2, -1))
        return torch.sigmoid(self.out(F.leaky_relu(self.dense(pooled), LEAK)))
