"""A real write failure: the recording process gets a file-size limit (RLIMIT_FSIZE), so the
kernel refuses writes past it with EFBIG exactly as a full disk refuses them with ENOSPC.

(tests/acquisition/test_session.py::test_recorder_io_error_stops_the_run_cleanly injects
ENOSPC into the recorder in-process; this runs the real `livesim run` against the kernel.)
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition import run_file

LIVESIM = [sys.executable, "-m", "acquisition.cli"]
LIMIT_BYTES = 3_000_000


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


@pytest.fixture(scope="module")
def full_disk_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess,
                                                                      Path]:
    output = tmp_path_factory.mktemp("full") / "run.h5"
    done = subprocess.run([*LIVESIM, "run", "--emulator", "--time-points", "2000", "--size-px",
                           "32", "--model", "none", "--no-fsync", "--output", str(output)],
                          preexec_fn=_limit_file_size, capture_output=True, text=True,
                          timeout=240)
    return done, output


def test_write_failure_stops_the_run_with_a_clear_message(
        full_disk_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    done, output = full_disk_run
    assert "error:" in done.stderr and "File too large" in done.stderr
    assert "writing stopped" in done.stderr
    assert output.stat().st_size <= LIMIT_BYTES


def test_write_failure_exits_1_with_a_closed_file_and_a_fault_event(
        full_disk_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    """Before 2026-11-21 the process died by SIGSEGV (rc -11) in HDF5's exit handler, the
    SWMR flags stayed set and the fault row was empty (no room left to write it)."""
    done, output = full_disk_run
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"error: {output}: writing stopped: EFBIG (File too large)" in done.stderr
    with h5py.File(output, "r") as h5:  # flags cleared: opens without SWMR or recovery
        events = h5[run_file.EVENTS][()]
        assert [e["kind"].decode() for e in events] == ["fault"]
        assert "EFBIG (File too large)" in events[0]["detail"].decode()
        assert run_file.FAULT_RESERVE not in h5  # its space now holds the fault row
        complete = np.flatnonzero(h5["timestamps/complete"][()])
        assert len(complete) > 20 and complete.tolist() == list(range(len(complete)))
        assert (h5["raw"][complete] > 0).all(axis=(-2, -1)).all()


def test_after_recover_every_flushed_time_point_is_intact(
        full_disk_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    _, output = full_disk_run
    recovered = subprocess.run([*LIVESIM, "recover", str(output)], capture_output=True,
                               text=True, timeout=120)
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    with h5py.File(output, "r") as h5:
        complete = np.flatnonzero(h5["timestamps/complete"][()])
        sequence = h5["timestamps/sequence"][()]
        assert len(complete) > 20  # 3 MB hold many 32 px time points
        assert complete.tolist() == list(range(len(complete)))  # a prefix, no holes
        assert sequence[complete].ravel().tolist() == list(range(9 * len(complete)))
        raw = h5["raw"][complete]
        assert (raw > 0).all(axis=(-2, -1)).all()  # every stored frame has camera data
