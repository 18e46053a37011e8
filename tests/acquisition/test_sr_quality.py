"""The live path's SR beats wide-field against the emulator's ground truth (demo quality line).

Emulator runs apply the sensor's own calibration: reconstructing raw ADU with the 100 ADU camera
offset in it leaves a low-frequency pedestal that scores Wiener SR below upsampled wide-field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py

from acquisition import run_file
from acquisition.cli.ground_truth_quality import score_against_ground_truth
from acquisition.protocol import Protocol
from inference.assessment import SCORING_BORDER_PX, score_interior
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.samples import Dynamics

STILL = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0,
                 bleach_rate_per_s=0.0)


def test_wiener_sr_in_the_run_file_beats_upsampled_widefield(
    tmp_path: Path, record_emulated_run: Callable[..., Path],
) -> None:
    output = record_emulated_run(tmp_path / "q.h5", EmulatorConfig(size_px=128, seed=0,
                                                                   dynamics=STILL), 1)
    with h5py.File(output, "r") as h5:
        kinds = [e["kind"].decode() for e in h5[run_file.EVENTS][()]]
    assert "uncalibrated" not in kinds
    sr, wf = score_against_ground_truth(output)
    assert sr.label == "wiener"
    assert sr.nrmse < 0.9 * wf.nrmse, (sr, wf)
    assert sr.pearson > wf.pearson and sr.ms_ssim > wf.ms_ssim, (sr, wf)


def test_demo_summary_names_the_method_of_every_time_point(
    tmp_path: Path, record_emulated_run: Callable[..., Path],
) -> None:
    """The default reconstruction (auto with the bundled network, or Wiener without it): the
    demo counts the SR images per method and labels the scored one with the method that made
    it; the Wiener comparison row only when the network made it."""
    from acquisition.cli.ground_truth_quality import methods_per_time_point
    from acquisition.cli.run_commands import _demo_quality

    output = record_emulated_run(tmp_path / "d.h5", EmulatorConfig(size_px=64, seed=0,
                                                                   dynamics=STILL), 2,
                                 reconstruction="default")
    with h5py.File(output, "r") as h5:
        dataset = next(iter(h5["sr"]))
        last = h5[run_file.QC_GROUP][run_file.QC_METHOD][1, 0].decode()
    counts = methods_per_time_point(output)
    assert set(counts) <= {"dfcan-sim", "wiener"} and sum(counts.values()) == 2, counts
    rows = score_against_ground_truth(output)
    labels = [row.label for row in rows]
    if dataset == "auto":
        assert labels[0] == f"auto ({last}, t=1)"
    else:  # the bundled network is not installed: Wiener SIM
        assert dataset == last == "wiener" and labels[0] == "wiener"
    assert ("wiener (same raw set)" in labels) == (last != "wiener"), labels
    assert labels[-1] == "wide-field (upsampled)"
    text = _demo_quality(output)
    assert text.startswith("SR method per time point: " + ", ".join(
        f"{name} {n}" for name, n in counts.items()) + "\n"), text
    assert f"  {labels[0]:24s} NRMSE" in text


def test_demo_scores_like_the_assessment() -> None:
    """The demo's rows are the assessment's interior scores: a dark rim (the edge taper)
    costs nothing, a wrong interior does."""
    import numpy as np

    rng = np.random.default_rng(0)
    truth = rng.random((128, 128)).astype(np.float32)
    rim = truth.copy()
    rim[:2 * SCORING_BORDER_PX] = 0.0
    assert float(score_interior(rim, truth, SCORING_BORDER_PX).nrmse) < 1e-4
    inside = truth.copy()
    inside[60:68, 60:68] = 0.0
    assert float(score_interior(inside, truth, SCORING_BORDER_PX).nrmse) > 0.01


def test_live_wiener_uses_the_protocols_pattern_calibration(
    tmp_path: Path, record_emulated_run: Callable[..., Path],
) -> None:
    """A run with `pattern_calibration` records that pattern's geometry in /sim_params every
    time point; a missing calibration file is a protocol error naming it."""
    import numpy as np
    import pytest

    from calibration.otf import OtfModel
    from calibration.sim_parameters import calibrate_pattern
    from sim_emulator.microscope import Microscope

    config = EmulatorConfig(size_px=128, seed=0, dynamics=STILL)
    otf = OtfModel(na=config.optics.na, emission_nm=config.optics.emission_nm)
    bright = Microscope(config).render_set(0.0)
    calibration = calibrate_pattern([bright], 62.6, otf, offset_adu=100.0)
    path = calibration.save(tmp_path / "pattern.json")
    with pytest.raises(ValueError, match=r"missing\.json"):
        Protocol.parse_checked({"channels": [{"laser_nm": 488, "reconstruction": "wiener"}],
                                "output": str(tmp_path / "x.h5"),
                                "pattern_calibration": str(tmp_path / "missing.json")})
    output = record_emulated_run(tmp_path / "p.h5", config, 2,
                                 pattern_calibration=str(path))
    with h5py.File(output, "r") as h5:
        used = h5[run_file.SIM_PARAMS][:, 0]
    waves = calibration.parameters.wave_vectors_cycles_per_px()
    for t in range(2):
        np.testing.assert_allclose(used[t, :, :2], waves)
    assert np.isfinite(used).all()
