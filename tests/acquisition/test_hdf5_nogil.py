"""HDF5 writes without the GIL (acquisition.hdf5_nogil): same bytes as h5py, h5py's errors."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition import run_file
from acquisition.hdf5_nogil import NogilWriter


def _layout(h5: h5py.File) -> tuple[h5py.Dataset, h5py.Dataset]:
    raw = run_file.create_image_dataset(h5, run_file.RAW, (6, 5), (0, 1, 3), np.uint16, 62.6)
    table = run_file.create_table(h5, "table", (1, 3), np.float64, np.nan)
    return raw, table


def _write_everything(writer: NogilWriter, raw: h5py.Dataset, table: h5py.Dataset,
                      frames: np.ndarray) -> None:
    for t in range(frames.shape[0]):
        writer.set_extent(raw.id, (t + 1, 1, 3, 6, 5))
        writer.set_extent(table.id, (t + 1, 1, 3))
        for p in range(3):
            writer.write_chunk(raw.id, (t, 0, p, 0, 0), frames[t, p])
        row = np.arange(3, dtype=np.float64).reshape(1, 1, 3) + t
        selection = table.id.get_space()
        selection.select_hyperslab((t, 0, 0), (1, 1, 3))
        writer.write(table.id, h5py.h5s.create_simple((1, 1, 3)), selection, row,
                     h5py.h5t.py_create(np.dtype(np.float64)))
        writer.flush()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ctypes path checked on Linux")
def test_writes_without_the_gil_store_exactly_what_h5py_stores(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 65535, (4, 3, 6, 5), dtype=np.uint16)
    stored = {}
    for name, driver in (("nogil", None), ("h5py", "core")):
        path = tmp_path / f"{name}.h5"
        kwargs = {"driver": "core", "backing_store": True} if driver else {}
        with h5py.File(path, "w", libver="latest", **kwargs) as h5:
            raw, table = _layout(h5)
            h5.swmr_mode = True
            writer = NogilWriter(h5)
            # the POSIX driver goes without the GIL; the in-memory one (no sec2) through h5py
            assert writer.without_gil is (driver is None)
            _write_everything(writer, raw, table, frames)
        with h5py.File(path, "r") as h5:
            stored[name] = (h5[run_file.RAW][()], h5["table"][()])
    for name in stored:
        np.testing.assert_array_equal(stored[name][0][:, 0], frames)
        np.testing.assert_array_equal(stored[name][1][:, 0],
                                      np.arange(3) + np.arange(4)[:, None])


def test_a_write_hdf5_refuses_raises_h5pys_error(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "run.h5", "w", libver="latest") as h5:
        raw, _ = _layout(h5)
        writer = NogilWriter(h5)
        frame = np.zeros((6, 5), np.uint16)
        with pytest.raises((ValueError, OSError, RuntimeError)):
            writer.write_chunk(raw.id, (7, 0, 0, 0, 0), frame)  # beyond the extent (0 rows)
        with pytest.raises((ValueError, OSError, RuntimeError)):
            writer.set_extent(raw.id, (1, 2, 3, 6, 5))  # beyond the maximum shape (1 channel)
        writer.set_extent(raw.id, (1, 1, 3, 6, 5))
        writer.write_chunk(raw.id, (0, 0, 2, 0, 0), frame + 7)
        writer.flush()
        assert int(raw[0, 0, 2].max()) == 7
