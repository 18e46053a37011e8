"""Image-quality metrics: normalisation, registration, linear fit, scores, decorrelation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.evaluation import (
    decorrelation_analysis,
    decorrelation_resolution,
    linear_fit,
    mean_gradient,
    ms_ssim,
    nrmse,
    pearson,
    percentile_normalize,
    register_translation,
    score,
    shift_image,
    ssim,
    ssim_torch,
)


def _blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth random structure (band-limited noise), values roughly in [0, 1]."""
    rng = np.random.default_rng(seed)
    ny, nx = shape[-2:]
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    spectrum = np.fft.fft2(rng.standard_normal(shape)) * np.exp(-(kx**2 + ky**2) / 0.005)
    image = np.fft.ifft2(spectrum).real
    return (image - image.min()) / (image.max() - image.min())


def _band_limited(cutoff: float, size: int = 128, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """White noise with a hard circular cut-off (fraction of Nyquist) plus white noise."""
    rng = np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]) * 2.0
    image = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * (k < cutoff)).real
    return image / image.std() + noise * rng.standard_normal((size, size)) + 3.0


def test_percentile_normalize_per_image() -> None:
    batch = np.stack([np.arange(100.0).reshape(10, 10), 5 + 2 * np.arange(100.0).reshape(10, 10)])
    out = percentile_normalize(batch)
    np.testing.assert_allclose(out.min(axis=(1, 2)), 0.0, atol=1e-7)
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # same shape, different scale
    clipped = percentile_normalize(batch, 10.0, 90.0, clip=True)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    assert (clipped[0] == 0).sum() == 10  # values at or below the 10th percentile (0..9.9)


def test_registration_recovers_subpixel_shifts_in_a_batch() -> None:
    reference = _blobs((2, 64, 64), seed=1).astype(np.float32)
    true_shift = np.array([[2.3, -1.6], [-4.0, 0.4]])
    moving = shift_image(reference, -true_shift)
    found = register_translation(moving, reference)
    np.testing.assert_allclose(found, true_shift, atol=0.1)
    aligned = shift_image(moving, found)
    assert nrmse(aligned[:, 8:-8, 8:-8], reference[:, 8:-8, 8:-8]).max() < 0.01


def test_linear_fit_removes_gain_and_offset() -> None:
    truth = _blobs((3, 32, 32), seed=2)
    prediction = 4.0 * truth - 1.5
    np.testing.assert_allclose(linear_fit(prediction, truth), truth, atol=1e-5)


def test_nrmse_and_pearson_values() -> None:
    truth = np.zeros((4, 4))
    truth[0, 0] = 2.0
    prediction = truth + 0.5
    assert nrmse(prediction, truth) == pytest.approx(0.25)
    x = np.arange(16.0).reshape(4, 4)
    assert pearson(3 * x + 1, x) == pytest.approx(1.0)
    assert pearson(-x, x) == pytest.approx(-1.0)


def test_ssim_identity_noise_and_torch_agree() -> None:
    image = _blobs((2, 48, 48), seed=3)
    rng = np.random.default_rng(4)
    noisy = image + 0.1 * rng.standard_normal(image.shape)
    very_noisy = image + 0.3 * rng.standard_normal(image.shape)
    np.testing.assert_allclose(ssim(image, image), 1.0, atol=1e-9)
    s_low, s_high = ssim(noisy, image), ssim(very_noisy, image)
    assert np.all(s_low < 0.99) and np.all(s_high < s_low)
    torch_value = ssim_torch(torch.from_numpy(noisy[:, None]), torch.from_numpy(image[:, None]))
    np.testing.assert_allclose(torch_value[:, 0].numpy(), s_low, rtol=1e-6)
    tensor = torch.from_numpy(noisy[:, None]).requires_grad_(True)
    ssim_torch(tensor, torch.from_numpy(image[:, None])).sum().backward()
    assert tensor.grad is not None and torch.isfinite(tensor.grad).all()


def test_ms_ssim_orders_like_ssim() -> None:
    image = _blobs((96, 96), seed=5)
    rng = np.random.default_rng(6)
    assert ms_ssim(image, image) == pytest.approx(1.0)
    mild = ms_ssim(image + 0.05 * rng.standard_normal(image.shape), image)
    strong = ms_ssim(image + 0.3 * rng.standard_normal(image.shape), image)
    assert 0.0 < strong < mild < 1.0


def test_mean_gradient_of_a_ramp() -> None:
    ramp = np.add.outer(np.zeros(10), 0.5 * np.arange(10.0))
    assert mean_gradient(ramp) == pytest.approx(0.5)
    assert mean_gradient(np.stack([ramp, 2 * ramp])).tolist() == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize("cutoff", [0.3, 0.6])
def test_decorrelation_finds_the_band_limit(cutoff: float) -> None:
    result = decorrelation_analysis(_band_limited(cutoff), pixel_size_nm=50.0)
    assert result.cutoff == pytest.approx(cutoff, abs=0.04)
    assert result.resolution == pytest.approx(2 * 50.0 / result.cutoff)
    assert result.amplitude > 0.05


def test_decorrelation_is_batched() -> None:
    batch = np.stack([_band_limited(0.3, seed=1), _band_limited(0.6, seed=2)])
    resolutions = decorrelation_resolution(batch, pixel_size_nm=10.0)
    assert resolutions.shape == (2,)
    assert resolutions[0] > 1.6 * resolutions[1]
    np.testing.assert_allclose(
        resolutions[1], decorrelation_analysis(batch[1], pixel_size_nm=10.0).resolution
    )


def test_score_ranks_a_better_prediction_higher() -> None:
    truth = _blobs((64, 64), seed=8)
    rng = np.random.default_rng(9)
    good = 3.0 * np.roll(truth, 2, axis=1) + 0.02 * rng.standard_normal(truth.shape)
    bad = truth + 0.3 * rng.standard_normal(truth.shape)
    good_scores, bad_scores = score(good, truth), score(bad, truth)
    assert good_scores.nrmse < 0.02 < bad_scores.nrmse
    assert good_scores.ssim > bad_scores.ssim and good_scores.pearson > 0.99
    assert good_scores.ms_ssim > bad_scores.ms_ssim


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        nrmse(np.zeros((4, 4)), np.zeros((4, 5)))


@pytest.mark.parametrize("cutoff", [0.3, 0.5, 0.7])
def test_decorrelation_of_blurred_points_tracks_the_otf_cutoff(cutoff: float) -> None:
    """Sparse emitters through a circular-pupil OTF plus noise: cut-off just below the OTF's."""
    from calibration.otf import pupil_otf

    rng = np.random.default_rng(11)
    k = np.hypot(np.fft.fftfreq(128)[:, None], np.fft.fftfreq(128)[None, :]) * 2.0
    points = (rng.random((128, 128)) < 0.02) * 10.0
    image = np.fft.ifft2(np.fft.fft2(points) * pupil_otf(k / cutoff)).real
    image += 0.05 * image.max() * rng.standard_normal(image.shape) + 1.0
    found = decorrelation_analysis(image).cutoff
    assert 0.75 * cutoff < found < 1.05 * cutoff


def test_ms_ssim_terms_match_scikit_image_ssim() -> None:
    """ms_ssim keeps its own SSIM terms (it needs the contrast-structure map); at one scale
    they must give scikit-image's SSIM, which `ssim` returns."""
    from inference.evaluation import _ssim_terms

    image = _blobs((2, 40, 40), seed=7)
    noisy = image + 0.2 * np.random.default_rng(8).standard_normal(image.shape)
    ssim_map, _ = _ssim_terms(noisy, image, 1.0)
    np.testing.assert_allclose(ssim_map.mean(axis=(-2, -1)), ssim(noisy, image), atol=1e-12)
