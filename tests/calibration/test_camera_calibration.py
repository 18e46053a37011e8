"""Camera photon calibration through the emulated rig against the sensor's true maps."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from calibration.camera_calibration import (
    CalibrationFileError,
    CameraCalibration,
    calibrate_camera,
    fit_calibration,
    plot_photon_transfer,
    series_moments,
)
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.optics import Optics
from sim_emulator.rig import emulated_rig
from sim_emulator.samples import Dynamics
from sim_emulator.sensor import NoiseSource, Sensor, SensorModel

# a photostable slide: no motion, no bleaching (the laser still flickers and drifts)
STATIC = Dynamics(
    drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0, bleach_rate_per_s=0.0,
    bleach_per_dose=0.0,
)


def _unpaced_rig(config: EmulatorConfig):
    """The emulated rig with its camera reading out as soon as a frame is rendered: the flat
    ladder's exposures add up to minutes of wall time when held (the physics is the same)."""
    rig = emulated_rig(config)
    rig.backend.set_property(rig.camera.label, "HoldExposure", "No")
    return rig


def _config(sensor: SensorModel | None = None) -> EmulatorConfig:
    """A still, hazy ER specimen lights every pixel: a stand-in for a fluorescent slide."""
    return EmulatorConfig(
        size_px=32,
        structure="er",
        photon_count_e=300.0,
        optics=Optics(background_fraction=1.0),
        dynamics=STATIC,
        sensor=sensor or SensorModel(),
    )


@pytest.fixture(scope="module")
def emulated_calibration() -> tuple[CameraCalibration, Sensor]:
    config = _config()
    rig = _unpaced_rig(config)
    try:
        calibration = calibrate_camera(rig, laser_nm=488, power_pct=100.0, n_frames=150)
        assert rig.camera.exposure_ms == pytest.approx(10.0)  # settings restored
    finally:
        rig.close()
    return calibration, Sensor(config.sensor, config.sensor_shape)


def test_recovers_offset_gain_and_noise(
    emulated_calibration: tuple[CameraCalibration, Sensor],
) -> None:
    calibration, truth = emulated_calibration
    offset_error = np.abs(calibration.offset_adu / truth.offset_map_adu - 1.0)
    gain_error = np.abs(calibration.gain_adu_per_e / truth.gain_map_adu_per_e - 1.0)
    assert (
        np.median(offset_error) < 0.02
        and np.abs(calibration.offset_adu - truth.offset_map_adu).max() < 1.5
    )
    assert np.median(gain_error) < 0.02, np.median(gain_error)
    assert calibration.median_read_noise_e == pytest.approx(
        float(np.median(truth.read_noise_map_e)), rel=0.1
    )
    assert calibration.median_dark_current_e_per_s == pytest.approx(0.3, abs=0.3)
    assert calibration.linearity_error_pct < 1.0
    adc_limited_e = (65535 - 100) / 2.0
    assert 0.6 * adc_limited_e < calibration.full_well_e < 1.05 * adc_limited_e
    # photon transfer: variance grows linearly with the mean, slope = gain
    curve = calibration.curve
    below = curve.mean_adu < 20000
    slope = np.polyfit(curve.mean_adu[below], curve.variance_adu2[below], 1)[0]
    assert slope == pytest.approx(2.0, rel=0.05)


def test_hot_pixels_are_flagged() -> None:
    config = _config(SensorModel(hot_pixel_fraction=0.01))
    rig = _unpaced_rig(config)
    try:
        # 60 frames: frame differencing keeps ~2/3 of the variance's degrees of freedom, so
        # this gives the per-pixel gain fit the precision 40 plain-variance frames had
        calibration = calibrate_camera(rig, laser_nm=488, power_pct=100.0, n_frames=60)
    finally:
        rig.close()
    hot = Sensor(config.sensor, config.sensor_shape).hot_pixel_mask
    assert hot.sum() >= 3
    assert np.all(calibration.defect_mask[hot])
    assert (calibration.defect_mask & ~hot).sum() <= 0.01 * hot.size


def test_strong_gain_structure_survives_the_fit() -> None:
    """A camera with a 10 % gain spread: the per-pixel map is really measured."""
    model = SensorModel(gain_spread=0.1, hot_pixel_fraction=0.0)
    sensor = Sensor(model, (24, 24))
    rng = NoiseSource(np.random.default_rng(1))
    photons = np.linspace(50, 400, 24 * 24).reshape(24, 24)
    dark = [
        series_moments(np.stack([sensor.expose(0 * photons, t, rng) for _ in range(200)]), t, 65535)
        for t in (1.0, 1000.0)
    ]
    flat = [
        series_moments(
            np.stack([sensor.expose(s * photons, 10.0, rng) for _ in range(300)]), s, 65535
        )
        for s in (1.0, 4.0, 16.0, 40.0)
    ]
    calibration = fit_calibration(dark, flat)
    estimate, true = calibration.gain_adu_per_e.ravel(), sensor.gain_map_adu_per_e.ravel()
    assert np.corrcoef(estimate, true)[0, 1] > 0.8
    constant_map_error = np.median(np.abs(np.median(estimate) / true - 1.0))  # about 6.7 %
    assert np.median(np.abs(estimate / true - 1.0)) < 0.6 * constant_map_error


def test_save_load_round_trip_and_plot(
    emulated_calibration: tuple[CameraCalibration, Sensor], tmp_path: Path
) -> None:
    calibration, _ = emulated_calibration
    path = calibration.save(tmp_path / "cal.h5")
    loaded = CameraCalibration.load(path)
    for name in ("offset_adu", "gain_adu_per_e", "read_noise_e", "defect_mask"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(calibration, name))
    assert loaded.full_well_e == calibration.full_well_e
    assert loaded.metadata["laser_nm"] == "488"
    np.testing.assert_allclose(loaded.to_electrons(calibration.offset_adu), 0.0, atol=1e-5)
    png = plot_photon_transfer(loaded, tmp_path / "ptc.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_corrupt_files_name_file_and_field(
    emulated_calibration: tuple[CameraCalibration, Sensor], tmp_path: Path
) -> None:
    calibration, _ = emulated_calibration
    with pytest.raises(CalibrationFileError, match=r"absent\.h5.*not found"):
        CameraCalibration.load(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(CalibrationFileError, match=r"junk\.h5.*not a readable HDF5"):
        CameraCalibration.load(junk)
    for field, damage in (("gain_adu_per_e", "delete"), ("read_noise_e", "reshape")):
        path = calibration.save(tmp_path / f"{field}.h5")
        with h5py.File(path, "a") as h5:
            data = np.asarray(h5[field])
            del h5[field]
            if damage == "reshape":
                h5.create_dataset(field, data=data[:-1])
        with pytest.raises(CalibrationFileError, match=rf"{field}\.h5.*'{field}'"):
            CameraCalibration.load(path)
    path = calibration.save(tmp_path / "zero_gain.h5")
    with h5py.File(path, "a") as h5:
        h5["gain_adu_per_e"][0, 0] = 0.0
    with pytest.raises(CalibrationFileError, match="gain_adu_per_e"):
        CameraCalibration.load(path)


def test_fit_needs_two_levels() -> None:
    frames = np.full((3, 4, 4), 100, dtype=np.uint16)
    one = [series_moments(frames, 1.0, 65535)]
    with pytest.raises(ValueError, match=">= 2 dark"):
        fit_calibration(one, one)
    with pytest.raises(ValueError, match="N >= 2"):
        series_moments(frames[:1], 1.0, 65535)


def _drifting_series(
    sensor: Sensor, noise: NoiseSource, exposures_ms: list[float], n_frames: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Flat series of a specimen that bleaches (per-pixel rates, 15-45 % over a series) under
    a laser that drifts (+10 % ramp) and flickers (1 % rms per frame)."""
    shape = sensor.sensor_shape
    pattern = 0.5 + rng.random(shape)  # uneven specimen, photons per ms at t = 0
    bleach = rng.uniform(0.15, 0.45, shape)
    series = []
    for exposure in exposures_ms:
        frames = []
        for k in range(n_frames):
            s = k / (n_frames - 1)
            laser = (1.0 + 0.10 * s) * (1.0 + 0.01 * rng.standard_normal())
            photons = pattern * exposure * laser * np.exp(-bleach * s)
            frames.append(sensor.expose(photons.astype(np.float32), exposure, noise))
        series.append(np.stack(frames))
    return series


def test_gain_survives_bleaching_and_laser_drift() -> None:
    """EMVA frame-pair differencing: drift and flicker must not leak into the variance.

    The plain variance about the series mean is run on the same frames and must be biased
    (it counts the drifting mean as noise), so this test can tell the two apart.
    """
    model = SensorModel(gain_spread=0.0, hot_pixel_fraction=0.0)
    sensor = Sensor(model, (24, 24))
    noise = NoiseSource(np.random.default_rng(5))
    rng = np.random.default_rng(6)
    exposures = [5.0, 20.0, 60.0, 150.0, 400.0, 1000.0]
    dark = [
        series_moments(np.stack([sensor.expose(np.zeros((24, 24), np.float32), t, noise)
                                 for _ in range(60)]), t, 65535.0)
        for t in (1.0, 100.0)
    ]
    flats = _drifting_series(sensor, noise, exposures, 80, rng)
    offset = dark[0].mean_adu
    robust = fit_calibration(
        dark, [series_moments(f, t, 65535.0, dark_level_adu=offset)
               for f, t in zip(flats, exposures, strict=True)],
    )
    assert robust.median_gain_adu_per_e == pytest.approx(model.gain_adu_per_e, rel=0.03)
    plain = []
    for frames, exposure in zip(flats, exposures, strict=True):
        moments = series_moments(frames, exposure, 65535.0)
        moments.variance_adu2 = frames.astype(np.float64).var(axis=0, ddof=1)
        plain.append(moments)
    biased = fit_calibration(dark, plain)
    assert biased.median_gain_adu_per_e > 1.2 * model.gain_adu_per_e
