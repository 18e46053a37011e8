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


def _lines(piece_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """True channels (a horizontal line, a vertical line, a blob) and a prediction that gives
    `piece_px` of the horizontal line to the vertical line's channel (their sum unchanged)."""
    y = torch.zeros(1, 3, 32, 32)
    y[0, 0, 10, 2:30] = 0.8
    y[0, 1, 2:30, 20] = 0.8
    y[0, 2, 24:28, 4:8] = 0.9
    prediction = y.clone()
    prediction[0, 0, 10, 2 : 2 + piece_px] = 0.0
    prediction[0, 1, 10, 2 : 2 + piece_px] = 0.8
    return prediction, y


def test_assignment_terms_are_zero_when_right_and_rise_with_a_misassigned_piece() -> None:
    perfect, y = _lines(0)
    x = y.sum(dim=1, keepdim=True)
    only_pearson = ImcLossWeights(mse_weight=0, ssim_weight=0, summation_weight=0,
                                  pearson_weight=1.0)
    only_coarse = ImcLossWeights(mse_weight=0, ssim_weight=0, summation_weight=0,
                                 coarse_mse_weight=1.0)
    assert float(imc_loss(perfect, y, x, only_pearson)) == pytest.approx(0.0, abs=1e-4)
    assert float(imc_loss(perfect, y, x, only_coarse)) == 0.0
    costs = {}
    for piece_px in (4, 12):
        prediction, _ = _lines(piece_px)
        assert torch.allclose(prediction.sum(dim=1), y.sum(dim=1))  # the summation term is blind
        costs[piece_px] = (float(imc_loss(prediction, y, x, only_pearson)),
                           float(imc_loss(prediction, y, x, only_coarse)))
        expected = np.mean([1 - np.corrcoef(prediction[0, c].ravel(), y[0, c].ravel())[0, 1]
                            for c in range(3)])
        assert costs[piece_px][0] == pytest.approx(expected, rel=1e-3)
        assert costs[piece_px][0] > 0.01 and costs[piece_px][1] > 0.0
    assert costs[12][0] > 2 * costs[4][0] and costs[12][1] > 2 * costs[4][1]


def test_coarse_mse_costs_a_misassigned_piece_more_than_pixel_noise_of_equal_mse() -> None:
    prediction, y = _lines(8)
    pixel_mse = float(torch.mean((prediction - y) ** 2))
    noise = torch.from_numpy(np.random.default_rng(5).standard_normal(y.shape).astype(np.float32))
    noisy = y + noise * (pixel_mse / float(torch.mean(noise**2))) ** 0.5
    assert float(torch.mean((noisy - y) ** 2)) == pytest.approx(pixel_mse, rel=1e-4)
    x = y.sum(dim=1, keepdim=True)
    weights = ImcLossWeights(mse_weight=0, ssim_weight=0, summation_weight=0,
                             coarse_mse_weight=1.0)
    # noise averages out in the pooling (cost = its pixel MSE), a line piece does not (~3x)
    assert float(imc_loss(prediction, y, x, weights)) > 2 * float(imc_loss(noisy, y, x, weights))


def test_assignment_terms_add_to_the_paper_loss_and_stay_finite_on_an_empty_channel() -> None:
    prediction, y = _lines(8)
    y[0, 2] = 0.0  # no lysosome in this crop
    x = y.sum(dim=1, keepdim=True)
    base = float(imc_loss(prediction, y, x))
    both = ImcLossWeights(pearson_weight=0.5, coarse_mse_weight=2.0)
    pearson_only = ImcLossWeights(mse_weight=0, ssim_weight=0, summation_weight=0,
                                  pearson_weight=1.0)
    coarse_only = ImcLossWeights(mse_weight=0, ssim_weight=0, summation_weight=0,
                                 coarse_mse_weight=1.0)
    expected = (base + 0.5 * float(imc_loss(prediction, y, x, pearson_only))
                + 2.0 * float(imc_loss(prediction, y, x, coarse_only)))
    leaf = prediction.clone().requires_grad_(True)
    total = imc_loss(leaf, y, x, both)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())
