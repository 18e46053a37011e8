"""/qc in the run file: trust records of every Nth SR image and the method of every one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from acquisition import run_file
from acquisition.cli.ground_truth_quality import methods_per_time_point
from acquisition.recorder import QcRecord, RunLayout, RunRecorder

LIVESIM = [sys.executable, "-m", "acquisition.cli"]


def test_emulator_run_records_trust_every_nth_time_point(tmp_path: Path) -> None:
    output = tmp_path / "run.h5"
    done = subprocess.run([*LIVESIM, "run", "--emulator", "--model", "wiener", "--time-points",
                           "4", "--size-px", "64", "--trust-every", "2", "--no-fsync",
                           "--output", str(output)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    with h5py.File(output, "r") as h5:
        assert h5["timestamps/sr_written"][()].ravel().tolist() == [1, 1, 1, 1]
        qc = h5[run_file.QC_GROUP]
        chi2 = qc["raw_chi2"][()]
        pearson = qc["resolution_scaled_pearson"][()]
        beyond = qc["beyond_support_fraction"][()]
        chi2_map = qc["raw_chi2_map"][()]
        method = qc["method"][()]
    assert chi2.shape == pearson.shape == beyond.shape == (4, 1)
    assert chi2_map.shape == (4, 1, 8, 8)
    checked = [0, 2]
    assert np.isfinite(chi2[checked]).all() and np.isnan(chi2[[1, 3]]).all()
    assert np.all(chi2[checked] < 3.0), chi2  # Wiener SIM explains its raw data
    assert np.all(pearson[checked] > 0.9) and np.isnan(pearson[[1, 3]]).all()
    assert np.all(beyond[checked] < 0.01) and np.isnan(beyond[[1, 3]]).all()
    assert np.isfinite(chi2_map[checked]).all() and np.isnan(chi2_map[[1, 3]]).all()
    assert np.allclose(chi2_map[checked].mean(axis=(2, 3)), chi2[checked], rtol=0.5)
    assert method.ravel().tolist() == [b"wiener"] * 4


def test_recorder_writes_qc_rows_and_refuses_a_wrong_map(tmp_path: Path) -> None:
    layout = RunLayout(n_channels=2, n_orientations=3, n_phases=3, frame_shape=(16, 24),
                       sr_shape=(32, 48), pixel_size_nm=62.6, sr_models=("auto",))
    assert run_file.qc_map_shape(layout.frame_shape) == (2, 3)
    assert run_file.qc_map_shape((512, 4)) == (16, 1)
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, layout, {}, fsync=False)
    image = np.zeros((32, 48), np.float32)
    block = np.arange(6, dtype=np.float32).reshape(2, 3)
    record = QcRecord(1.25, 0.97, 0.001, block)
    for t in range(3):
        recorder.write_sr(t, 0, "auto", image, 1.0, 1.0, 1.0,
                          qc=record if t == 1 else None, method="wiener" if t else "dfcan-sim")
    recorder.write_sr(2, 1, "auto", image, 1.0, 1.0, 1.0,
                      qc=QcRecord(2.0, 0.5, 0.0, np.ones((4, 4), np.float32)), method="x" * 80)
    recorder.close()
    with h5py.File(path, "r") as h5:
        qc = h5[run_file.QC_GROUP]
        assert qc["raw_chi2"][()].dtype == np.float32
        np.testing.assert_allclose(qc["raw_chi2"][()], [[np.nan] * 2, [1.25, np.nan],
                                                        [np.nan, 2.0]])
        np.testing.assert_allclose(qc["resolution_scaled_pearson"][1, 0], 0.97, rtol=1e-6)
        np.testing.assert_allclose(qc["beyond_support_fraction"][1, 0], 0.001, rtol=1e-6)
        maps = qc["raw_chi2_map"][()]
        np.testing.assert_array_equal(maps[1, 0], block)
        assert np.isnan(maps[2, 1]).all()  # the 4 x 4 map is not this layout's: not recorded
        assert np.isnan(maps[0]).all()
        assert qc["method"][:, 0].tolist() == [b"dfcan-sim", b"wiener", b"wiener"]
        assert qc["method"][2, 1] == b"x" * run_file.QC_METHOD_LENGTH
        assert qc["method"][0, 1] == b""
    # the demo's per-method count of the SR images ("" = no SR image: not counted)
    assert methods_per_time_point(path, 0) == {"dfcan-sim": 1, "wiener": 2}
    assert methods_per_time_point(path, 1) == {"x" * run_file.QC_METHOD_LENGTH: 1}
