"""The recorder's failure and close path: a failed write never leaves a file that needs
recovery, the fault row has room (the fault reserve), and a normal close leaves no trace of it.

(tests/reliability/test_disk_full.py runs the real `livesim run` against a kernel file-size
limit; here the recorder is driven directly, with an I/O error the kernel reports on fsync.)
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from acquisition import run_file
from acquisition.recorder import RecorderError, RunLayout, RunRecorder

LAYOUT = RunLayout(n_channels=1, n_orientations=3, n_phases=3, frame_shape=(8, 8),
                   sr_shape=(16, 16), pixel_size_nm=65.0)


def frames(t: int) -> np.ndarray:
    return (np.arange(9 * 64, dtype=np.uint16).reshape(9, 8, 8) + 1000 * t + 1)


def write(recorder: RunRecorder, t: int) -> None:
    recorder.write_raw_set(t, 0, frames(t), np.arange(9) + 10.0 * t, np.arange(9) + 9 * t)
    recorder.end_time_point(t)


def test_the_reserve_exists_while_recording_and_is_gone_after_a_normal_close(
        tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {}, fsync=False)
    write(recorder, 0)
    deadline = time.monotonic() + 10
    while recorder.stats.time_points < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with h5py.File(path, "r", swmr=True) as h5:
        reserve = h5[run_file.FAULT_RESERVE]
        assert reserve.shape == (run_file.FAULT_RESERVE_BYTES,)
        assert reserve.id.get_storage_size() == run_file.FAULT_RESERVE_BYTES  # allocated now
    recorder.close()
    with h5py.File(path, "r") as h5:
        assert run_file.FAULT_RESERVE not in h5
        assert h5["timestamps/complete"][()].tolist() == [1]
        assert h5[run_file.EVENTS].shape == (0,)


def test_an_fsync_io_error_stops_with_a_sealed_file_and_a_fault_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.h5"
    real_fsync = os.fsync
    synced: list[int] = []

    def failing_fsync(fd: Any) -> None:
        if len(synced) >= 3:
            raise OSError(errno.EIO, "Input/output error")
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    recorder = RunRecorder(path, LAYOUT, {}, fsync=True)
    written = 0
    with pytest.raises(RecorderError, match="EIO"):
        for t in range(200):
            write(recorder, t)
            written = t + 1
            time.sleep(0.01)
    with pytest.raises(RecorderError, match=r"run\.h5: .*EIO \(Input/output error\)"):
        recorder.close()
    assert written < 200 and recorder.stats.events["fault"] == 1
    with h5py.File(path, "r") as h5:  # no SWMR flags left: any reader opens it
        events = h5[run_file.EVENTS][()]
        assert [e["kind"].decode() for e in events] == ["fault"]
        assert "EIO (Input/output error)" in events[0]["detail"].decode()
        complete = np.flatnonzero(h5["timestamps/complete"][()])
        assert len(complete) >= 3 and complete.tolist() == list(range(len(complete)))
        for t in complete:
            np.testing.assert_array_equal(h5["raw"][t, 0], frames(int(t)))
            assert h5["timestamps/sequence"][t, 0].tolist() == list(range(9 * t, 9 * t + 9))
