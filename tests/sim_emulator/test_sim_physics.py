"""Measure the physics in generated raw data and compare with the configuration.

Pattern wave vectors, phase steps and modulation depth are estimated from raw SIM frames the
way a reconstruction would (Fourier peaks of the phase-separated bands), not read back from
the configuration.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from calibration.photon_count import average_photon_count
from sim_emulator.microscope import EmulatorConfig, Microscope
from sim_emulator.optics import frequency_grid_cycles_per_nm, otf_of_frequency

SIZE = 128
PHASE_SIZE = 256  # dense f-actin on 256 px: sample spectrum at 2k is < 1 % of the total flux


def _bright_set(**patterns: float) -> tuple[Microscope, np.ndarray]:
    """Nine SIM frames followed by one wide-field frame of the same sample state."""
    config = EmulatorConfig(
        structure="f-actin", size_px=PHASE_SIZE, photon_count_e=3000.0, seed=3, patterns=patterns
    )
    microscope = Microscope(config)
    raw = microscope.render_set(0.0).astype(np.float64)
    widefield = microscope.render_frame(0.0, None, 488.0, 100.0, 10.0).astype(np.float64)
    return microscope, np.concatenate([raw, widefield[None]]) - microscope.sensor.offset_map_adu


@pytest.fixture(scope="module")
def bright_sim() -> tuple[Microscope, np.ndarray]:
    """A bright linear-SIM set of dense F-actin (offset removed)."""
    return _bright_set()


def _first_order_band(frames: np.ndarray) -> np.ndarray:
    """The phase-dependent part of each frame's spectrum (zero-order band removed)."""
    spectra = scipy.fft.fft2(frames)
    return spectra - spectra.mean(axis=0)


def test_pattern_peaks_within_one_frequency_pixel_and_60_degrees(bright_sim) -> None:
    microscope, raw = bright_sim
    pixel = microscope.config.optics.pixel_size_nm
    expected = microscope.patterns.wave_vectors_cycles_per_nm()
    ky, kx = frequency_grid_cycles_per_nm((PHASE_SIZE, PHASE_SIZE), pixel)
    k = np.hypot(ky, kx)
    cutoff = microscope.config.optics.cutoff_cycles_per_nm
    annulus = (k > 0.75 * cutoff) & (k < 0.96 * cutoff)
    transfer = otf_of_frequency(k, microscope.config.optics)
    df = 1.0 / (PHASE_SIZE * pixel)
    measured_angles = []
    for orientation in range(3):
        band = _first_order_band(raw[3 * orientation : 3 * orientation + 3])
        # OTF-compensated first-order band: c_1 S(f - k), peaked at f = k by the total flux S(0)
        power = np.where(annulus, np.abs(band).sum(axis=0) / np.maximum(transfer, 1e-6), 0.0)
        iy, ix = np.unravel_index(np.argmax(power), power.shape)
        peak = np.array([kx[0, ix], ky[iy, 0]])
        target = expected[orientation]
        distance = min(np.hypot(*(peak - target)), np.hypot(*(peak + target)))
        assert distance <= 1.0 * df * np.sqrt(2), (orientation, peak, target)
        if np.hypot(*(peak - target)) > np.hypot(*(peak + target)):
            peak = -peak
        measured_angles.append(np.degrees(np.arctan2(peak[1], peak[0])))
    steps = np.diff(measured_angles)
    # a 1-pixel peak error at |k| ~ 18 px is ~3 degrees
    assert steps == pytest.approx([60.0, 60.0], abs=4.0)


def _dtft(images: np.ndarray, k_xy: np.ndarray, pixel_nm: float) -> np.ndarray:
    """Fourier transform of each image at the (non-integer) frequency k (cycles/nm)."""
    ny, nx = images.shape[-2:]
    y = np.arange(ny)[:, None] * pixel_nm
    x = np.arange(nx)[None, :] * pixel_nm
    kernel = np.exp(-2j * np.pi * (k_xy[0] * x + k_xy[1] * y))
    return (images * kernel).sum(axis=(-2, -1))


def _measure_phases_and_modulation(
    microscope: Microscope, raw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per orientation: measured absolute phases (rad) and modulation depth.

    F_p(k) - F_wf(k) = OTF(k) (m / 2) [exp(i phi_p) S(0) + exp(-i phi_p) S(2k)]: the wide-field
    frame removes the zero-order band (up to 1 % laser flicker between the frames); S(2k) is
    small for a dense sample. S(0) is the in-focus flux: the wide-field flux without the
    unmodulated out-of-focus haze (a fraction ``background_fraction`` of it at zero frequency).
    """
    optics = microscope.config.optics
    pixel = optics.pixel_size_nm
    vectors = microscope.patterns.wave_vectors_cycles_per_nm()
    widefield = raw[-1]
    flux = widefield.sum() / (1.0 + optics.background_fraction)
    phases, depths = [], []
    for orientation in range(3):
        frames = raw[3 * orientation : 3 * orientation + 3]
        values = _dtft(frames - widefield, vectors[orientation], pixel)
        phases.append(np.angle(values))
        # |F_p(k)| = (m / 2) * OTF(k) * pixel sinc(k) * total flux
        kx, ky = vectors[orientation]
        transfer = otf_of_frequency(np.hypot(kx, ky), optics) * (
            np.sinc(kx * pixel) * np.sinc(ky * pixel)
        )
        depths.append(2 * np.abs(values).mean() / (transfer * flux))
    return np.array(phases), np.array(depths)


def _wrapped(angles: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * angles))


def test_phase_steps_and_modulation_depth(bright_sim) -> None:
    microscope, raw = bright_sim
    phases, depths = _measure_phases_and_modulation(microscope, raw)
    configured = microscope.patterns.phases_rad()
    steps = _wrapped(np.diff(phases, axis=1))
    assert steps.ravel() == pytest.approx(_wrapped(np.diff(configured, axis=1)).ravel(), abs=0.05)
    assert np.abs(_wrapped(phases - configured)).max() < 0.05
    # each orientation has its own modulation (seeded spread around 0.85)
    truth = microscope.patterns.modulations()
    assert np.ptp(truth) > 0.02
    assert depths == pytest.approx(truth, rel=0.15)
    assert depths.mean() == pytest.approx(truth.mean(), rel=0.08)


def test_injected_phase_errors_and_lower_modulation_show_in_the_data() -> None:
    microscope, raw = _bright_set(phase_error_rad=0.3, modulation=0.5)
    phases, depths = _measure_phases_and_modulation(microscope, raw)
    configured = microscope.patterns.phases_rad()
    assert np.abs(_wrapped(phases - configured)).max() < 0.05
    nominal = 2 * np.pi * np.arange(3) / 3
    assert np.abs(_wrapped(configured - nominal)).max() > 0.1  # the errors are really there
    assert depths.mean() == pytest.approx(microscope.patterns.modulations().mean(), rel=0.1)
    assert microscope.patterns.modulations().mean() == pytest.approx(0.5, rel=0.1)


def test_widefield_has_no_power_above_the_cutoff_beyond_noise() -> None:
    microscope = Microscope(EmulatorConfig(structure="er", size_px=SIZE, photon_count_e=2000.0))
    offset = microscope.sensor.offset_map_adu
    gain = microscope.sensor.gain_map_adu_per_e  # flat-field the gain map, as a calibrated rig
    a = (microscope.render_frame(0.0, None, 488, 100.0, 10.0) - offset) / gain
    b = (microscope.render_frame(0.0, None, 488, 100.0, 10.0) - offset) / gain
    pixel = microscope.config.optics.pixel_size_nm
    ky, kx = frequency_grid_cycles_per_nm((SIZE, SIZE), pixel)
    k = np.hypot(ky, kx)
    beyond = k > 1.02 * microscope.config.optics.cutoff_cycles_per_nm
    inside = (k > 0) & (k < 0.5 * microscope.config.optics.cutoff_cycles_per_nm)
    signal = np.abs(np.fft.fft2(a)) ** 2
    noise_floor = np.abs(np.fft.fft2((a - b) / np.sqrt(2))) ** 2
    ratio = signal[beyond].mean() / noise_floor[beyond].mean()
    assert ratio == pytest.approx(1.0, abs=0.06)
    assert signal[inside].mean() > 20 * noise_floor[inside].mean()
    # and the noiseless image is exactly band-limited
    clean = microscope.expected_photons(0.0, [None], 488, 100.0, 10.0)[0]
    clean_power = np.abs(np.fft.fft2(clean)) ** 2
    assert clean_power[beyond].sum() < 1e-8 * clean_power.sum()


def test_fourier_route_equals_direct_rendering() -> None:
    microscope = Microscope(EmulatorConfig(structure="microtubules", size_px=48, seed=5))
    formation = microscope.formation
    spectra = formation.spectra(microscope.sample.points(0.0))
    fast = formation.frames(spectra, [0, 4, 8])
    fy, fx = formation.fine_shape
    y = np.arange(fy)[:, None] * formation.fine_pixel_nm[0]
    x = np.arange(fx)[None, :] * formation.fine_pixel_nm[1]
    rows = np.fft.fftfreq(48, 1 / 48).astype(int)
    transfer = np.zeros((48, 48))
    transfer[:, : formation.transfer.shape[1]] = formation.transfer
    transfer[:, 25:] = formation.transfer[:, 1:24][:, ::-1]  # even in kx
    haze = np.zeros((48, 48))  # the unmodulated out-of-focus haze's transfer
    haze[:, : formation.transfer.shape[1]] = formation.base_transfer - formation.transfer
    haze[:, 25:] = haze[:, 1:24][:, ::-1]
    unpatterned = np.fft.fft2(spectra.fine_image)[np.ix_(rows, rows)]
    for i, pattern in enumerate([0, 4, 8]):
        o, p = microscope.patterns.orientation_phase(pattern)
        kx, ky = microscope.patterns.wave_vectors_cycles_per_nm()[o]
        phi = microscope.patterns.phases_rad()[o, p]
        m = microscope.patterns.modulations()[o]
        intensity = 1 + m * np.cos(2 * np.pi * (kx * x + ky * y) + phi)
        spectrum = np.fft.fft2(spectra.fine_image * intensity)[np.ix_(rows, rows)]
        direct = np.maximum(np.fft.ifft2(spectrum * transfer + unpatterned * haze).real, 0)
        assert np.abs(direct - fast[i]).max() < 1e-4 * direct.max()


@pytest.mark.parametrize("photons", [30.0, 300.0])
def test_average_photon_count_matches_injected(photons: float) -> None:
    microscope = Microscope(
        EmulatorConfig(structure="f-actin", size_px=SIZE, photon_count_e=photons)
    )
    raw = microscope.render_set(0.0)
    measured = average_photon_count(
        raw.astype(np.float32).mean(axis=0),
        microscope.sensor.offset_map_adu,
        microscope.config.sensor.electrons_per_adu,
    )
    assert measured == pytest.approx(photons, rel=0.10)


def test_photon_count_scales_with_exposure_and_power() -> None:
    microscope = Microscope(EmulatorConfig(structure="er", size_px=96, photon_count_e=100.0))
    ppc = microscope.config.sensor.electrons_per_adu
    offset = microscope.sensor.offset_map_adu

    def measure(power_pct: float, exposure_ms: float) -> float:
        frame = microscope.render_frame(0.0, None, 488.0, power_pct, exposure_ms)
        return float(average_photon_count(frame, offset, ppc))

    reference = measure(100.0, 10.0)
    assert reference == pytest.approx(100.0, rel=0.1)
    assert measure(100.0, 30.0) == pytest.approx(3 * reference, rel=0.1)
    assert measure(25.0, 10.0) == pytest.approx(0.25 * reference, rel=0.15)


def test_same_seed_same_data_different_seed_different_data() -> None:
    def run(seed: int) -> np.ndarray:
        return Microscope(EmulatorConfig(size_px=48, seed=seed)).render_set(0.5)

    first, again, other = run(7), run(7), run(8)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.corrcoef(first[0].ravel(), other[0].ravel())[0, 1] < 0.5


def test_wrong_laser_line_renders_offset_and_noise_only() -> None:
    config = EmulatorConfig(
        structure="mix",
        mix_structures=("ccps", "microtubules", "er"),
        labels_nm={"ccps": 560.0},
        size_px=64,
        photon_count_e=500.0,
    )
    microscope = Microscope(config)
    offset = microscope.sensor.offset_map_adu
    dark = microscope.render_frame(0.0, 0, 640.0, 100.0, 10.0).astype(np.float64) - offset
    assert abs(dark.mean()) < 1.0
    green = microscope.render_frame(0.0, None, 560.0, 100.0, 10.0).astype(np.float64) - offset
    parts = microscope.ground_truth_components(0.0)
    ccps_wf = parts[0].reshape(64, 2, 64, 2).sum(axis=(1, 3))
    er_wf = parts[2].reshape(64, 2, 64, 2).sum(axis=(1, 3))
    assert np.corrcoef(green.ravel(), ccps_wf.ravel())[0, 1] > 0.6
    assert np.corrcoef(green.ravel(), er_wf.ravel())[0, 1] < 0.3
    off = microscope.render_frame(0.0, None, 560.0, 0.0, 10.0).astype(np.float64) - offset
    assert abs(off.mean()) < 1.0


def test_ground_truth_is_super_resolved_and_flux_preserving() -> None:
    microscope = Microscope(EmulatorConfig(structure="microtubules", size_px=64))
    truth = microscope.ground_truth(0.0)
    assert truth.wf.shape == (64, 64) and truth.sr.shape == (128, 128)
    # the SR target is the in-focus sample; the wide-field also carries the out-of-focus haze
    haze = microscope.config.optics.background_fraction
    assert truth.sr.sum() == pytest.approx(truth.wf.sum() / (1.0 + haze), rel=1e-3)
    pixel = microscope.config.optics.pixel_size_nm / 2
    ky, kx = frequency_grid_cycles_per_nm((128, 128), pixel)
    k = np.hypot(ky, kx)
    cutoff = microscope.config.optics.cutoff_cycles_per_nm
    extended = microscope.formation.sr_cutoff_cycles_per_nm()
    power = np.abs(np.fft.fft2(truth.sr)) ** 2
    assert power[(k > 1.2 * cutoff) & (k < 0.9 * extended)].sum() > 1e-4 * power.sum()
    assert power[k > 1.01 * extended].sum() < 1e-8 * power.sum()
    nonlinear = Microscope(EmulatorConfig(size_px=32, patterns={"mode": "nlsim"}))
    assert nonlinear.render_set(0.0).shape == (25, 32, 32)
    assert nonlinear.ground_truth(0.0).sr.shape == (96, 96)
