"""The IMC-SR-All loss (Wang et al. 2021): per-channel fidelity plus a summation term.

L = lam*MSE(y^, y) + mu*(1 - SSIM(y^, y)) + alpha*[lam*MSE(sum(y^), x) + mu*(1 - SSIM(sum(y^), x))]
with lam = 1, mu = 0.1, alpha = 0.02. The summation term ties the separated channels back to the
measured image x, which suppresses signal invented in the wrong channel (false positives).

Two optional terms aimed at channel assignment (0 by default: the paper's loss):
+ rho * mean over samples and channels of (1 - Pearson(y^_nc, y_nc)), the assessment's measure;
+ kappa * mean over `coarse_factors` f of MSE(avgpool_f(y^), avgpool_f(y)) * f^2. A short
  piece of line given to the wrong channel costs little per pixel; after pooling it is one
  bright coarse pixel in the wrong channel, while noise-like pixel errors average out. The
  factor f^2 keeps a piece's cost at each scale comparable to its per-pixel MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from inference.evaluation import ssim_torch
from settings_file import StrictModel


class ImcLossWeights(StrictModel):
    """Loss weights; `alpha` = 0 switches the summation term off."""

    mse_weight: float = Field(default=1.0, ge=0, description="lambda")
    ssim_weight: float = Field(default=0.1, ge=0, description="mu")
    summation_weight: float = Field(default=0.02, ge=0, description="alpha")
    pearson_weight: float = Field(
        default=0.0, ge=0, description="rho: weight of the mean per-channel 1 - Pearson"
    )
    coarse_mse_weight: float = Field(
        default=0.0, ge=0, description="kappa: weight of the MSE of average-pooled channels"
    )
    coarse_factors: tuple[int, ...] = Field(
        default=(2, 4), min_length=1, description="pooling factors of the coarse MSE"
    )


PEARSON_EPSILON = 1e-8
"""Added to the variance product: a crop where a channel is empty gives a finite gradient."""


def channel_pearson(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson of each sample's channel with its target over pixels: (N, C, Y, X) -> (N, C)."""
    p = prediction.flatten(2) - prediction.flatten(2).mean(dim=2, keepdim=True)
    t = target.flatten(2) - target.flatten(2).mean(dim=2, keepdim=True)
    covariance = (p * t).mean(dim=2)
    spread = (p.square().mean(dim=2) * t.square().mean(dim=2) + PEARSON_EPSILON).sqrt()
    return covariance / spread


def coarse_mse(
    prediction: torch.Tensor, target: torch.Tensor, factors: tuple[int, ...]
) -> torch.Tensor:
    """Mean over `factors` f of f^2 * MSE of the f x f average-pooled images."""
    terms = [
        F.mse_loss(F.avg_pool2d(prediction, f), F.avg_pool2d(target, f)) * f**2
        for f in factors
    ]
    return torch.stack(terms).mean()


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
    if weights.pearson_weight > 0:
        correlation = channel_pearson(prediction.float(), target.float())
        loss = loss + weights.pearson_weight * (1.0 - correlation).mean()
    if weights.coarse_mse_weight > 0:
        loss = loss + weights.coarse_mse_weight * coarse_mse(
            prediction, target, weights.coarse_factors
        )
    if weights.summation_weight > 0:
        total = prediction.sum(dim=1, keepdim=True)
        loss = loss + weights.summation_weight * fidelity(total, mixture, weights)
    return loss
