"""Camera model: mean-variance calibration recovers gain, offset and read noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sim_emulator.sensor import NoiseSource, Sensor, SensorModel

SHAPE = (64, 64)


def _pair(sensor: Sensor, photons: float, noise: NoiseSource, exposure_ms: float = 10.0):
    flat = np.full(SHAPE, photons, dtype=np.float32)
    a = sensor.expose(flat, exposure_ms, noise).astype(np.float64)
    b = sensor.expose(flat, exposure_ms, noise).astype(np.float64)
    return a, b


def test_mean_variance_recovers_gain_offset_read_noise() -> None:
    model = SensorModel(hot_pixel_fraction=0.0)
    sensor = Sensor(model, SHAPE)
    noise = NoiseSource(np.random.default_rng(1))
    darks = [sensor.expose(np.zeros(SHAPE, np.float32), 10.0, noise) for _ in range(16)]
    dark = np.mean(darks, axis=0)
    assert dark.mean() == pytest.approx(model.offset_adu, abs=0.5)
    a, b = _pair(sensor, 0.0, noise)
    read_adu = np.std(a - b) / np.sqrt(2)
    means, variances = [], []
    for photons in (20.0, 100.0, 400.0, 1500.0, 5000.0):
        a, b = _pair(sensor, photons, noise)
        means.append(np.mean((a + b) / 2 - dark))
        variances.append(np.var(a - b) / 2)
    slope, _ = np.polyfit(means, variances, 1)
    assert slope == pytest.approx(model.gain_adu_per_e, rel=0.03)
    read_e = read_adu / slope
    rms_read_e = np.sqrt(np.mean(sensor.read_noise_map_e**2))
    assert read_e == pytest.approx(rms_read_e, rel=0.05)
    # electrons per ADU converts offset-subtracted ADU back to photo-electrons (photons x QE)
    assert means[-1] * model.electrons_per_adu == pytest.approx(5000.0 * model.qe, rel=0.02)


def test_clipping_hot_pixels_roi_and_binning() -> None:
    model = SensorModel(hot_pixel_fraction=0.01, roi=(8, 4, 32, 16), binning=2)
    sensor = Sensor(model, SHAPE)
    noise = NoiseSource(np.random.default_rng(2))
    assert sensor.output_shape == (8, 16)
    bright = sensor.expose(np.full(SHAPE, 1e6, np.float32), 10.0, noise)
    assert bright.shape == (8, 16) and bright.dtype == np.uint16
    assert np.all(bright == 65535)
    full = Sensor(SensorModel(hot_pixel_fraction=0.01), SHAPE)
    long_dark = full.expose(np.zeros(SHAPE, np.float32), 2000.0, noise).astype(float)
    hot = full.hot_pixel_mask
    assert hot.any()
    assert long_dark[hot].mean() > long_dark[~hot].mean() + 1000


def test_roi_outside_sensor_is_rejected() -> None:
    with pytest.raises(ValueError, match="roi"):
        Sensor(SensorModel(roi=(60, 0, 16, 16)), SHAPE)


@pytest.mark.parametrize("mean_e", [0.5, 2.0, 6.0])
def test_small_means_are_exact_poisson(mean_e: float) -> None:
    noise = NoiseSource(np.random.default_rng(3))
    lam = np.full(200_000, mean_e, dtype=np.float32)
    counts = noise.electrons(lam, np.float32(0.0))
    assert np.all(counts == np.round(counts))
    observed = np.bincount(counts.astype(int), minlength=40)[:40] / counts.size
    expected = stats.poisson.pmf(np.arange(40), mean_e)
    assert 0.5 * np.abs(observed - expected).sum() < 0.01


def test_large_means_have_poisson_moments_plus_read_noise() -> None:
    noise = NoiseSource(np.random.default_rng(4))
    lam = np.full(400_000, 30.0, dtype=np.float32)
    values = noise.electrons(lam, np.float32(1.5**2)).astype(np.float64)
    assert values.mean() == pytest.approx(30.0, abs=0.05)
    assert values.var() == pytest.approx(30.0 + 1.5**2, rel=0.02)
    assert stats.skew(values) == pytest.approx(30.0 / (30.0 + 2.25) ** 1.5, abs=0.02)
