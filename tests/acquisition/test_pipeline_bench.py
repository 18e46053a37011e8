"""`livesim bench pipeline`: the bare h5py limit writes as the recorder does; a small full run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from acquisition import pipeline_bench


def _bank() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 4000, (2, 9, 16, 16), dtype=np.uint16)


def test_bare_h5py_fsyncs_behind_the_writer_or_inline(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    fps, cpu = pipeline_bench.bare_h5py_fps(_bank(), 12, tmp_path, fsync=True, plain=True)
    assert len(calls) == 13  # one per time point, inline, and one at the close
    assert fps > 0 and cpu >= 0
    calls.clear()
    fps, _ = pipeline_bench.bare_h5py_fps(_bank(), 12, tmp_path, fsync=True, same_bytes=True)
    assert 2 <= len(calls) <= 13  # coalesced on the second thread, plus the close
    assert fps > 0 and not any(tmp_path.iterdir())  # its scratch file is removed
    calls.clear()
    pipeline_bench.bare_h5py_fps(_bank(), 5, tmp_path, fsync=False)
    assert calls == []


@pytest.mark.slow
def test_small_pipeline_bench_is_lossless(tmp_path: Path) -> None:
    result = pipeline_bench.run_pipeline_bench(6, 32, tmp_path)
    assert result.raw_lost == 0 and result.raw_mismatched == 0
    assert result.sr_frames == 6 and result.sr_skips == 0
    assert result.ratio == pytest.approx(
        result.pipeline_fps / min(result.zmq_fps, result.h5py_fps))
    cpu = result.cpu_ms_per_frame
    assert cpu["pipeline"] == pytest.approx(cpu["pipeline acquisition process"]
                                            + cpu["pipeline worker"])
    assert cpu["pipeline worker"] > 0
    text = "\n".join(result.lines())
    assert "ratio to the slower bare limit" in text and "same bytes" in text
    assert not any(tmp_path.iterdir())  # scratch files removed
