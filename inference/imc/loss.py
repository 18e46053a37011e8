"""The IMC-SR-All loss (Wang et al. 2021): per-channel fidelity plus a summation term.

L = lam*MSE(y^, y) + mu*(1 - SSIM(y^, y)) + alpha*[lam*MSE(sum(y^), x) + mu*(1 - SSIM(sum(y^), x))]
with lam = 1, mu = 0.1, alpha = 0.02. The summation term ties the separated channels back to the
measured image x, which suppresses signal invented in the wrong channel (false positives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from inference.evaluation import ssim_torch


class ImcLossWeights(BaseModel):
    """Loss weights; `alpha` = 0 switches the summation term off."""

    model_config = ConfigDict(extra="forbid")

    mse_weight: float = Field(default=1.0, ge=0, description="lambda")
    ssim_weight: float = Field(default=0.1, ge=0, description="mu")
    summation_weight: float = Field(default=0.02, ge=0, description="alpha")


def fidelity(
    prediction: torch.Tensor, target: torch.Tensor, weights: ImcLossWeights
) -> torch.Tensor:
    """lam * MSE + mu * (1 - SSIM), SSIM averaged over the batch and channels; (N, C, Y, X)."""
    mse = F.mse_loss(prediction, target)
    structural = 1.0 - ssim_torch(prediction, target, data_range=1.0).mean()
    return weights.mse_weight * mse + weights.ssim_weight * structural


def imc_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mixture: torch.Tensor,
    weights: ImcLossWeights | None = None,
) -> torch.Tensor:
    """The IMC-SR-All loss: prediction/target (N, C, Y, X), mixture x (N, 1, Y, X)."""
    weights = weights or ImcLossWeights()
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}")
    if mixture.shape != (prediction.shape[0], 1, *prediction.shape[2:]):
        raise ValueError(
            f"mixture must be (N, 1, Y, X) = {(prediction.shape[0], 1, *prediction.shape[2:])}, "
            f"got {tuple(mixture.shape)}"
        )
    loss = fidelity(prediction, target, weights)
    if weights.summation_weight > 0:
        total = prediction.sum(dim=1, keepdim=True)
        loss = loss + weights.summation_weight * fidelity(total, mixture, weights)
    return loss
