"""Fast frame source statistics and training-pair generation."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.photon_count import average_photon_count
from sim_emulator.fast_path import FastFrameSource
from sim_emulator.microscope import EmulatorConfig, Microscope
from sim_emulator.training_pairs import make_training_pair, training_pairs


def test_fast_frames_match_full_physics_statistics() -> None:
    microscope = Microscope(EmulatorConfig(structure="er", size_px=64, photon_count_e=200.0))
    source = FastFrameSource(microscope, jitter_px=0.0)
    full = np.stack([microscope.render_frame(0.0, 2, 488.0, 100.0, 10.0) for _ in range(12)])
    fast = np.stack([source.frame(0.0, 2, 488.0, 100.0, 10.0) for _ in range(12)])
    assert fast.dtype == np.uint16 and fast.shape == full.shape
    full_mean, fast_mean = full.mean(axis=0), fast.mean(axis=0)
    assert np.corrcoef(full_mean.ravel(), fast_mean.ravel())[0, 1] > 0.98
    assert fast.mean() == pytest.approx(full.mean(), rel=0.01)
    assert fast.std(axis=0).mean() == pytest.approx(full.std(axis=0).mean(), rel=0.1)
    assert not np.array_equal(fast[0], fast[1])  # fresh noise every frame


def test_fast_path_follows_power_exposure_and_laser() -> None:
    microscope = Microscope(EmulatorConfig(size_px=64, photon_count_e=100.0))
    source = FastFrameSource(microscope)
    offset = microscope.sensor.offset_map_adu
    ppc = microscope.config.sensor.electrons_per_adu
    reference = average_photon_count(source.frame(0.0, None, 488.0, 100.0, 10.0), offset, ppc)
    doubled = average_photon_count(source.frame(0.0, None, 488.0, 100.0, 20.0), offset, ppc)
    assert reference == pytest.approx(100.0, rel=0.1)
    assert doubled == pytest.approx(2 * reference, rel=0.1)
    dark = source.frame(0.0, 3, 640.0, 100.0, 10.0).astype(np.float64) - offset
    assert abs(dark.mean()) < 1.0


def test_fast_path_jitters_sub_pixel() -> None:
    microscope = Microscope(EmulatorConfig(structure="ccps", size_px=64, photon_count_e=5000.0))
    source = FastFrameSource(microscope, n_offsets=4, jitter_px=0.5, jitter_period_s=1.0)
    bank = source._bank(488)[0]  # wide-field at the four offsets
    shift = np.fft.ifft2(np.fft.fft2(bank[0]) * np.conj(np.fft.fft2(bank[2]))).real
    iy, ix = np.unravel_index(np.argmax(shift), shift.shape)
    assert (iy, ix) in {(0, 0), (0, 1), (0, 63), (1, 0), (63, 0)}  # below a pixel apart
    assert not np.allclose(bank[0], bank[2])


@pytest.mark.parametrize("mode", ["wf", "sim", "nlsim"])
def test_training_pair_shapes_and_photons(mode: str) -> None:
    pair = make_training_pair("microtubules", mode=mode, photon_count_e=150.0, size_px=64, seed=3)
    patterns, factor = {"wf": (1, 2), "sim": (9, 2), "nlsim": (25, 3)}[mode]
    assert pair.raw.shape == (patterns, 64, 64) and pair.raw.dtype == np.uint16
    assert pair.sr_gt.shape == (64 * factor, 64 * factor) and pair.sr_gt.dtype == np.float32
    assert pair.wf_gt.shape == (64, 64)
    measured = average_photon_count(pair.wf, 0.0, pair.electrons_per_adu)
    assert measured == pytest.approx(150.0, rel=0.1)
    assert pair.raw_electrons().mean() == pytest.approx(pair.wf_gt.mean(), rel=0.05)


def test_training_pairs_are_seeded_and_span_photon_range() -> None:
    first = list(training_pairs("ccps", 3, photon_count_e=(20.0, 2000.0), size_px=64, seed=10))
    again = list(training_pairs("ccps", 3, photon_count_e=(20.0, 2000.0), size_px=64, seed=10))
    assert all(np.array_equal(a.raw, b.raw) for a, b in zip(first, again, strict=True))
    assert len({p.photon_count_e for p in first}) == 3
    assert all(20.0 <= p.photon_count_e <= 2000.0 for p in first)
    assert not np.array_equal(first[0].sr_gt, first[1].sr_gt)  # a new field of view each


def test_domain_randomisation_draws_instruments_within_their_ranges() -> None:
    from sim_emulator.training_pairs import DomainRandomisation

    ranges = DomainRandomisation()
    rng = np.random.default_rng(3)
    drawn = [ranges.draw(EmulatorConfig(size_px=32), rng) for _ in range(40)]
    na = np.array([c.optics.na for c in drawn])
    fraction = np.array([1 / (c.patterns.period_nm * c.optics.cutoff_cycles_per_nm)
                         for c in drawn])
    counts = np.array([c.photon_count_e for c in drawn])
    assert np.all((na >= 1.2) & (na <= 1.49)) and np.ptp(na) > 0.15
    assert np.all((fraction >= 0.75 - 1e-9) & (fraction <= 1.0 + 1e-9))
    assert np.all((counts >= 12) & (counts <= 600)) and counts.max() / counts.min() > 10
    assert len({round(c.patterns.angle_offset_rad, 6) for c in drawn}) == 40
    pairs = list(training_pairs("microtubules", 2, size_px=48, seed=5, randomisation=ranges))
    assert pairs[0].photon_count_e != pairs[1].photon_count_e
    assert all(p.raw.shape == (9, 48, 48) for p in pairs)
    with pytest.raises(ValueError, match="needs low <= high"):
        DomainRandomisation(na=(1.4, 1.2))
