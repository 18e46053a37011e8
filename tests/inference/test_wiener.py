"""Generalised Wiener SIM: emulator ground truth, the real microtubule stack, torch path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from calibration.edge_taper import edge_taper
from calibration.otf import MeasuredOtf, OtfModel
from inference.evaluation import decorrelation_resolution, low_pass_pearson, score
from inference.filament_width import filament_fwhm_nm, find_filament_profiles
from inference.stack_io import load_raw_stack
from inference.wiener import WienerConfig, WienerSim
from sim_emulator.microscope import EmulatorConfig, Microscope

REAL_SIM = Path(__file__).resolve().parents[2].parent / "shared" / "real_sim"


@pytest.fixture(scope="module")
def real_sim() -> Path:
    """The shared real SIM folder (../shared/real_sim); skip when it is absent."""
    if not REAL_SIM.is_dir():
        pytest.skip(f"shared real SIM data not found at {REAL_SIM}")
    return REAL_SIM


@pytest.fixture(scope="module")
def emulated() -> tuple[np.ndarray, np.ndarray, OtfModel]:
    config = EmulatorConfig(size_px=128, photon_count_e=100.0, seed=5, structure="microtubules")
    microscope = Microscope(config)
    otf = OtfModel(
        na=config.optics.na, emission_nm=config.optics.emission_nm, pixel_integration=True
    )
    return microscope.render_set(0.0), microscope.ground_truth(0.0).sr, otf


@pytest.fixture(scope="module")
def wiener(emulated: tuple[np.ndarray, np.ndarray, OtfModel]) -> WienerSim:
    raw, _, otf = emulated
    return WienerSim.from_raw(raw, 62.6, otf, WienerConfig(background_adu=100.0))


def test_beats_wide_field_against_emulator_ground_truth(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    raw, truth, _ = emulated
    sr = wiener.reconstruct(raw)
    assert sr.shape == (256, 256) and sr.dtype == np.float32 and sr.min() >= 0
    wide_field = ndimage.zoom(wiener.wide_field(raw), 2, order=3)
    # whole field: the periodic + smooth decomposition leaves no dark rim to cut away
    sr_scores = score(sr, truth)
    wf_scores = score(wide_field, truth)
    assert sr_scores.nrmse < 0.5 * wf_scores.nrmse
    assert sr_scores.ssim > wf_scores.ssim + 0.1
    border = np.ones(sr.shape, bool)
    border[32:-32, 32:-32] = False
    assert sr[border].mean() > 0.7 * truth[border].mean() / truth.mean() * sr.mean()
    sr_res = decorrelation_resolution(sr, 31.3)
    wf_res = decorrelation_resolution(wiener.wide_field(raw), 62.6)
    assert sr_res < wf_res / 1.5


def test_reconstruction_is_linear_and_repeatable(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    raw, _, otf = emulated
    linear = WienerSim(raw.shape[1:], wiener.parameters, otf, WienerConfig(clip_negative=False))
    frames = raw.astype(np.float32)
    once = linear.reconstruct(frames)
    np.testing.assert_array_equal(once, linear.reconstruct(frames))
    np.testing.assert_allclose(linear.reconstruct(3 * frames), 3 * once, rtol=1e-4, atol=1e-2)
    # intensity scale is kept: the SR mean equals the wide-field mean (whole field)
    assert once.mean() == pytest.approx(frames.mean(), rel=0.03)
    # taper mode: the mean is that of the edge-tapered wide-field (the dark rim)
    taper = WienerConfig(clip_negative=False, edge_mode="taper")
    tapered_sr = WienerSim(raw.shape[1:], wiener.parameters, otf, taper).reconstruct(frames)
    tapered = frames.mean(axis=0) * edge_taper(frames.shape[1:], taper.edge_taper_px)
    assert tapered_sr.mean() == pytest.approx(tapered.mean(), rel=0.03)


def test_torch_path_matches_numpy(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    raw, _, _ = emulated
    expected = wiener.reconstruct(raw)
    got = wiener.reconstruct_torch(torch.from_numpy(raw.astype(np.float32)))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-4 * expected.max())
    taper = WienerSim(raw.shape[1:], wiener.parameters, wiener.otf,
                      WienerConfig(background_adu=100.0, edge_mode="taper"))
    np.testing.assert_allclose(
        taper.reconstruct_torch(torch.from_numpy(raw.astype(np.float32))).numpy(),
        taper.reconstruct(raw), rtol=0, atol=1e-4 * expected.max(),
    )


@pytest.mark.gpu
def test_torch_cuda_matches_numpy(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    raw, _, _ = emulated
    expected = wiener.reconstruct(raw)
    got = wiener.reconstruct_torch(torch.from_numpy(raw.astype(np.float32)).cuda())
    np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-3 * expected.max())


def test_wrong_input_shapes_are_named(wiener: WienerSim) -> None:
    with pytest.raises(ValueError, match=r"\(9, 128, 128\)"):
        wiener.reconstruct(np.zeros((9, 64, 64)))
    with pytest.raises(ValueError, match="even"):
        WienerSim((127, 128), wiener.parameters, wiener.otf)


def test_real_microtubule_stack_filament_width(dlsr_assets: Path, real_sim: Path) -> None:
    """Done-when: with the rig's measured OTF, median filament FWHM >= 1.6x narrower than
    wide-field, and the low-pass (below the wide-field cutoff) agrees with wide-field over
    the whole field (PCC >= 0.85)."""
    stack = load_raw_stack(dlsr_assets / "rDL-SIM_Microtubules_MT_raw9.mrc")
    raw = stack.frames[0]
    assert stack.pixel_size_nm is not None
    otf = MeasuredOtf.from_mrc(real_sim / "rdl_sim_otf" / "TIRF488_cam1_0_z30_OTF2d.mrc")
    background = float(np.percentile(raw, 0.5))
    sim = WienerSim.from_raw(raw, stack.pixel_size_nm, otf, WienerConfig(background_adu=background))
    # TIRF-SIM: three orientations 60 degrees apart, 180 nm = 488 nm / (2 x 1.35)
    angles = np.degrees(np.arctan2(*sim.parameters.wave_vectors_cycles_per_px().T[::-1])) % 180
    np.testing.assert_allclose(np.diff(np.sort(angles)), 60.0, atol=2.0)
    periods = stack.pixel_size_nm / np.hypot(*sim.parameters.wave_vectors_cycles_per_px().T)
    np.testing.assert_allclose(periods, 488.0 / 2.7, rtol=0.01)
    assert np.all(sim.parameters.modulations() <= 1.0)  # the usable parameters never exceed 1
    sr = sim.reconstruct(raw)
    wide_field = sim.wide_field(raw)
    profiles = find_filament_profiles(wide_field, stack.pixel_size_nm)
    wf_width = filament_fwhm_nm(wide_field, stack.pixel_size_nm, profiles)
    sr_width = filament_fwhm_nm(sr, sim.output_pixel_size_nm, profiles)
    assert wf_width.n_valid >= 100 and sr_width.n_valid >= 100
    assert wf_width.median_nm / sr_width.median_nm >= 1.6, (wf_width.median_nm, sr_width.median_nm)
    assert low_pass_pearson(sr, wide_field, otf.cutoff_cycles_per_nm, stack.pixel_size_nm) >= 0.85


def test_notch_removes_each_bands_dc(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    raw, _, otf = emulated
    plain = WienerConfig(clip_negative=False, background_adu=100.0)
    notched = plain.model_copy(update={"notch_strength": 1.0})
    shape = raw.shape[1:]
    without = WienerSim(shape, wiener.parameters, otf, plain).reconstruct(raw)
    with_notch = WienerSim(shape, wiener.parameters, otf, notched).reconstruct(raw)
    # the mean (zero frequency) now comes only through the side bands, at OTF(p) ~ 0.05
    assert abs(with_notch.mean()) < 0.2 * without.mean()
    assert with_notch.std() > 0.2 * without.std()  # structure (high frequencies) stays


def test_config_from_toml_names_bad_fields(tmp_path: Path) -> None:
    good = tmp_path / "wiener.toml"
    good.write_text("[wiener]\nwiener_parameter = 0.2\nnotch_strength = 0.5\n")
    config = WienerConfig.from_toml(good)
    assert (config.wiener_parameter, config.notch_strength) == (0.2, 0.5)
    bad = tmp_path / "bad.toml"
    bad.write_text("wiener_parameter = -1\nsharpness = 3\n")
    problems = r"bad\.toml[\s\S]*'wiener_parameter' = -1[\s\S]*sharpness"
    with pytest.raises(ValueError, match=problems):
        WienerConfig.from_toml(bad)


def test_series_re_estimates_when_the_calibrated_pattern_stops_fitting(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    """A calibration whose pattern is rotated away from the data: phases do not fit, the
    frames are flagged and after two sets the pattern is re-estimated and adopted."""
    from inference.wiener import WienerSeries

    raw, _, otf = emulated
    truth = wiener.parameters
    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    wrong = truth.model_copy(update={"orientations": [
        o.model_copy(update={"wave_vector_cycles_per_px": tuple(
            float(v) for v in rotation @ np.array(o.wave_vector_cycles_per_px))})
        for o in truth.orientations]})
    series = WienerSeries(raw.shape[1:], 62.6, otf, WienerConfig(background_adu=100.0), wrong)
    fits = [series.reconstruct(raw)[1] for _ in range(3)]
    assert [f.source for f in fits] == ["kept", "re-estimated", "refined"]
    assert not fits[0].reliable and fits[1].reliable and fits[2].reliable
    np.testing.assert_allclose(np.abs(fits[2].parameters.wave_vectors_cycles_per_px()),
                               np.abs(truth.wave_vectors_cycles_per_px()), atol=1e-3)
