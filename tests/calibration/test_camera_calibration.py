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

STATIC = Dynamics(
    drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0, bleach_rate_per_s=0.0
)


def _config(sensor: SensorModel | None = None) -> EmulatorConfig:
    """A still, hazy ER specimen lights every pixel: a stand-in for a fluorescent slide."""
    return EmulatorConfig(
        size_px=32,
        structure="er",
        photons=300.0,
        optics=Optics(background_fraction=1.0),
        dynamics=STATIC,
        sensor=sensor or SensorModel(),
    )


@pytest.fixture(scope="module")
def emulated_calibration() -> tuple[CameraCalibration, Sensor]:
    config = _config()
    rig = emulated_rig(config)
    try:
        calibration = calibrate_camera(rig, laser_nm=488, n_frames=150)
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
    rig = emulated_rig(config)
    try:
        calibration = calibrate_camera(rig, laser_nm=488, n_frames=40)
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
