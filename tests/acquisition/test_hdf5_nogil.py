"""HDF5 writes without the GIL (acquisition.hdf5_nogil): same bytes as h5py, h5py's errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from acquisition import run_file
from acquisition.hdf5_nogil import NOGIL_MIN_BYTES, NogilWriter

BIG = (512, 512)  # a uint16 chunk of NOGIL_MIN_BYTES: written without the GIL
SMALL = (6, 5)  # through h5py


class _CountingId:
    """A dataset id that counts the writes that went through h5py."""

    def __init__(self, dataset_id: h5py.h5d.DatasetID) -> None:
        self.id = dataset_id.id
        self._dataset_id = dataset_id
        self.through_h5py = 0

    def write_direct_chunk(self, offset: tuple[int, ...], data: Any) -> None:
        self.through_h5py += 1
        self._dataset_id.write_direct_chunk(offset, data)


def test_the_big_chunk_is_the_threshold() -> None:
    assert np.zeros(BIG, np.uint16).nbytes == NOGIL_MIN_BYTES


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ctypes path checked on Linux")
def test_writes_without_the_gil_store_exactly_what_h5py_stores(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = {shape: rng.integers(0, 65535, (3, 2, *shape), dtype=np.uint16)
              for shape in (BIG, SMALL)}
    for name, driver in (("nogil", None), ("h5py", "core")):
        path = tmp_path / f"{name}.h5"
        kwargs = {"driver": "core", "backing_store": True} if driver else {}
        with h5py.File(path, "w", libver="latest", **kwargs) as h5:
            datasets = {shape: run_file.create_image_dataset(
                h5, f"raw{shape[0]}", shape, (0, 1, 2), np.uint16, 62.6) for shape in frames}
            h5.swmr_mode = True
            writer = NogilWriter(h5)
            # the POSIX driver goes without the GIL; the in-memory one (no sec2) through h5py
            assert writer.without_gil is (driver is None)
            for shape, dataset in datasets.items():
                counting = _CountingId(dataset.id)
                for t in range(3):
                    dataset.id.set_extent((t + 1, 1, 2, *shape))
                    for p in range(2):
                        writer.write_chunk(counting, (t, 0, p, 0, 0), frames[shape][t, p])
                    writer.flush()
                big = shape == BIG and writer.without_gil
                assert counting.through_h5py == (0 if big else 6)
        with h5py.File(path, "r") as h5:
            for shape in frames:
                np.testing.assert_array_equal(h5[f"raw{shape[0]}"][:, 0], frames[shape])


def test_a_write_hdf5_refuses_raises_h5pys_error(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "run.h5", "w", libver="latest") as h5:
        raw = run_file.create_image_dataset(h5, run_file.RAW, BIG, (0, 1, 3), np.uint16, 62.6)
        writer = NogilWriter(h5)
        frame = np.zeros(BIG, np.uint16)
        with pytest.raises((ValueError, OSError, RuntimeError)):
            writer.write_chunk(raw.id, (7, 0, 0, 0, 0), frame)  # beyond the extent (0 rows)
        raw.id.set_extent((1, 1, 3, *BIG))
        writer.write_chunk(raw.id, (0, 0, 2, 0, 0), frame + 7)
        writer.flush()
        assert int(raw[0, 0, 2].max()) == 7
