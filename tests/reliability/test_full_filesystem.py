"""A real full file system (a small tmpfs mounted for the test; root only, skipped otherwise).

RLIMIT_FSIZE (tests/reliability/test_disk_full.py) refuses writes past a size, but lets a
process fill a sparse hole below it; a full file system refuses any new block, so only this
shows that the fault reserve holds real blocks and that creation on a full disk is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest

from acquisition import run_file

LIVESIM = [sys.executable, "-m", "acquisition.cli"]


def _small_filesystem(base: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount_point = base / f"fs-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], timeout=30, check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    yield from _small_filesystem(tmp_path, "3m")


def _run(output: Path, timepoints: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIVESIM, "run", "--emulator", "--time-points", str(timepoints),
                           "--size-px", "32", "--model", "none", "--no-fsync", "--output",
                           str(output)], capture_output=True, text=True, timeout=240)


def test_fault_row_is_written_when_the_file_system_fills_up(small_fs: Path) -> None:
    """Before, /fault_reserve was a sparse hole: on a full tmpfs the fault row could not be
    written ("the file could not be sealed") and /events stayed empty."""
    output = small_fs / "run.h5"
    done = _run(output, 5000)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "ENOSPC (No space left on device)" in done.stderr
    assert "could not be sealed" not in done.stderr
    with h5py.File(output, "r") as h5:  # sealed: opens without SWMR or recovery
        events = h5[run_file.EVENTS][()]
        complete = int(h5[run_file.COMPLETE][()].sum())
    assert [e["kind"].decode() for e in events] == ["fault"]
    assert "ENOSPC" in events[0]["detail"].decode()
    assert complete > 10  # the time points flushed before the disk filled are kept


def test_creating_a_run_file_on_a_full_file_system_is_refused_cleanly(small_fs: Path) -> None:
    """Before: a RuntimeError traceback, then a segfault (exit 139) in HDF5's exit handler."""
    filler = small_fs / "filler"
    free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
    filler.write_bytes(bytes(free - 40 * 1024))  # 40 kB left: HDF5 could start, not finish
    output = small_fs / "run.h5"
    done = _run(output, 5)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert f"error: {output}: cannot create run file: only 0.04 MB free" in done.stderr
    assert "Traceback" not in done.stderr and not output.exists()
