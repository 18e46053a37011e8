"""`livesim reprocess` on Dask: a live Wiener run of the emulator reprocessed and compared.

Real parts throughout: an emulated-rig run recorded by RunSession with its worker subprocess,
a distributed LocalCluster (and a separately started `dask scheduler` + `dask worker`), HDF5.
Images are 64 px and runs 4 time points so each test takes seconds on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition import run_file
from acquisition.cli import build_app
from inference.reprocess import (
    ReprocessError,
    ReprocessOptions,
    dask_client,
    plan_chunks,
    run_reprocess,
)
from inference.reprocess_file import (
    Provenance,
    ReprocessFileError,
    ReprocessLayout,
    ReprocessWriter,
)
from sim_emulator.microscope import EmulatorConfig

ROOT = Path(__file__).resolve().parents[2]
TIME_POINTS = 4
SIZE_PX = 64


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory,
             record_emulated_run: Callable[..., Path]) -> Path:
    """A live emulator run with Wiener SR by the supervised worker (the reference SR)."""
    return record_emulated_run(tmp_path_factory.mktemp("live") / "live.h5",
                               EmulatorConfig(size_px=SIZE_PX, seed=3), TIME_POINTS,
                               display=False)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def event_rows(path: Path) -> list[tuple[str, int, str]]:
    with h5py.File(path, "r") as h5:
        return [(e["kind"].decode(), int(e["time_point"]), e["detail"].decode())
                for e in h5[run_file.EVENTS][()]]


def check_matches_live(live: Path, new: Path, label: str = "wiener") -> None:
    with h5py.File(live, "r") as a, h5py.File(new, "r") as b:
        reference, again = run_file.read_sr(a, label), run_file.read_sr(b, label)
        assert again.shape == reference.shape == (TIME_POINTS, 1, 2 * SIZE_PX, 2 * SIZE_PX)
        assert b[run_file.SR_WRITTEN][()].ravel().tolist() == [1] * TIME_POINTS
        assert b[run_file.COMPLETE][()].tolist() == [1] * TIME_POINTS
        for t in range(TIME_POINTS):
            assert pearson(reference[t, 0], again[t, 0]) >= 0.99, t
        # photon counts are computed from the same calibration as live
        np.testing.assert_allclose(b[run_file.PHOTON_COUNT][()], a[run_file.PHOTON_COUNT][()],
                                   rtol=1e-6)
        assert np.isfinite(b["timestamps/inference_ms"][()]).all()
        # the raw data stay in the source file, reachable through the output
        np.testing.assert_array_equal(b[run_file.RAW][2, 0, 5], a[run_file.RAW][2, 0, 5])


def test_cli_two_local_workers_reprocess_every_time_point_like_live(live_run: Path,
                                                                     tmp_path: Path) -> None:
    new = tmp_path / "new.h5"
    result = CliRunner().invoke(build_app(), [
        "reprocess", str(live_run), "--model", "wiener", "--workers", "2", "--output", str(new),
        "--chunk", "1"])
    assert result.exit_code == 0, result.output
    assert f"{TIME_POINTS} time points written now" in result.output
    assert "on 2 workers" in result.output
    check_matches_live(live_run, new)
    with h5py.File(new, "r") as h5:
        meta = run_file.read_metadata(h5)
        params = h5[run_file.SIM_PARAMS][0, 0]
    provenance = meta["reprocess"]
    assert provenance["source_sha256"] == hashlib.sha256(live_run.read_bytes()).hexdigest()
    assert provenance["model_name"] == "wiener" and provenance["software_version"]
    recorded = provenance["sim_parameters"]["0"]["orientations"]
    assert len(recorded) == 3 and all(o["modulation"] > 0 for o in recorded)
    np.testing.assert_allclose(params[:, 3], [o["modulation"] for o in recorded])
    assert meta["models"]["0"]["dataset"] == "sr/wiener"
    rows = event_rows(new)
    # the 64 px emulated field is too small for a trustworthy pattern fit: Wiener flags it
    # (as the live run did); nothing else may happen
    flagged = [d for k, _, d in rows if k == "sr_flagged"]
    assert all("pattern_fit_unreliable" in d for d in flagged), flagged
    assert [k for k, _, _ in rows if k != "sr_flagged"] == ["reprocess_start", "reprocess_end"]


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
from inference.reprocess import ReprocessOptions, dask_client, run_reprocess

def crash_after_two(done, total):
    if done >= 2:  # two chunks are written and flushed: die as a killed process does
        os.kill(os.getpid(), signal.SIGKILL)

with dask_client(workers=1, processes=False) as client:
    run_reprocess(ReprocessOptions(Path(sys.argv[1]), Path(sys.argv[2]), model="wiener",
                                   chunk_time_points=1, in_flight_per_worker=1),
                  client, crash_after_two)
"""


def test_killed_reprocess_resumes_skipping_what_was_written(live_run: Path,
                                                            tmp_path: Path) -> None:
    new = tmp_path / "new.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    crashed = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(live_run), str(new)],
                             env=env, capture_output=True, text=True, timeout=180)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    with pytest.raises(OSError):  # the killed SWMR writer left its flags set
        h5py.File(new, "r").close()
    result = CliRunner().invoke(build_app(), [
        "reprocess", str(live_run), "--model", "wiener", "--output", str(new)])
    assert result.exit_code == 0, result.output
    assert "cleared the SWMR flags" in result.output
    assert f"{TIME_POINTS - 2} time points written now, 2 already done" in result.output
    check_matches_live(live_run, new)
    # pattern-fit flags of the 64 px field (see the test above) aside
    rows = [r for r in event_rows(new)
            if not (r[0] == "sr_flagged" and "pattern_fit_unreliable" in r[2])]
    assert [k for k, _, _ in rows] == ["reprocess_start", "reprocess_resumed", "reprocess_end"]
    assert rows[1][2].startswith(f"{TIME_POINTS - 2} time points to do, 2 already done")


def test_incomplete_raw_set_is_a_recorded_skip(live_run: Path, tmp_path: Path) -> None:
    source = tmp_path / "dropped.h5"
    shutil.copy(live_run, source)
    with h5py.File(source, "r+") as h5:
        h5["timestamps/sequence"][2, 0, 4] = -1  # frame 4 of t=2 never arrived
    new = tmp_path / "new.h5"
    with dask_client(workers=1, processes=False) as client:
        summary = run_reprocess(ReprocessOptions(source, new, model="wiener"), client)
    assert summary.written_now == TIME_POINTS and summary.sr_frames == TIME_POINTS - 1
    with h5py.File(new, "r") as h5:
        assert h5[run_file.SR_WRITTEN][()].ravel().tolist() == [1, 1, 0, 1]
        assert h5[run_file.COMPLETE][()].tolist() == [1] * TIME_POINTS
    assert ("sr_skip", 2, "channel 0: incomplete raw set") in event_rows(new)


def test_resume_refuses_another_source_or_model(live_run: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.h5"
    layout = ReprocessLayout(TIME_POINTS, 1, 3, (2 * SIZE_PX, 2 * SIZE_PX), 31.3, "wiener")
    first = Provenance(str(live_run), "a" * 64, "wiener", "wiener", "")
    ReprocessWriter(new, layout, first, {}).close()
    other = Provenance(str(live_run), "b" * 64, "wiener", "wiener", "")
    with pytest.raises(ReprocessFileError, match=r"source_sha256 is 'a+' in the file"):
        ReprocessWriter(new, layout, other, {})
    dfcan = Provenance(str(live_run), "a" * 64, "dfcan-sim", "dfcan-sim", "c" * 64)
    with pytest.raises(ReprocessFileError, match="model_name is 'wiener'"):
        ReprocessWriter(new, layout, dfcan, {})
    with dask_client(workers=1, processes=False) as client:
        with pytest.raises(ReprocessError, match="no such run file"):
            run_reprocess(ReprocessOptions(tmp_path / "missing.h5", new, "wiener"), client)
        with pytest.raises(ReprocessError, match="must not be the source"):
            run_reprocess(ReprocessOptions(live_run, live_run, "wiener"), client)


def test_reprocess_output_keeps_the_multi_d_labels(live_run: Path, tmp_path: Path) -> None:
    source = tmp_path / "mda.h5"
    shutil.copy(live_run, source)
    index = ((0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0))  # 2 positions x 2 times
    with h5py.File(source, "r+") as h5:
        run_file.create_mda(h5, run_file.MdaLayout(index, (2, 2, 1), ((1.0, 2.0, 3.0),
                                                                      (4.0, 5.0, 6.0)), 0.0, "{}"))
    new = tmp_path / "new.h5"
    layout = ReprocessLayout(TIME_POINTS, 1, 3, (2 * SIZE_PX, 2 * SIZE_PX), 31.3, "wiener")
    ReprocessWriter(new, layout, Provenance(str(source), "a" * 64, "wiener", "wiener", ""),
                    {}).close()
    with h5py.File(source, "r") as a, h5py.File(new, "r") as b:
        rows, z_step, stage = run_file.mda_rows(b, TIME_POINTS)
        assert rows.tolist() == [[[0], [2]], [[1], [3]]]  # position 1, time 1 is row 3
        assert z_step is None and stage.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
        expected = run_file.mda_rows(a, TIME_POINTS)[0]
        np.testing.assert_array_equal(rows, expected)
        assert b[run_file.MDA_GROUP].attrs["sequence"] == "{}"


def test_plan_chunks_covers_every_time_point_once() -> None:
    chunks = plan_chunks([7, 0, 1, 2, 5, 6], 4)
    assert chunks == [(0, 1, 2, 5), (6, 7)]
    with pytest.raises(ReprocessError):
        plan_chunks([1], 0)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        time.sleep(0.1)
    raise AssertionError(f"{path} not written within {timeout_s} s")


def test_scheduler_address_reaches_a_separately_started_dask_cluster(live_run: Path,
                                                                     tmp_path: Path) -> None:
    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    assert dask is not None, "the dask command comes with distributed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    scheduler_file = tmp_path / "scheduler.json"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)], env=env, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_file(scheduler_file, processes[0], 60)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(subprocess.Popen(
            [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1"], env=env, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        new = tmp_path / "new.h5"
        result = CliRunner().invoke(build_app(), [
            "reprocess", str(live_run), "--model", "wiener", "--scheduler", address,
            "--output", str(new)])
        assert result.exit_code == 0, result.output
        assert "on 1 workers" in result.output
        check_matches_live(live_run, new)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, live_run: Path) -> None:
    result = CliRunner().invoke(build_app(), [
        "reprocess", str(live_run), "--model", "wiener", "--scheduler", "tcp://127.0.0.1:9",
        "--connect-timeout-s", "3", "--output", str(tmp_path / "new.h5")])
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in result.output
