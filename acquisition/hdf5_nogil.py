"""HDF5 chunk writes and flushes that let other Python threads run meanwhile.

h5py holds the GIL for the whole of every HDF5 call, including the ``write()`` that copies a
chunk into the page cache. The recorder thread spends most of a run there, so the acquisition
thread (grouping frames, the wide-field mean, sending to the worker) and the results thread
wait for the GIL after each of their own GIL-free steps. Measured on the 2-core VM (two
threads, 256 x 256 frames, 9 chunks and a flush per set beside a numpy copy + wide-field loop):
through ctypes the writer wrote 6,000-7,000 frames/s and the numpy thread did 1,400-1,600
sets/s; through h5py 4,500-4,900 and 1,050-1,120.

:class:`NogilWriter` calls the same HDF5 library functions h5py uses (``H5Dwrite_chunk``,
``H5Fflush``) through ``ctypes``, which releases the GIL for the call, while holding h5py's own
lock (``phil``), so no other thread enters HDF5 meanwhile (the library is not built
thread-safe). Chunks under ``NOGIL_MIN_BYTES`` (and the recorder's table rows and extents) go
through h5py: HDF5's own work there is short against handing the GIL over and back, and
moving them too showed no gain in the pipeline bench. The ctypes path is taken only where it
is safe: the file uses the POSIX driver (a Python file object as driver would call back into
Python), and the library is the one h5py loaded (the only HDF5 mapped in the process, same
version, the file's id valid in it). Any failure is handed back to h5py, which repeats the
call and raises its usual error.
"""

from __future__ import annotations

import ctypes
import logging
import os

import h5py
import numpy as np
from h5py._objects import phil

logger = logging.getLogger(__name__)

_HSIZE = ctypes.c_uint64
_HID = ctypes.c_int64
_H5P_DEFAULT = 0
_H5F_SCOPE_LOCAL = 0
NOGIL_MIN_BYTES = 512 * 1024  # smaller chunks: HDF5's own work is shorter than a GIL hand-over
_library: ctypes.CDLL | None = None
_library_searched = False


def _loaded_hdf5_paths() -> list[str]:
    """Paths of the HDF5 C libraries mapped into this process (importing h5py mapped its own)."""
    found: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                name = os.path.basename(path)
                if path.startswith("/") and name.startswith("libhdf5") and "_hl" not in name:
                    found.append(os.path.realpath(path))
    except OSError:
        pass
    return list(dict.fromkeys(found))


def _hdf5_library() -> ctypes.CDLL | None:
    """h5py's own HDF5 library through ctypes: the one HDF5 mapped in this process (None: none,
    several copies, or not h5py's version)."""
    global _library, _library_searched
    if _library_searched:
        return _library
    _library_searched = True
    paths = _loaded_hdf5_paths()
    if len(paths) != 1:
        logger.debug("HDF5 libraries mapped: %s; chunk writes keep the GIL", paths)
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            major, minor, release = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
            lib.H5get_libversion(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(release))
            functions = {name: getattr(lib, name) for name in (
                "H5Dwrite_chunk", "H5Fflush", "H5Iis_valid")}
        except (OSError, AttributeError) as exc:
            logger.debug("%s: no HDF5 functions through ctypes (%s)", path, exc)
            continue
        if (major.value, minor.value, release.value) != h5py.version.hdf5_version_tuple:
            continue
        sizes = ctypes.POINTER(_HSIZE)
        for name, argtypes in (
                ("H5Dwrite_chunk", [_HID, _HID, ctypes.c_uint32, sizes, ctypes.c_size_t,
                                    ctypes.c_void_p]),
                ("H5Fflush", [_HID, ctypes.c_int]),
                ("H5Iis_valid", [_HID])):
            functions[name].argtypes = argtypes
            functions[name].restype = ctypes.c_int
        _library = lib
        break
    return _library


class NogilWriter:
    """Direct chunk writes (unfiltered, whole chunks) and flushes of one open file, without the
    GIL where that is safe and worth it (see the module's docstring), else through h5py."""

    def __init__(self, h5: h5py.File) -> None:
        self._h5 = h5
        lib = _hdf5_library() if h5.driver == "sec2" else None
        if lib is not None:
            with phil:
                if lib.H5Iis_valid(h5.id.id) <= 0:  # another copy of the library
                    lib = None
        self._lib = lib
        self._offset = (_HSIZE * 32)()  # H5S_MAX_RANK

    @property
    def without_gil(self) -> bool:
        """True when writes and flushes run with the GIL released."""
        return self._lib is not None

    def write_chunk(self, dataset_id: h5py.h5d.DatasetID, offset: tuple[int, ...],
                    data: np.ndarray) -> None:
        """``dataset_id.write_direct_chunk(offset, data)`` for a C-contiguous ``data`` of the
        chunk's dtype and shape."""
        lib = self._lib
        if (lib is None or data.nbytes < NOGIL_MIN_BYTES or not data.flags.c_contiguous
                or len(offset) > len(self._offset)):
            dataset_id.write_direct_chunk(offset, data)
            return
        where = self._offset
        for i, value in enumerate(offset):
            where[i] = value
        with phil:
            status = lib.H5Dwrite_chunk(dataset_id.id, _H5P_DEFAULT, 0, where, data.nbytes,
                                        data.ctypes.data)
        if status < 0:  # h5py repeats it and raises its own error (disk full, ...)
            dataset_id.write_direct_chunk(offset, data)

    def flush(self) -> None:
        """``h5.flush()``."""
        lib = self._lib
        if lib is None:
            self._h5.flush()
            return
        with phil:
            status = lib.H5Fflush(self._h5.id.id, _H5F_SCOPE_LOCAL)
        if status < 0:
            self._h5.flush()
