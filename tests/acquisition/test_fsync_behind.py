"""FsyncBehind: the coalesced fsync thread shared by the recorder and the bare h5py limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from acquisition.fsync_behind import FsyncBehind


def test_fsync_behind_covers_the_last_request(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    behind_fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    behind = FsyncBehind(behind_fd, "f")
    for t in range(50):
        behind.request(t)
    behind.close()
    os.close(behind_fd)
    assert synced and behind.durable_time_point == 49  # the last time point asked for was synced
    assert behind.error is None
