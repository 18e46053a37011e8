"""The IMC-SR-All loss equals the paper's formula; the summation term drives the channel sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.evaluation import ssim
from inference.imc.loss import ImcLossWeights, imc_loss


def _fidelity_numpy(p: np.ndarray, t: np.ndarray, lam: float, mu: float) -> float:
    mse = float(np.mean((p.astype(np.float64) - t) ** 2))
    return lam * mse + mu * (1.0 - float(ssim(p, t).mean()))


def test_loss_equals_formula_on_known_inputs() -> None:
    rng = np.random.default_rng(3)
    y = rng.random((2, 3, 20, 20)).astype(np.float32) * 0.3
    y_hat = np.clip(y + 0.05 * rng.standard_normal(y.shape), 0, 1).astype(np.float32)
    x = (y.sum(axis=1, keepdims=True) + 0.02).astype(np.float32)
    expected = _fidelity_numpy(y_hat, y, 1.0, 0.1) + 0.02 * _fidelity_numpy(
        y_hat.sum(axis=1, keepdims=True), x, 1.0, 0.1
    )
    got = imc_loss(torch.from_numpy(y_hat), torch.from_numpy(y), torch.from_numpy(x))
    assert float(got) == pytest.approx(expected, rel=1e-4)
    without = imc_loss(
        torch.from_numpy(y_hat), torch.from_numpy(y), torch.from_numpy(x),
        ImcLossWeights(summation_weight=0.0),
    )
    assert float(without) == pytest.approx(_fidelity_numpy(y_hat, y, 1.0, 0.1), rel=1e-4)
    assert float(got) > float(without)


def test_summation_term_gradient_pushes_all_channels_towards_the_mixture() -> None:
    rng = np.random.default_rng(4)
    y = torch.from_numpy(rng.random((1, 3, 16, 16)).astype(np.float32) * 0.3)
    x = y.sum(dim=1, keepdim=True) + 0.1  # measured image brighter than the perfect channels
    prediction = y.clone().requires_grad_(True)
    imc_loss(prediction, y, x).backward()
    assert prediction.grad is not None
    grad = prediction.grad[0]
    # per-channel terms are at their optimum: only the summation term acts, equally per channel
    assert torch.allclose(grad[0], grad[1], rtol=1e-3, atol=1e-9)
    assert torch.allclose(grad[1], grad[2], rtol=1e-3, atol=1e-9)
    mse_part = -2 * 0.02 * 0.1 / (16 * 16)  # d/dy of alpha*lam*mean((sum - x)^2) at sum = x - 0.1
    assert float(grad.mean()) < 0.0
    assert float(grad.mean()) == pytest.approx(mse_part, rel=0.5)  # SSIM part adds a little
    prediction.grad = None
    imc_loss(prediction, y, x, ImcLossWeights(summation_weight=0.0)).backward()
    assert prediction.grad is not None
    assert float(prediction.grad.abs().max()) < 1e-6


def test_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match="mixture must be"):
        imc_loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
