"""Preprocessing: the authors' normalisation, ADU -> electrons, defect repair, flags, batching."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from inference.model_file import Normalisation
from inference.preprocessing import (
    FLAG_ALL_ZERO,
    FLAG_CONSTANT,
    FLAG_SATURATED,
    Preprocessor,
    normalise,
    repair_defects,
    to_recorded,
)


@dataclass
class Calibration:
    offset_adu: np.ndarray
    gain_adu_per_e: np.ndarray
    defect_mask: np.ndarray | None = None


def _raw(seed: int = 0, shape: tuple[int, ...] = (9, 16, 16)) -> np.ndarray:
    return (100 + np.random.default_rng(seed).poisson(200, shape)).astype(np.uint16)


def test_sim_normalisation_is_one_global_min_max_over_all_frames() -> None:
    raw = _raw()
    raw[4, 3, 3] = 5000
    prepared = Preprocessor("sim").prepare(raw)
    x = prepared.inputs
    assert x.shape == (9, 16, 16) and x.dtype == np.float32
    lo, hi = float(raw.min()), float(raw.max())
    expected = ((raw.astype(np.float64) - lo) / (hi - lo + 1e-7)).astype(np.float32)
    np.testing.assert_array_equal(x, expected)
    assert x[4, 3, 3] == pytest.approx(1.0) and x.min() == 0.0
    assert x[0].max() < 0.5  # frames are not normalised one by one


def test_sisr_input_is_the_normalised_wide_field_mean() -> None:
    raw = _raw(1)
    x = Preprocessor("sisr").prepare(raw).inputs
    mean = raw.astype(np.float64).mean(axis=0)
    expected = (mean - mean.min()) / (mean.max() - mean.min() + 1e-7)
    assert x.shape == (1, 16, 16)
    np.testing.assert_allclose(x[0], expected, atol=1e-7)


def test_percentile_normalisation_clips() -> None:
    x = np.arange(101, dtype=np.float64)
    y, constant = normalise(x, Normalisation(low_pct=10, high_pct=90, epsilon=0))
    assert not constant
    assert y[0] == 0 and y[100] == 1 and y[50] == pytest.approx(0.5)


def test_electrons_use_offset_and_gain_maps() -> None:
    offset = np.full((16, 16), 100.0, dtype=np.float32)
    gain = np.full((16, 16), 2.0, dtype=np.float32)
    gain[:, 8:] = 4.0
    raw = np.full((9, 16, 16), 500, dtype=np.uint16)
    pre = Preprocessor("sim", calibration=Calibration(offset, gain))
    electrons = pre.frames_in_electrons(raw)
    assert electrons[0, 0, 0] == 200.0 and electrons[0, 0, 15] == 100.0
    with pytest.raises(ValueError, match=r"calibration maps are \(16, 16\).*\(8, 8\)"):
        pre.frames_in_electrons(raw[:, :8, :8])


def test_defect_repair_replaces_hot_pixels_by_neighbour_median() -> None:
    frames = np.tile(np.arange(25, dtype=np.float32).reshape(5, 5), (2, 1, 1))
    frames[:, 2, 2] = 60000
    frames[1, 0, 0] = 60000
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = mask[0, 0] = True
    out = repair_defects(frames, mask)
    assert out[0, 2, 2] == np.median([6, 7, 8, 11, 13, 16, 17, 18])
    # corner: clipped neighbours repeat (0,1) and (1,0); the defect itself is excluded
    assert out[1, 0, 0] == np.median([1, 1, 5, 5, 6])
    assert out[0, 1, 1] == frames[0, 1, 1]  # good pixels untouched


def test_flags_saturated_zero_and_constant_sets() -> None:
    pre = Preprocessor("sim")
    raw = _raw()
    raw[0, 0, 0] = 65535
    assert FLAG_SATURATED in pre.prepare(raw).flags
    zero = pre.prepare(np.zeros((9, 8, 8), dtype=np.uint16))
    assert FLAG_ALL_ZERO in zero.flags and FLAG_CONSTANT in zero.flags
    assert np.isfinite(zero.inputs).all() and not zero.inputs.any()
    assert pre.prepare(_raw()).flags == []


def test_wrong_frame_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="sim model needs 9 raw frames per set, got 7"):
        Preprocessor("sim").prepare(_raw(shape=(7, 8, 8)))
    with pytest.raises(ValueError, match="mode must be one of"):
        Preprocessor("3d")


def test_photon_count_uses_calibration_and_is_none_without() -> None:
    raw = _raw(2, (9, 32, 32))
    assert Preprocessor("sim").prepare(raw).photon_count_e is None
    offset = np.full((32, 32), 100.0, dtype=np.float32)
    gain = np.full((32, 32), 2.0, dtype=np.float32)
    count = Preprocessor("sim", calibration=Calibration(offset, gain)).prepare(raw).photon_count_e
    assert count is not None
    assert 0.5 * 200 * 0.8 < count < 0.5 * 200 * 1.2  # ~200 ADU above offset at 2 ADU/e


def test_batch_normalises_each_set_on_its_own() -> None:
    pre = Preprocessor("sim")
    a, b = _raw(3), _raw(4) * 2
    batch, prepared = pre.prepare_batch([a, b])
    assert [p.flags for p in prepared] == [[], []]
    assert batch.shape == (2, 9, 16, 16)
    np.testing.assert_array_equal(batch[1], pre.prepare(b).inputs)
    with pytest.raises(ValueError, match="one shape"):
        pre.prepare_batch([a, _raw(shape=(9, 8, 8))])


def test_to_recorded_dtype() -> None:
    image = np.array([[-0.1, 0.5, 1.2]], dtype=np.float32)
    np.testing.assert_array_equal(to_recorded(image), [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(to_recorded(image, "uint16"), [[0, 32768, 65535]])
    with pytest.raises(ValueError, match="'int8'"):
        to_recorded(image, "int8")


@pytest.mark.gpu
def test_cupy_preprocessing_matches_numpy() -> None:
    cupy = pytest.importorskip("cupy")
    offset = np.full((16, 16), 100.0, dtype=np.float32)
    gain = np.full((16, 16), 2.0, dtype=np.float32)
    mask = np.zeros((16, 16), dtype=bool)
    mask[3, 4] = True
    cal = Calibration(offset, gain, mask)
    raw = _raw(5)
    from inference.model_file import ROBUST_NORMALISATION

    for normalisation in (Normalisation(), ROBUST_NORMALISATION):  # min-max and percentiles
        cpu = Preprocessor("sim", normalisation, calibration=cal).prepare(raw)
        gpu = Preprocessor("sim", normalisation, calibration=cal, device="cuda").prepare(raw)
        np.testing.assert_allclose(cupy.asnumpy(gpu.inputs), cpu.inputs, atol=1e-6)
        assert gpu.flags == cpu.flags


def test_percentiles_of_a_large_stack_come_from_an_even_stride() -> None:
    from inference.preprocessing import PERCENTILE_SAMPLE_SIZE

    rng = np.random.default_rng(3)
    small = rng.normal(100, 10, (9, 64, 64))
    y, _ = normalise(small, Normalisation(low_pct=1, high_pct=99))
    lo, hi = np.percentile(small, [1, 99])  # exact below PERCENTILE_SAMPLE_SIZE values
    np.testing.assert_allclose(y, np.clip((small - lo) / (hi - lo + 1e-7), 0, 1), atol=1e-6)
    large = rng.normal(100, 10, (PERCENTILE_SAMPLE_SIZE * 3 + 5,))
    y, _ = normalise(large, Normalisation(low_pct=1, high_pct=99))
    assert np.mean(y == 0) == pytest.approx(0.01, abs=0.001)
    assert np.mean(y == 1) == pytest.approx(0.01, abs=0.001)


def test_one_outlier_pixel_does_not_change_the_bundled_networks_image_elsewhere() -> None:
    """A single cold pixel (sCMOS read-noise tail, defect) in one raw frame: with the authors'
    min-max normalisation it sets the scale of the whole set and the network's output changes
    everywhere (on the real microtubule stack one -40 e- pixel widened the filaments from 121 to
    139 nm); the bundled networks' percentile normalisation ignores it."""
    from inference.model_file import ROBUST_NORMALISATION, load_model
    from inference.reconstruction import ModelReconstructor
    from sim_emulator.training_pairs import make_training_pair

    raw = make_training_pair("microtubules", photon_count_e=30, size_px=48, seed=5).raw_electrons()
    outlier = raw.copy()
    outlier[4, 10, 10] = raw.min() - 4 * (raw.max() - raw.min())
    far = np.ones((96, 96), dtype=bool)
    far[8:32, 8:32] = False  # 12 raw px around the outlier may change
    model = load_model("dfcan-sim")
    assert model.info.normalisation == ROBUST_NORMALISATION

    def change(normalisation: Normalisation) -> float:
        model.info.normalisation = normalisation
        network = ModelReconstructor(model, None, device="cpu")
        clean = np.asarray(network.reconstruct(raw).image, dtype=np.float64)
        hit = np.asarray(network.reconstruct(outlier).image, dtype=np.float64)
        return float(np.abs(hit - clean)[far].max() / np.ptp(clean))

    assert change(ROBUST_NORMALISATION) < 0.01
    assert change(Normalisation()) > 0.05  # what the test guards against
