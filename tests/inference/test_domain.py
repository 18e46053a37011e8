"""Domain guard: emulator sets inside the bundled network's domain, real and altered sets
outside with named reasons; --model auto picks the network only where it is trustworthy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from calibration.otf import OtfModel
from calibration.photon_count import average_photon_count
from calibration.sim_parameters import estimate_sim_parameters
from inference.auto import AutoReconstructor
from inference.domain import ModelDomain, Range, check_domain, observe, pattern_geometry
from inference.model_file import load_model
from inference.reconstruction import make_reconstructor
from sim_emulator.illumination import SimPatterns
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.training_pairs import TrainingPair, make_training_pair


@dataclass(frozen=True)
class EmulatedCamera:
    """Calibration maps of the emulated camera (what `livesim calibrate camera` measures)."""

    offset_adu: np.ndarray
    gain_adu_per_e: np.ndarray
    defect_mask: None = None


def camera_of(pair: TrainingPair) -> EmulatedCamera:
    gain = np.full(pair.offset_adu.shape, 1.0 / pair.electrons_per_adu, dtype=np.float32)
    return EmulatedCamera(pair.offset_adu.astype(np.float32), gain)


def observation_of(pair: TrainingPair, pixel_size_nm: float = 62.6):
    frames = pair.raw_electrons()
    parameters = estimate_sim_parameters(frames, pixel_size_nm, otf=OtfModel(), offset_adu=0.0)
    count = float(np.mean(average_photon_count(frames, 0.0, 1.0)))
    return observe(frames, 1.35, 525.0, pixel_size_nm, parameters, count), parameters


@pytest.fixture(scope="module")
def domain() -> ModelDomain:
    recorded = load_model("dfcan-sim").info.domain
    assert recorded is not None, "the bundled dfcan-sim must record its training domain"
    return recorded


# the bundled network was trained on the realistic emulator (haze, aberrations, pattern errors)
CLEAN = EmulatorConfig().without_realism()


def test_realistic_emulator_set_is_inside_the_bundled_domain(domain: ModelDomain) -> None:
    observation, parameters = observation_of(
        make_training_pair("microtubules", photon_count_e=60.0, size_px=96, seed=5)
    )
    periods, _ = pattern_geometry(parameters)
    assert periods == pytest.approx([216.0] * 3, rel=0.01)
    assert check_domain(domain, observation) == []


def test_haze_free_emulator_set_is_outside_the_bundled_domain(domain: ModelDomain) -> None:
    """Trained with haze from 0.3x the in-focus light up: a field with none is named."""
    observation, _ = observation_of(
        make_training_pair("microtubules", photon_count_e=60.0, size_px=96, seed=5, base=CLEAN)
    )
    problems = check_domain(domain, observation)
    assert [p for p in problems if p.startswith("background fraction")] == problems != []


def test_other_pattern_geometry_is_named(domain: ModelDomain) -> None:
    base = EmulatorConfig(patterns=SimPatterns(period_nm=320.0))
    pair = make_training_pair("microtubules", photon_count_e=60.0, size_px=96, seed=5, base=base)
    problems = check_domain(domain, observation_of(pair)[0])
    assert sum(p.startswith("pattern period") and "outside the trained [165, 272]" in p
               for p in problems) == 3


def test_photon_count_and_background_outside_are_named(domain: ModelDomain) -> None:
    observation, _ = observation_of(
        make_training_pair("er", photon_count_e=60.0, size_px=96, seed=5)
    )
    dim = observation.model_copy(update={"photon_count_e": 3.0})
    assert "photon count 3 e- outside the trained [5, 250] e-" in check_domain(domain, dim)
    assert observation.photon_count_e is not None
    hazy = observation.model_copy(update={"background_e": 0.9 * observation.photon_count_e})
    (problem,) = check_domain(domain, hazy)
    assert problem == "background fraction 0.9 outside the trained [0.2, 0.65]"


def test_orientation_distance_wraps_at_180_degrees() -> None:
    domain = ModelDomain(
        na=Range(low=1.0, high=1.5), emission_nm=Range(low=400, high=700),
        pixel_size_nm=Range(low=50, high=80), orientations_deg=[178.0],
        photon_count_e=Range(low=0, high=1e6), background_fraction=Range(low=0, high=1),
    )
    inside = observe(np.ones((9, 16, 16)), 1.2, 500, 60)
    inside = inside.model_copy(update={"orientations_deg": [1.0]})
    assert check_domain(domain, inside) == []
    outside = inside.model_copy(update={"orientations_deg": [10.0]})
    assert check_domain(domain, outside) == [
        "orientation 0 at 10.0 deg is 12.0 deg from the trained orientations [178.0]"
    ]


def test_real_tirf_sim_stack_is_inside_the_bundled_domain(
    domain: ModelDomain, dlsr_assets: Path
) -> None:
    """The real microtubule set, each orientation in e- from its own noise (it was stretched
    per orientation), lies inside the retrained network's domain: 180 nm stripes, background
    about 0.35 of the photon count, ~12 e-."""
    from calibration.stack_statistics import electrons_per_orientation
    from inference.stack_io import load_raw_stack

    stack = load_raw_stack(dlsr_assets / "rDL-SIM_Microtubules_MT_raw9.mrc")
    frames, _, _ = electrons_per_orientation(
        stack.time_point(0), 2 * 1.49 / 525.0 * 62.6
    )
    parameters = estimate_sim_parameters(frames, 62.6, otf=OtfModel(na=1.49), offset_adu=0.0)
    count = float(np.mean(average_photon_count(frames, 0.0, 1.0)))
    observation = observe(frames, 1.49, 525.0, 62.6, parameters, count)
    assert pattern_geometry(parameters)[0] == pytest.approx([180.0] * 3, rel=0.01)
    assert observation.background_fraction == pytest.approx(0.35, abs=0.05)
    assert check_domain(domain, observation) == []


def test_auto_uses_the_network_only_where_it_beats_wiener() -> None:
    dim = make_training_pair("microtubules", photon_count_e=20.0, size_px=64, seed=7)
    bright = make_training_pair("microtubules", photon_count_e=200.0, size_px=64, seed=7)
    too_dim = make_training_pair("microtubules", photon_count_e=2.5, size_px=64, seed=7)
    auto = make_reconstructor("auto", calibration=camera_of(dim), device="cpu")
    assert isinstance(auto, AutoReconstructor)
    # the card's crossover is the assessment's; 40 e- here exercises the rule on both sides
    assert auto.domain is not None and auto.domain.better_than_wiener_below_e is not None
    auto.domain = auto.domain.model_copy(update={"better_than_wiener_below_e": 40.0})
    first = auto.reconstruct(dim.raw)
    assert first.model_name == "dfcan-sim"
    assert first.flags[-1].startswith("auto:dfcan-sim: inside the training domain")
    second = auto.reconstruct(bright.raw)
    assert second.model_name == "wiener"
    assert "above 40 e-" in second.flags[-1]
    third = auto.reconstruct(too_dim.raw)
    assert third.model_name == "wiener"
    assert "outside the trained [5, 250] e-" in third.flags[-1]
    assert second.image.shape == first.image.shape == (128, 128)


def test_auto_converts_a_set_to_electrons_once_and_gives_the_networks_own_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dim = make_training_pair("microtubules", photon_count_e=20.0, size_px=64, seed=7)
    auto = make_reconstructor("auto", calibration=camera_of(dim), device="cpu")
    assert isinstance(auto, AutoReconstructor) and auto.domain is not None
    auto.domain = auto.domain.model_copy(update={"better_than_wiener_below_e": 40.0})
    preprocessor = auto.network.preprocessor
    convert, calls = preprocessor.frames_in_electrons, []
    monkeypatch.setattr(preprocessor, "frames_in_electrons",
                        lambda raw: calls.append(raw) or convert(raw))
    result = auto.reconstruct(dim.raw)
    assert result.model_name == "dfcan-sim" and len(calls) == 1
    direct = auto.network.reconstruct(dim.raw)  # the network alone converts for itself
    assert len(calls) == 2
    np.testing.assert_array_equal(result.image, direct.image)
    assert result.photon_count_e == direct.photon_count_e


def test_auto_without_calibration_falls_back_to_wiener_and_says_why() -> None:
    pair = make_training_pair("er", photon_count_e=10.0, size_px=64, seed=8, base=CLEAN)
    result = make_reconstructor("auto", device="cpu").reconstruct(pair.raw)
    assert result.model_name == "wiener"
    assert "no photon calibration" in result.flags[-1]
