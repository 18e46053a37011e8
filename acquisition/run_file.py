"""The livesim run file: one HDF5 file per run, its dataset names and how they are created.

Every writer (the live recorder, `livesim emulate`) goes through these functions so the layout
described in design.md exists in exactly one place. Image datasets carry ``element_size_um``
(one entry per axis, micrometres on y and x, 1 elsewhere) so Fiji's HDF5 plugin opens them at
the right scale, HDF5 dimension labels (``t, c, p, y, x``) and y/x dimension scales in
micrometres.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.metadata
import json
import os
import re
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

LAYOUT_VERSION = 1

RAW = "raw"  # uint16 (T, C, P, Y, X), one chunk per frame
WIDEFIELD = "wf"  # float32 (T, C, Y, X): mean of each channel's patterns
SR_GROUP = "sr"  # /sr/<model> uint16 (T, C, sY, sX): value = stored x attribute "scale"
SR_SCALE = 1.0 / 65535.0  # SR images in [0, 1] stored as round(value / SR_SCALE)
SR_WRITTEN = "timestamps/sr_written"  # uint8 (T, C): 1 where an SR image was written
IMC = "imc"  # float32 (T, 3, sY, sX), attribute channel_names
# /imc channel names when the worker reports none: the bundled IMC-SR model's outputs, in order
# (a filament, a tubular network, filled puncta); inference.imc.DEFAULT_STRUCTURES is this
IMC_DEFAULT_CHANNEL_NAMES: tuple[str, str, str] = ("microtubules", "er", "lysosomes")
# /events kind (and IMC result flag prefix) of an IMC-SR input that is not a mixture of the
# model's structures (inference.imc.live's domain check)
IMC_OUT_OF_DOMAIN = "imc_out_of_domain"
TIMESTAMPS_GROUP = "timestamps"  # /timestamps/<name> float64 (T, C, P) seconds
SIM_PARAMS = "sim_params"  # per time point estimated pattern parameters
CALIBRATION_GROUP = "calibration"  # /calibration/<map>
EVENTS = "events"  # structured log of gaps, skips and faults
GT_GROUP = "gt"  # /gt/sr, /gt/wf: ground truth (emulator only)
PHOTON_COUNT = "photon_count"  # float32 (T, C): average photon count (e-) of each raw set
# uint8 (T,): 1 once every frame of every channel of a time point is stored and flushed;
# 0 for a time point with frames missing or discarded (e.g. unverifiable after a missed trigger)
COMPLETE = "timestamps/complete"
SCALES_GROUP = "scales"  # /scales/<y|x>_um_<pixel nm>: dimension scales of the image datasets
# multi-dimensional runs (positions, z planes): each row of /raw is one (t, position, z) SIM set
MDA_GROUP = "mda"  # attributes sizes_tpz, z_step_um, positions_um, sequence (useq JSON)
MDA_INDEX = "mda/index"  # int64 (N, 3): t, position, z of each row; -1 = row not acquired
# trust records of SR images (inference.trust, every Nth set): NaN where none was computed
QC_GROUP = "qc"  # /qc/raw_chi2, /qc/resolution_scaled_pearson, /qc/beyond_support_fraction
QC_SCALARS = ("raw_chi2", "resolution_scaled_pearson", "beyond_support_fraction")
QC_MAP = "raw_chi2_map"  # float32 (T, C, my, mx): raw-consistency map, one value per block
QC_METHOD = "method"  # (T, C) string: the method that made each SR image ("" = none)
QC_METHOD_LENGTH = 64
AUTO_FLAG_PREFIX = "auto:"  # --model auto's choice in a result's flags: "auto:<method>: <reason>"
QC_MAP_BLOCK_PX = 8  # raw pixels per map block (inference.trust.MAP_BLOCK_PX)
QC_MAX_SIZE_PX = 128  # the central raw square checked (cost bound)


def qc_map_shape(frame_shape: Sequence[int]) -> tuple[int, int]:
    """(my, mx) of /qc/raw_chi2_map for raw frames of ``frame_shape``: the central
    ``QC_MAX_SIZE_PX`` square in blocks of ``QC_MAP_BLOCK_PX`` (at least one)."""
    height, width = (min(int(n), QC_MAX_SIZE_PX) for n in frame_shape[-2:])
    return max(height // QC_MAP_BLOCK_PX, 1), max(width // QC_MAP_BLOCK_PX, 1)


def flag_events(channel: int, flags: Sequence[str]) -> list[tuple[str, str]]:
    """The /events rows (kind, detail) of one SR result's flags: ``sr_method`` for
    ``--model auto``'s choice and its reason, ``sr_flagged`` for flagged input or output."""
    choices = [f for f in flags if f.startswith(AUTO_FLAG_PREFIX)]
    problems = [f for f in flags if not f.startswith(AUTO_FLAG_PREFIX)]
    return [(kind, f"channel {channel}: " + ", ".join(found))
            for kind, found in (("sr_method", choices), ("sr_flagged", problems)) if found]

# dimension labels of the image datasets by their number of leading axes
DIMENSION_LABELS: dict[int, tuple[str, ...]] = {1: ("t",), 2: ("t", "c"), 3: ("t", "c", "p")}

# Chunk cache per dataset for the writer. Frames go in by direct chunk writes and each table
# chunk is filled once, so a small cache loses nothing; HDF5 2.0's larger default let a long run's
# caches fill for hours (+13.6 % RSS in the 30-minute soak).
WRITER_CHUNK_CACHE_BYTES = 1024 * 1024

# Space set aside while recording so that the "fault" row can still be written after the disk
# (or the file-size limit) is full: a contiguous dataset allocated when the file is created,
# deleted to make room for that row after a write failure, and at a normal close.
FAULT_RESERVE = "fault_reserve"
FAULT_RESERVE_BYTES = 64 * 1024
FAULT_DETAIL_MAX_CHARS = 2000  # the row's text must fit the reserve with the rest

EVENT_DTYPE = np.dtype(
    [
        ("time_s", "f8"),
        ("kind", h5py.string_dtype()),
        ("time_point", "i8"),
        ("sequence", "i8"),
        ("detail", h5py.string_dtype()),
    ]
)


def element_size_um(pixel_size_nm: float, ndim: int = 3) -> np.ndarray:
    """Element size per axis of an ``ndim`` image dataset: micrometres on y and x, 1 elsewhere."""
    if ndim < 2:
        raise ValueError(f"an image dataset has at least 2 axes, got ndim={ndim}")
    size_um = pixel_size_nm / 1000.0
    return np.array([1.0] * (ndim - 2) + [size_um] * 2, dtype=np.float32)


def attach_dimension_scales(dataset: h5py.Dataset, pixel_size_nm: float,
                            leading_labels: Sequence[str]) -> None:
    """Label every axis and attach y/x scales (pixel centres in micrometres) to the frame axes.

    The scales live in ``/scales`` (one pair per pixel size and frame shape) and are shared by
    every dataset on that grid. Call before SWMR mode starts (it adds attributes).
    """
    root = dataset.file
    group = root.require_group(SCALES_GROUP)
    for axis, label in enumerate(leading_labels):
        dataset.dims[axis].label = label
    for axis, label in ((-2, "y"), (-1, "x")):
        index = dataset.ndim + axis
        size = int(dataset.shape[index])
        name = f"{label}_um_{pixel_size_nm:g}nm_{size}"
        if name not in group:
            scale = group.create_dataset(
                name, data=(np.arange(size) + 0.5) * pixel_size_nm / 1000.0)
            scale.make_scale(f"{label} (µm)")
        dataset.dims[index].label = label
        dataset.dims[index].attach_scale(group[name])


def create_image_dataset(
    group: h5py.Group,
    name: str,
    frame_shape: Sequence[int],
    leading_shape: Sequence[int],
    dtype: np.dtype | type,
    pixel_size_nm: float,
    growable: bool = True,
    fillvalue: float | int | None = None,
) -> h5py.Dataset:
    """Create an image dataset of shape (*leading, Y, X), chunked one 2-D frame per chunk.

    With ``growable`` the first axis (time) is unlimited so frames are appended as they come.
    """
    shape = (*leading_shape, *frame_shape)
    maxshape = (None, *shape[1:]) if growable else shape
    chunks = (*([1] * len(leading_shape)), *frame_shape)
    dataset = group.create_dataset(
        name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks, fillvalue=fillvalue
    )
    dataset.attrs["element_size_um"] = element_size_um(pixel_size_nm, dataset.ndim)
    dataset.attrs["pixel_size_nm"] = float(pixel_size_nm)
    n_leading = len(leading_shape)
    labels = DIMENSION_LABELS.get(n_leading, tuple(f"d{i}" for i in range(n_leading)))
    attach_dimension_scales(dataset, pixel_size_nm, labels)
    return dataset


def create_table(
    group: h5py.Group,
    name: str,
    row_shape: Sequence[int],
    dtype: np.dtype | type,
    fillvalue: float | int | bytes,
) -> h5py.Dataset:
    """A per-time-point dataset (T, *row_shape) growing along T; unwritten rows hold fillvalue."""
    shape = (0, *row_shape)
    chunks = (max(1, 4096 // max(1, int(np.prod(row_shape)))), *row_shape)
    return group.create_dataset(
        name, shape=shape, maxshape=(None, *row_shape), dtype=dtype, chunks=chunks,
        fillvalue=fillvalue,
    )


def create_calibration_and_events(h5: h5py.File, calibration: Mapping[str, np.ndarray]
                                  ) -> h5py.Dataset:
    """/calibration (one dataset per array) and the empty /events table, which it returns."""
    group = h5.create_group(CALIBRATION_GROUP)
    for name, array in calibration.items():
        group.create_dataset(name, data=np.asarray(array))
    return h5.create_dataset(EVENTS, shape=(0,), maxshape=(None,), dtype=EVENT_DTYPE,
                             chunks=(256,))


@dataclass(frozen=True)
class MdaLayout:
    """The /mda group of a multi-D run: row n of /raw is event ``index[n]`` = (t, p, z)."""

    index: tuple[tuple[int, int, int], ...]
    sizes_tpz: tuple[int, int, int]
    positions_um: tuple[tuple[float, ...], ...]  # (x, y, z) of each position; NaN = unchanged
    z_step_um: float  # 0 for a single plane
    sequence_json: str  # the useq MDASequence


def create_mda(h5: h5py.File, layout: MdaLayout) -> None:
    """Write the /mda group (before SWMR mode: it is complete from the start)."""
    group = h5.create_group(MDA_GROUP)
    index = np.asarray(layout.index, dtype=np.int64).reshape(-1, 3)
    dataset = group.create_dataset("index", data=index)
    dataset.attrs["columns"] = ["t", "p", "z"]
    group.attrs["sizes_tpz"] = np.asarray(layout.sizes_tpz, dtype=np.int64)
    group.attrs["positions_um"] = np.asarray(layout.positions_um, dtype=np.float64)
    group.attrs["z_step_um"] = float(layout.z_step_um)
    group.attrs["sequence"] = layout.sequence_json


def mda_rows(h5: h5py.File | h5py.Group, n_rows: int
             ) -> tuple[np.ndarray, float | None, np.ndarray]:
    """Where each (position, time, z) of a run sits among the file's time-point rows.

    Returns ``rows`` (positions, T, Z) with -1 for combinations never recorded, the z step in
    micrometres (None for a single plane) and each position's stage (x, y, z) in micrometres.
    A run without ``/mda`` is one position, one plane: row t is time t.
    """
    if MDA_INDEX not in h5:
        rows = np.arange(n_rows, dtype=np.int64)[None, :, None]
        return rows, None, np.full((1, 3), np.nan)
    index = np.asarray(h5[MDA_INDEX][()], dtype=np.int64)  # (N, 3): t, p, z
    index = index[:n_rows]
    group = h5[MDA_GROUP]
    sizes = {k: int(v) for k, v in zip("tpz", group.attrs["sizes_tpz"], strict=True)}
    recorded = index[:, 0] >= 0
    size_t = int(index[recorded, 0].max()) + 1 if recorded.any() else 0
    rows = np.full((sizes["p"], size_t, sizes["z"]), -1, dtype=np.int64)
    t, p, z = index[recorded].T
    rows[p, t, z] = np.flatnonzero(recorded)
    z_step = float(group.attrs.get("z_step_um", 0.0)) or None
    stage = np.asarray(group.attrs.get("positions_um", np.full((sizes["p"], 3), np.nan)),
                       dtype=np.float64).reshape(sizes["p"], 3)
    return rows, z_step, stage


def sr_to_stored(image: np.ndarray) -> np.ndarray:
    """An SR image in [0, 1] (float) as the stored uint16 (clipped, rounded to SR_SCALE)."""
    scaled = np.multiply(image, np.float32(1 / SR_SCALE), dtype=np.float32)
    np.clip(scaled, 0.0, np.float32(1 / SR_SCALE), out=scaled)
    scaled += np.float32(0.5)  # in place, then truncation: rounds to nearest (10x np.rint)
    return scaled.astype(np.uint16)


def read_sr(h5: h5py.File | h5py.Group, model: str, time_point: int | None = None,
            channel: int | None = None) -> np.ndarray:
    """SR images of ``model`` as float32 in [0, 1]: all (T, C, sY, sX), one time point's
    (C, sY, sX), or one (sY, sX). Entries never written (``/timestamps/sr_written`` 0) are NaN."""
    dataset = h5[SR_GROUP][model]
    index: tuple[Any, ...] = tuple(i for i in (time_point, channel) if i is not None)
    if time_point is None and channel is not None:
        index = (slice(None), channel)
    image = dataset[index].astype(np.float32) * np.float32(dataset.attrs.get("scale", 1.0))
    if dataset.dtype.kind != "f" and SR_WRITTEN in h5:
        written = np.asarray(h5[SR_WRITTEN][index], dtype=bool)
        image[~written] = np.nan
    return image


def sr_label(model_name: str) -> str:
    """An HDF5-safe /sr dataset name for a model (the live recorder's and reprocess's rule)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_name) or "model"


def software_version() -> str:
    """The installed livesim version ("unknown" when not installed), for the run metadata."""
    try:
        return importlib.metadata.version("livesim")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_metadata(h5: h5py.File | h5py.Group, metadata: Mapping[str, Any]) -> None:
    """Store run metadata as JSON string attributes (one per top-level key)."""
    for key, value in metadata.items():
        h5.attrs[key] = json.dumps(value, default=_json_default, sort_keys=True)
    h5.attrs["layout_version"] = LAYOUT_VERSION


def read_metadata(h5: h5py.File | h5py.Group) -> dict[str, Any]:
    """Inverse of :func:`write_metadata`: JSON attributes decoded, others returned as is."""
    out: dict[str, Any] = {}
    for key, value in h5.attrs.items():
        if isinstance(value, str | bytes):
            text = value.decode() if isinstance(value, bytes) else value
            try:
                out[key] = json.loads(text)
            except json.JSONDecodeError:
                out[key] = text
        else:
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def event_counts(h5: h5py.File | h5py.Group) -> dict[str, int]:
    """How many /events rows of each kind the file holds (empty without /events)."""
    if EVENTS not in h5:
        return {}
    return dict(Counter(k.decode() if isinstance(k, bytes) else str(k)
                        for k in h5[EVENTS]["kind"][()]))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")


def create_fault_reserve(h5: h5py.File) -> None:
    """Write the fault reserve now, before SWMR mode: contiguous and written in full, so its
    blocks are real. Space allocated but never written would be a sparse hole, which a full
    disk cannot fill when the fault row needs it. A write error here raises (OSError)."""
    h5.create_dataset(FAULT_RESERVE, data=np.full(FAULT_RESERVE_BYTES, 0xA5, np.uint8))


def release_fault_reserve(h5: h5py.File) -> None:
    """Delete the fault reserve (its space becomes free for what is written next), if present."""
    if FAULT_RESERVE in h5:
        del h5[FAULT_RESERVE]


def append_fault_event(path: Path | str, detail: str, when_s: float) -> int:
    """Open a run file whose writer failed, release the reserve and append one "fault" row.

    Returns the row's index. The file must be closed everywhere else (SWMR flags cleared).
    """
    with h5py.File(path, "r+") as h5:
        release_fault_reserve(h5)
        events = h5[EVENTS]
        n = events.shape[0]
        events.resize(n + 1, axis=0)
        events[n] = (when_s, "fault", -1, -1, detail[:FAULT_DETAIL_MAX_CHARS])
    return n


# --- "being recorded" lock --------------------------------------------------------------------
# The writer holds an open-file-description lock (fcntl F_OFD_SETLK: per open file, released by
# the kernel when the writer dies, and separate from the flock() locks HDF5 takes itself, so
# SWMR readers are not affected). `livesim recover` takes the same lock exclusively first and
# refuses a file whose writer is alive.
_FLOCK = struct.Struct("hhxxxxqqixxxx")  # struct flock on 64-bit Linux
_SETLK = getattr(fcntl, "F_OFD_SETLK", fcntl.F_SETLK)


def _lock(fd: int, kind: int) -> bool:
    try:
        fcntl.fcntl(fd, _SETLK, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def hold_recording_lock(path: Path | str) -> int:
    """Mark a run file as being recorded; returns the descriptor to close when done."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if not _lock(fd, fcntl.F_RDLCK):
            raise OSError(errno.EBUSY, f"{path} is being recorded by another process")
    except BaseException:
        os.close(fd)
        raise
    return fd


def take_exclusive_lock(path: Path | str) -> int | None:
    """Lock a run file for repair; None if a live writer holds it. Close the fd when done."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    if _lock(fd, fcntl.F_WRLCK):
        return fd
    os.close(fd)
    return None


# --- truncation -----------------------------------------------------------------------------
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def superblock_offset(head: bytes) -> int | None:
    """Where the HDF5 superblock starts in the first bytes of a file (None: not HDF5)."""
    for offset in SUPERBLOCK_OFFSETS:
        if head[offset : offset + 8] == HDF5_SIGNATURE:
            return offset
    return None


def hdf5_truncation(path: Path | str) -> int:
    """How many bytes an HDF5 file lacks: its superblock's end-of-file address minus its size
    (0 when whole, or when the superblock version does not say; HDF5 then checks itself).

    A file cut short (a copy interrupted, a full disk on the way) opens in SWMR mode and reads
    its missing chunks as zeros; this catches it before any frame is read.
    """
    with open(path, "rb") as handle:
        head = handle.read(SUPERBLOCK_OFFSETS[-1] + 64)
        size = os.fstat(handle.fileno()).st_size
    offset = superblock_offset(head)
    if offset is None or len(head) < offset + 12:
        return 0
    version, width = head[offset + 8], head[offset + 9]
    if version in (2, 3) and width in (2, 4, 8):
        # signature 8, version, offset size, length size, flags, then base address,
        # extension address, end-of-file address (each ``width`` bytes)
        start = offset + 12 + 2 * width
        if len(head) < start + width:
            return 0
        base = int.from_bytes(head[offset + 12 : offset + 12 + width], "little")
        end = base + int.from_bytes(head[start : start + width], "little")
        return max(0, end - size)
    return 0
