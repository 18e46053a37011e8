"""Border handling (periodic + smooth decomposition) and measured / estimated OTF support."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.edge_taper import periodic_component, smooth_component
from calibration.otf import MeasuredOtf, OtfModel, estimate_otf_support_cycles_per_px

OTF_FILE = (Path(__file__).resolve().parents[2].parent / "shared" / "real_sim" / "rdl_sim_otf"
            / "TIRF488_cam1_0_z30_OTF2d.mrc")


def test_periodic_component_has_no_border_jump_and_keeps_the_inside() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:96]
    image = 3.0 * xx + 0.5 * yy + rng.standard_normal((64, 96))  # a ramp: big wrap-around jump
    periodic = periodic_component(image)
    smooth = smooth_component(image)
    np.testing.assert_allclose(periodic + smooth, image, atol=1e-9)
    jump_before = np.abs(image[:, -1] - image[:, 0]).mean()
    jump_after = np.abs(periodic[:, -1] - periodic[:, 0]).mean()
    assert jump_after < 0.05 * jump_before
    # the smooth part is smooth: its Laplacian vanishes inside (harmonic)
    laplacian = (smooth[1:-1, :-2] + smooth[1:-1, 2:] + smooth[:-2, 1:-1] + smooth[2:, 1:-1]
                 - 4 * smooth[1:-1, 1:-1])
    assert np.abs(laplacian[2:-2, 2:-2]).max() < 1e-9
    # linear, and complex inputs decompose part by part
    both = smooth_component(image + 1j * 2 * image)
    np.testing.assert_allclose(both, smooth + 2j * smooth, atol=1e-9)


def test_measured_otf_reads_the_rigs_file() -> None:
    if not OTF_FILE.is_file():
        pytest.skip(f"measured OTF not found at {OTF_FILE}")
    otf = MeasuredOtf.from_mrc(OTF_FILE)
    assert otf.profile[0] == 1.0 and otf.spacing_cycles_per_nm == pytest.approx(3.12e-5, rel=1e-3)
    # support ~5.5 cycles/um; the 488 nm TIRF-SIM pattern (5.54 cycles/um) sits at its edge
    assert 5.0e-3 < otf.cutoff_cycles_per_nm < 6.0e-3
    value = otf.value(np.array([0.0, 2.5e-3, 7e-3]), np.zeros(3), 62.6)
    assert value[0] == 1.0 and 0.15 < value[1] < 0.3 and value[2] == 0.0


def test_measured_otf_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.mrc"):
        MeasuredOtf.from_mrc(tmp_path / "nope.mrc")
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an mrc")
    with pytest.raises(ValueError, match=r"bad\.mrc"):
        MeasuredOtf.from_mrc(bad)


def test_support_estimate_is_a_lower_bound_of_the_cutoff() -> None:
    from sim_emulator.microscope import EmulatorConfig, Microscope

    config = EmulatorConfig(size_px=128, photon_count_e=300.0, seed=1)
    wide_field = Microscope(config).render_set(0.0).astype(float).mean(axis=0)
    support = estimate_otf_support_cycles_per_px(wide_field)
    cutoff = OtfModel(na=config.optics.na, emission_nm=config.optics.emission_nm)
    cutoff_px = cutoff.cutoff_cycles_per_nm * config.optics.pixel_size_nm
    assert support is not None and 0.6 * cutoff_px < support <= 1.05 * cutoff_px
    rng = np.random.default_rng(2)
    assert estimate_otf_support_cycles_per_px(rng.standard_normal((64, 64))) < 0.1
