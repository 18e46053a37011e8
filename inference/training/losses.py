"""Training losses of the DFCAN paper: MSE + 0.1 (1 - SSIM) on min-max normalised images, and
the DFGAN adversarial terms (binary cross-entropy on the discriminator's probabilities)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from inference.evaluation import ssim_torch

SSIM_WEIGHT = 0.1
ADVERSARIAL_WEIGHT = 0.1


def min_max_torch(images: torch.Tensor) -> torch.Tensor:
    """Per-image (x - min) / (max - min) over the last two axes (differentiable)."""
    lo = images.amin(dim=(-2, -1), keepdim=True)
    hi = images.amax(dim=(-2, -1), keepdim=True)
    return (images - lo) / (hi - lo).clamp_min(1e-7)


def pixel_ssim_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    pixel: Literal["mse", "l1"] = "mse",
    ssim_weight: float = SSIM_WEIGHT,
) -> torch.Tensor:
    """MSE (or L1) + ssim_weight * (1 - SSIM), both images min-max normalised per image, in
    float32. The paper's loss is the default; L1 with a larger SSIM weight blurs less where the
    noise leaves a structure's position uncertain (the MSE optimum is the average position)."""
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        p = min_max_torch(prediction.float())
        t = min_max_torch(target.float())
        error = F.mse_loss(p, t) if pixel == "mse" else F.l1_loss(p, t)
        return error + ssim_weight * (1.0 - ssim_torch(p, t).mean())


def bce(probability: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of discriminator probabilities against all-real or all-fake labels,
    computed in float32 outside autocast (BCE on probabilities is not autocast-safe)."""
    with torch.autocast(device_type=probability.device.type, enabled=False):
        p = probability.float()
        labels = torch.ones_like(p) if real else torch.zeros_like(p)
        return F.binary_cross_entropy(p, labels)
