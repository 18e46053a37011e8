"""Samples: every structure is drawn, deterministic per seed, and evolves as configured."""

from __future__ import annotations

import numpy as np
import pytest

from sim_emulator.samples import (
    STRUCTURES,
    ClathrinCoatedPits,
    Dynamics,
    Sample,
    make_structure,
)

FIELD_NM = (4000.0, 4000.0)
STILL = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0,
                 bleach_rate_per_s=0.0)


@pytest.mark.parametrize("name", STRUCTURES)
def test_each_structure_has_emitters_in_the_field_and_is_seeded(name: str) -> None:
    first = Sample([name], FIELD_NM, seed=4).points(0.0)
    again = Sample([name], FIELD_NM, seed=4).points(0.0)
    other = Sample([name], FIELD_NM, seed=5).points(0.0)
    inside = (first.y_nm >= 0) & (first.y_nm < 4000) & (first.x_nm >= 0) & (first.x_nm < 4000)
    assert inside.sum() > 50
    assert np.array_equal(first.x_nm, again.x_nm) and np.array_equal(first.weight, again.weight)
    assert first.x_nm.shape != other.x_nm.shape or not np.allclose(first.x_nm, other.x_nm)


def test_ccp_rings_are_80_to_200_nm_across() -> None:
    pits = ClathrinCoatedPits((10000.0, 10000.0), STILL, seed=1)
    diameters = [2 * np.hypot(*shape.T).mean() for shape in pits._shapes]
    assert min(diameters) >= 80.0 and max(diameters) <= 200.0
    for shape in pits._shapes[:5]:  # rings, not disks: every emitter on the circle
        radius = np.hypot(*shape.T)
        assert radius.std() < 1e-6 * radius.mean() + 1e-9


def test_drift_moves_every_emitter() -> None:
    dynamics = Dynamics(drift_nm_per_s=(30.0, -10.0), diffusion_nm2_per_s=0.0,
                        growth_nm_per_s=0.0, bleach_rate_per_s=0.0)
    structure = make_structure("er", FIELD_NM, dynamics, seed=2)
    start, later = structure.points(0.0), structure.points(2.0)
    assert later.x_nm - start.x_nm == pytest.approx(np.full(start.x_nm.shape, 60.0))
    assert later.y_nm - start.y_nm == pytest.approx(np.full(start.y_nm.shape, -20.0))


def test_diffusion_spreads_puncta_by_2_d_t() -> None:
    dynamics = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=5000.0,
                        growth_nm_per_s=0.0, bleach_rate_per_s=0.0)
    structure = make_structure("ccps", (30000.0, 30000.0), dynamics, seed=3)
    t = 4.0
    step = structure._walk.at(t) - structure._walk.at(0.0)
    msd = np.mean(np.sum(step**2, axis=1))
    expected = 4 * 5000.0 * 0.2 * t  # 2-D: 4 D t, pits move at 0.2 x the puncta diffusion
    assert msd == pytest.approx(expected, rel=0.2)
    # the same time gives the same positions whatever the query order
    assert np.array_equal(structure.points(1.0).x_nm, structure.points(1.0).x_nm)


def test_bleaching_is_exponential() -> None:
    dynamics = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0,
                        growth_nm_per_s=0.0, bleach_rate_per_s=0.1)
    sample = Sample(["lysosomes"], FIELD_NM, dynamics, seed=1)
    assert sample.points(5.0).total / sample.points(0.0).total == pytest.approx(np.exp(-0.5))


def test_microtubules_grow_and_shrink() -> None:
    dynamics = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0,
                        growth_nm_per_s=200.0, bleach_rate_per_s=0.0)
    structure = make_structure("microtubules", (20000.0, 20000.0), dynamics, seed=1)
    counts = [structure.points(t).weight.size for t in np.arange(0.0, 60.0, 5.0)]
    changes = np.diff(counts)
    assert (changes > 0).any() and (changes < 0).any()


def test_mix_has_three_components_of_equal_brightness() -> None:
    sample = Sample(["ccps", "microtubules", "f-actin"], FIELD_NM, seed=1)
    totals = [cloud.total for cloud in sample.component_points(0.0)]
    assert sample.names == ["ccps", "microtubules", "f-actin"]
    assert totals == pytest.approx([totals[0]] * 3, rel=1e-6)


def test_unknown_structure_is_named() -> None:
    with pytest.raises(ValueError, match="'golgi'"):
        make_structure("golgi", FIELD_NM, STILL, seed=0)
