"""DFCAN (Qiao et al., Nat. Methods 2021): deep Fourier channel attention network, and the
DFGAN generator (the same blocks, deeper, gamma 0.1). Layer order equals the authors' Keras
creation order, which the weight converter relies on.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from inference.models.spectrum import (
    MatmulSpectrum,
    folded_power_spectrum,
    power_spectrum_fft,
    quadrant_swap,
    tf1_resize_bilinear,
)
from settings_file import StrictModel


class DfcanOptions(StrictModel):
    """Architecture options of DFCAN / the DFGAN generator (authors' DFCAN by default)."""

    input_channels: int = Field(
        default=9, ge=1, description="1 wide-field, 9 linear SIM, 25 nonlinear SIM"
    )
    width: int = Field(default=64, ge=1, description="feature channels")
    groups: int = Field(default=4, ge=1, description="residual groups")
    blocks: int = Field(default=4, ge=1, description="FCABs per residual group")
    gamma: float = Field(default=0.8, gt=0, description="spectrum power (|F|+1e-8)**gamma")
    reduction: int = Field(default=16, ge=1, description="channel reduction in the attention MLP")
    scale: int = Field(default=2, ge=1, le=4, description="upsampling factor (depth-to-space)")
    spectrum_resize: bool = Field(
        default=True, description="resize the spectrum to spectrum_size^2"
    )
    spectrum_size: int = Field(default=128, ge=1)
    attention: Literal["fft", "matmul"] = Field(
        default="fft", description="|DFT| by torch.fft or matmul"
    )


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    """GELU in the exact erf form used by the authors: x * 0.5 * (1 + erf(x / sqrt 2))."""
    return F.gelu(x, approximate="none")


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu_erf, "relu": F.relu, "sigmoid": torch.sigmoid}


def conv_act(conv: nn.Conv2d, x: torch.Tensor, activation: str, fused: bool) -> torch.Tensor:
    """activation(conv(x)); ``fused``: one oneDNN convolution with the activation applied as
    it writes its output (CPU float32, inference only), the same result to rounding."""
    if fused and x.device.type == "cpu" and x.dtype == torch.float32 and (
        not torch.is_grad_enabled()
    ):
        return torch.ops.mkldnn._convolution_pointwise(  # type: ignore[no-any-return]
            x, _packed_weight(conv, tuple(x.shape)), conv.bias, list(conv.padding),  # type: ignore[arg-type]
            list(conv.stride), list(conv.dilation), conv.groups, activation, [],
            "none" if activation == "gelu" else "",
        )
    return _ACTIVATIONS[activation](conv(x))


_PACKED: weakref.WeakKeyDictionary[nn.Conv2d, dict[tuple[int, ...], torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def _packed_weight(conv: nn.Conv2d, input_shape: tuple[int, ...]) -> torch.Tensor:
    """The conv's weight in oneDNN's own layout for this input shape, made once (a plain
    weight is reordered on every call: ~25 % of a 64-channel 3x3 convolution here). Keyed by
    the weight's storage and version, so loading new weights repacks."""
    weight = conv.weight
    key = (*input_shape, weight.data_ptr(), weight._version)
    cache = _PACKED.setdefault(conv, {})
    packed = cache.get(key)
    if packed is None:
        cache.clear()
        reorder: Callable[..., torch.Tensor] = torch._C._nn.mkldnn_reorder_conv2d_weight
        packed = reorder(weight.detach().to_mkldnn(), list(conv.padding), list(conv.stride),
                         list(conv.dilation), conv.groups, list(input_shape))
        cache[key] = packed
    return packed


def cpu_fusion_available() -> bool:
    """Whether this torch has the oneDNN fused convolution (CPU builds with mkldnn)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_convolution_pointwise"
    )


def set_cpu_fusion(module: nn.Module, enabled: bool) -> None:
    """Switch every DFCAN block of ``module`` to fused oneDNN convolutions (inference on the
    CPU: no autograd through them) or back to the plain layers."""
    for sub in module.modules():
        if isinstance(sub, (FourierChannelAttention, Fcab, ResidualGroup, Dfcan)):
            sub.fused = enabled


class FourierChannelAttention(nn.Module):
    """Channel weights from the shifted, resized power spectrum of each feature channel."""

    def __init__(self, options: DfcanOptions) -> None:
        super().__init__()
        width = options.width
        self.gamma = options.gamma
        self.resize_to = options.spectrum_size if options.spectrum_resize else None
        self.use_matmul = options.attention == "matmul"
        self.spectrum_conv = nn.Conv2d(width, width, 3, padding=1)
        self.squeeze = nn.Conv2d(width, max(width // options.reduction, 1), 1)
        self.excite = nn.Conv2d(max(width // options.reduction, 1), width, 1)
        self._matmul_cache: dict[tuple[int, int, str], MatmulSpectrum] = {}
        self.fused = False
        # the spectrum of the folded image where the resize is an exact decimation (same
        # frequencies, 1/k^2 of the work); False: the full FFT, swap and resize, as the authors
        self.fold_spectrum = True

    def spectrum(self, u: torch.Tensor) -> torch.Tensor:
        """The shifted, resized power spectrum (float32, FFT kept out of autocast)."""
        with torch.autocast(device_type=u.device.type, enabled=False):
            if self.use_matmul:
                return self._matmul(u)(u)
            if self.resize_to is not None and self.fold_spectrum:
                folded = folded_power_spectrum(u, self.gamma, (self.resize_to, self.resize_to))
                if folded is not None:
                    return folded
            power = quadrant_swap(power_spectrum_fft(u, self.gamma))
            if self.resize_to is not None:
                power = tf1_resize_bilinear(power, (self.resize_to, self.resize_to))
            return power

    def _matmul(self, u: torch.Tensor) -> MatmulSpectrum:
        h, w = int(u.shape[-2]), int(u.shape[-1])
        key = (h, w, str(u.device))
        module = self._matmul_cache.get(key)
        if module is None:
            module = MatmulSpectrum(h, w, self.gamma, self.resize_to).to(u.device)
            self._matmul_cache[key] = module
        return module

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Return the per-channel weights (N, C, 1, 1) in (0, 1)."""
        spectrum = self.spectrum(u).to(u.dtype)
        feat = conv_act(self.spectrum_conv, spectrum, "relu", self.fused)
        pooled = feat.mean(dim=(-2, -1), keepdim=True)
        return torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))


class Fcab(nn.Module):
    """Fourier channel attention block: two conv+GELU, scaled by attention, plus the input."""

    def __init__(self, options: DfcanOptions) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(options.width, options.width, 3, padding=1)
        self.conv2 = nn.Conv2d(options.width, options.width, 3, padding=1)
        self.attention = FourierChannelAttention(options)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = conv_act(self.conv2, conv_act(self.conv1, x, "gelu", self.fused), "gelu", self.fused)
        if self.fused and not torch.is_grad_enabled():  # one pass: no product, then sum
            return torch.addcmul(x, u, self.attention(u))
        return x + u * self.attention(u)


class ResidualGroup(nn.Module):
    """`blocks` FCABs followed by a skip from the group input."""

    def __init__(self, options: DfcanOptions) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Fcab(options) for _ in range(options.blocks)])
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and not torch.is_grad_enabled():
            return self.blocks(x).add_(x)
        return self.blocks(x) + x


class Dfcan(nn.Module):
    """DFCAN: (N, C, H, W) normalised raw frames -> (N, 1, sH, sW) SR image in (0, 1)."""

    def __init__(self, options: DfcanOptions | None = None) -> None:
        super().__init__()
        self.options = options or DfcanOptions()
        o = self.options
        self.head = nn.Conv2d(o.input_channels, o.width, 3, padding=1)
        self.groups = nn.Sequential(*[ResidualGroup(o) for _ in range(o.groups)])
        self.pre_shuffle = nn.Conv2d(o.width, o.width * o.scale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(o.scale)
        self.tail = nn.Conv2d(o.width, 1, 3, padding=1)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.groups(conv_act(self.head, x, "gelu", self.fused))
        up = self.shuffle(conv_act(self.pre_shuffle, feat, "gelu", self.fused))
        return conv_act(self.tail, up, "sigmoid", self.fused)


def dfgan_generator_options(input_channels: int = 1, **overrides: object) -> DfcanOptions:
    """Options of the DFGAN generator: 5 groups x 10 FCABs, gamma 0.1."""
    values: dict[str, object] = {
        "input_channels": input_channels,
        "groups": 5,
        "blocks": 10,
        "gamma": 0.1,
    }
    values.update(overrides)
    return DfcanOptions.model_validate(values)
