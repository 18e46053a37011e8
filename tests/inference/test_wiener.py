"""Generalised Wiener SIM: emulator ground truth, the real microtubule stack, torch path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from calibration.edge_taper import edge_taper
from calibration.otf import OtfModel
from inference.evaluation import decorrelation_resolution, score
from inference.stack_io import load_raw_stack
from inference.wiener import WienerConfig, WienerSim
from sim_emulator.microscope import EmulatorConfig, Microscope


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
    inside = (slice(40, -40), slice(40, -40))  # the edge taper (16 raw px) fades the border
    sr_scores = score(sr[inside], truth[inside])
    wf_scores = score(wide_field[inside], truth[inside])
    assert sr_scores.nrmse < 0.5 * wf_scores.nrmse
    assert sr_scores.ssim > wf_scores.ssim + 0.1
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
    # intensity scale is kept: the SR mean equals the edge-tapered wide-field mean
    tapered = frames.mean(axis=0) * edge_taper(frames.shape[1:], linear.config.edge_taper_px)
    assert once.mean() == pytest.approx(tapered.mean(), rel=0.03)


def test_torch_path_matches_numpy(
    emulated: tuple[np.ndarray, np.ndarray, OtfModel], wiener: WienerSim
) -> None:
    raw, _, _ = emulated
    expected = wiener.reconstruct(raw)
    got = wiener.reconstruct_torch(torch.from_numpy(raw.astype(np.float32)))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-4 * expected.max())


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


def test_real_microtubule_stack_resolution(dlsr_assets: Path) -> None:
    """Done-when: decorrelation resolution >= 1.6x finer than the wide-field mean."""
    stack = load_raw_stack(dlsr_assets / "rDL-SIM_Microtubules_MT_raw9.mrc")
    raw = stack.frames[0]
    assert stack.na is not None and stack.pixel_size_nm is not None
    otf = OtfModel(na=stack.na, emission_nm=525.0)
    background = float(np.percentile(raw, 0.5))
    sim = WienerSim.from_raw(raw, stack.pixel_size_nm, otf, WienerConfig(background_adu=background))
    # TIRF-SIM: three orientations 60 degrees apart, |p| near the detection cutoff
    angles = np.degrees(np.arctan2(*sim.parameters.wave_vectors_cycles_per_px().T[::-1])) % 180
    steps = np.diff(np.sort(angles))
    np.testing.assert_allclose(steps, 60.0, atol=2.0)
    sr = sim.reconstruct(raw)
    wf_res = float(decorrelation_resolution(sim.wide_field(raw), stack.pixel_size_nm))
    sr_res = float(decorrelation_resolution(sr, sim.output_pixel_size_nm))
    assert wf_res / sr_res >= 1.6, (wf_res, sr_res)


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
