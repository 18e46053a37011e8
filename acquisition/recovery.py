"""`livesim recover`: make a run file left by a killed writer openable by any HDF5 reader.

A SWMR writer that dies leaves the superblock's file-consistency flags set, so ordinary readers
(Fiji, h5py without ``swmr=True``) refuse the file. Like ``h5clear -s``, we clear those flags,
recompute the superblock checksum, then reopen and close the file cleanly and report its content.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from acquisition import run_file

logger = logging.getLogger(__name__)

FLAGS_OFFSET = 11  # within a version 2/3 superblock


class RecoveryError(RuntimeError):
    """The file is not an HDF5 run file we can repair."""


@dataclass
class RecoveryReport:
    """What a run file holds after recovery."""

    path: Path
    flags_cleared: bool  # the SWMR flags were set (the writer did not close the file)
    time_points: int = 0  # rows of /raw
    complete_time_points: int = 0  # time points with every frame of every channel
    raw_frames: int = 0
    sr_frames: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"{self.path}: {'cleared SWMR flags' if self.flags_cleared else 'flags were clean'}",
            f"time points: {self.time_points} ({self.complete_time_points} complete)",
            f"raw frames: {self.raw_frames}",
        ]
        out += [f"SR frames ({name}): {n}" for name, n in self.sr_frames.items()]
        out.append("events: " + (", ".join(f"{k}={v}" for k, v in self.events.items()) or "none"))
        return out


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum HDF5 uses for its metadata."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & mask
    pos = 0
    while length > 12:
        a = (a + int.from_bytes(data[pos : pos + 4], "little")) & mask
        b = (b + int.from_bytes(data[pos + 4 : pos + 8], "little")) & mask
        c = (c + int.from_bytes(data[pos + 8 : pos + 12], "little")) & mask
        a = (a - c) & mask; a ^= rot(c, 4); c = (c + b) & mask  # noqa: E702
        b = (b - a) & mask; b ^= rot(a, 6); a = (a + c) & mask  # noqa: E702
        c = (c - b) & mask; c ^= rot(b, 8); b = (b + a) & mask  # noqa: E702
        a = (a - c) & mask; a ^= rot(c, 16); c = (c + b) & mask  # noqa: E702
        b = (b - a) & mask; b ^= rot(a, 19); a = (a + c) & mask  # noqa: E702
        c = (c - b) & mask; c ^= rot(b, 4); b = (b + a) & mask  # noqa: E702
        length -= 12
        pos += 12
    if length == 0:
        return c
    tail = data[pos:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    c ^= b; c = (c - rot(b, 14)) & mask  # noqa: E702
    a ^= c; a = (a - rot(c, 11)) & mask  # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & mask  # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & mask  # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & mask  # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & mask  # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & mask  # noqa: E702
    return c


def clear_consistency_flags(path: Path) -> bool:
    """Zero the superblock's file-consistency flags (h5clear -s); True if any were set."""
    with path.open("r+b") as handle:
        start = handle.read(run_file.SUPERBLOCK_OFFSETS[-1] + 12)
        offset = run_file.superblock_offset(start)
        if offset is None:
            raise RecoveryError(f"{path}: no HDF5 superblock signature found")
        head = start[offset : offset + 12]
        version, size_offsets = head[8], head[9]
        if version not in (2, 3):
            logger.info("%s: superblock version %d has no SWMR flags", path, version)
            return False
        if head[FLAGS_OFFSET] == 0:
            return False
        body_len = 12 + 4 * size_offsets
        handle.seek(offset)
        body = bytearray(handle.read(body_len))
        body[FLAGS_OFFSET] = 0
        handle.seek(offset)
        handle.write(bytes(body) + lookup3(bytes(body)).to_bytes(4, "little"))
    return True


def recover_run_file(path: Path) -> RecoveryReport:
    """Clear SWMR state, close the file cleanly and report what it holds."""
    path = Path(path)
    if not path.is_file():
        raise RecoveryError(f"{path}: no such file")
    try:
        lock = run_file.take_exclusive_lock(path)
    except OSError as exc:
        raise RecoveryError(f"{path}: cannot open for repair: {exc.strerror}") from exc
    if lock is None:
        raise RecoveryError(f"{path}: is being recorded right now (its writer holds the file); "
                            "recover only a file whose recording process has ended")
    try:
        cleared = clear_consistency_flags(path)
        try:
            with h5py.File(path, "r+") as h5:  # reopen and close cleanly: EOF, flags consistent
                run_file.release_fault_reserve(h5)  # only a clean close or a fault row uses it
                return _describe(h5, path, cleared)
        except OSError as exc:
            raise RecoveryError(f"{path}: still not readable after clearing flags: {exc}"
                                ) from exc
    finally:
        os.close(lock)


def describe_run_file(path: Path) -> RecoveryReport:
    """Report a run file's content without changing it (SWMR read, works while recording)."""
    with h5py.File(path, "r", swmr=True) as h5:
        return _describe(h5, Path(path), False)


def _describe(h5: h5py.File, path: Path, cleared: bool) -> RecoveryReport:
    report = RecoveryReport(path=path, flags_cleared=cleared)
    if run_file.RAW in h5:
        raw = h5[run_file.RAW]
        report.time_points = raw.shape[0]
        report.raw_frames = int(np.prod(raw.shape[:3]))
    if run_file.COMPLETE in h5:
        report.complete_time_points = int(np.sum(h5[run_file.COMPLETE][()]))
    if run_file.SR_GROUP in h5:
        report.sr_frames = _count_sr_frames(h5)
    report.events = run_file.event_counts(h5)
    return report


def _count_sr_frames(h5: h5py.File) -> dict[str, int]:
    """SR frames per model: the /timestamps/sr_written flags of the channels each model serves.

    uint16 SR has no "missing" value (0 is a valid pixel), so the flags, not the pixels, say
    which frames exist; a float dataset without flags falls back to its NaN fill value.
    """
    datasets = dict(h5[run_file.SR_GROUP].items())
    written = h5[run_file.SR_WRITTEN][()] if run_file.SR_WRITTEN in h5 else None
    try:
        models = run_file.read_metadata(h5).get("models", {})
    except (KeyError, ValueError, TypeError):
        models = {}
    counts: dict[str, int] = {}
    for name, dataset in datasets.items():
        if written is not None and written.ndim == 2:
            channels = [int(c) for c, entry in models.items() if c.isdigit()
                        and isinstance(entry, dict) and entry.get("dataset") == f"sr/{name}"]
            if not channels and len(datasets) == 1:
                channels = list(range(written.shape[1]))
            channels = [c for c in channels if c < written.shape[1]]
            counts[name] = int(np.count_nonzero(written[:, channels] == 1))
        elif dataset.dtype.kind == "f" and dataset.shape[0]:
            counts[name] = int(np.count_nonzero(np.isfinite(dataset[:, :, 0, 0])))
        else:
            counts[name] = 0
    return counts
