"""The wire protocol between acquisition, inference worker and viewers: [header, payload].

The header is msgpack (no pickle anywhere), the payload the raw image buffer, sent zero-copy.
Every received message is validated (version, kind, field types, shape x dtype == payload size,
sane limits) before any array is built from it; a malformed message raises :class:`WireError`.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

import msgpack
import numpy as np

WIRE_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
MAX_NDIM = 4
MAX_DIM = 16_384
MAX_LIST_LEN = 4_096
ALLOWED_DTYPES = frozenset({"uint8", "uint16", "float32"})
DISPLAY_LENGTH = struct.Struct("<I")


class Kind(StrEnum):
    """What a message carries."""

    RAW_SET = "raw_set"  # uint16 (P, Y, X): one channel's pattern set at one time point
    SR_RESULT = "sr_result"  # float32 (sY, sX) super-resolved image of one raw set
    IMC_RESULT = "imc_result"  # float32 (3, sY, sX) IMC-SR three-structure split
    WIDEFIELD = "widefield"  # float32 (Y, X) mean of a raw set (display only)
    EVENT = "event"  # no payload; info describes a fault or skip
    HEARTBEAT = "heartbeat"  # no payload; the worker is alive


class WireError(ValueError):
    """A received message is malformed; the message names what is wrong."""


@dataclass(frozen=True)
class Header:
    """Metadata of one message; ``sequence`` counts messages per sender (gap detection).

    ``worker_id`` names the worker process (one id per start) that sent a result or heartbeat:
    with several workers, heartbeats are judged per worker and results counted per worker.
    """

    kind: Kind
    run_id: str
    sequence: int
    time_point: int = -1
    channel: int = -1
    shape: tuple[int, ...] = (0,)
    dtype: str = "uint8"
    n_orientations: int = 1
    n_phases: int = 1
    laser_nm: int = 0
    exposure_ms: float = 0.0
    frame_sequences: tuple[int, ...] = ()
    timestamps_s: tuple[float, ...] = ()
    sent_s: float = field(default_factory=time.time)
    info: dict[str, Any] = field(default_factory=dict)
    worker_id: str = ""
    version: int = WIRE_VERSION

    def pack(self) -> bytes:
        """The msgpack bytes of this header."""
        data = {f.name: getattr(self, f.name) for f in _HEADER_FIELDS}  # asdict deep-copies
        data["kind"] = str(self.kind)
        data["shape"] = list(self.shape)
        data["frame_sequences"] = list(self.frame_sequences)
        data["timestamps_s"] = list(self.timestamps_s)
        return msgpack.packb(data, use_bin_type=True)


_HEADER_FIELDS = fields(Header)


@dataclass(frozen=True)
class Message:
    """A validated message: its header and the payload viewed as an array (read-only)."""

    header: Header
    array: np.ndarray


_INT_FIELDS = ("sequence", "time_point", "channel", "n_orientations", "n_phases", "laser_nm",
               "version")
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "run_id": (str,),
    "worker_id": (str,),
    "shape": (list,),
    "dtype": (str,),
    "exposure_ms": (int, float),
    "frame_sequences": (list,),
    "timestamps_s": (list,),
    "sent_s": (int, float),
    "info": (dict,),
    **{name: (int,) for name in _INT_FIELDS},
}


def encode(header: Header, array: np.ndarray | None = None) -> list[Any]:
    """Frames for ``send_multipart(..., copy=False)``: header bytes and the array's own buffer."""
    if array is None:
        array = np.empty((0,), dtype=np.uint8)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if tuple(array.shape) != tuple(header.shape) or str(array.dtype) != header.dtype:
        raise WireError(
            f"header says {header.dtype}{list(header.shape)} but array is "
            f"{array.dtype}{list(array.shape)}"
        )
    return [header.pack(), array]


def header_for(kind: Kind, run_id: str, sequence: int, array: np.ndarray | None,
               **fields: Any) -> Header:
    """A header whose shape and dtype are taken from ``array`` (empty payload when None)."""
    shape = (0,) if array is None else tuple(int(n) for n in array.shape)
    dtype = "uint8" if array is None else str(array.dtype)
    return Header(kind=kind, run_id=run_id, sequence=sequence, shape=shape, dtype=dtype, **fields)


def decode(frames: Sequence[Any]) -> Message:
    """Validate a received [header, payload] message and view its payload; raise WireError."""
    if len(frames) != 2:
        raise WireError(f"expected 2 frames [header, payload], got {len(frames)}")
    header = parse_header(_as_bytes(frames[0]))
    return Message(header, _payload_array(header, _as_buffer(frames[1])))


def unpack_map(raw: bytes, max_bytes: int, what: str = "header") -> dict[str, Any]:
    """Decode msgpack bytes that must hold a map (a header, a control message); a bad one
    raises WireError (a ValueError) naming ``what`` is wrong."""
    if len(raw) > max_bytes:
        raise WireError(f"{what} of {len(raw)} bytes exceeds {max_bytes}")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError,
            TypeError) as exc:
        raise WireError(f"{what} is not valid msgpack: {exc}") from exc
    if not isinstance(data, dict):
        raise WireError(f"{what} must be a map, got {type(data).__name__}")
    return data


def parse_header(raw: bytes) -> Header:
    """Decode and check a msgpack header: types, version, kind, shape and dtype limits."""
    data = unpack_map(raw, MAX_HEADER_BYTES)
    unknown = set(data) - set(_FIELD_TYPES)
    if unknown:
        raise WireError(f"header has unknown fields {sorted(map(str, unknown))}")
    missing = {"kind", "run_id", "sequence", "version", "shape", "dtype"} - set(data)
    if missing:
        raise WireError(f"header lacks fields {sorted(missing)}")
    for name, value in data.items():
        types = _FIELD_TYPES[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise WireError(f"header field {name!r} has type {type(value).__name__}")
    if data["version"] != WIRE_VERSION:
        raise WireError(f"wire version {data['version']} is not {WIRE_VERSION}")
    try:
        kind = Kind(data["kind"])
    except ValueError as exc:
        raise WireError(f"unknown message kind {data['kind']!r}") from exc
    shape = data["shape"]
    if not 1 <= len(shape) <= MAX_NDIM or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_DIM for n in shape
    ):
        raise WireError(f"shape {shape!r} outside limits (1..{MAX_NDIM} dims of 0..{MAX_DIM})")
    if data["dtype"] not in ALLOWED_DTYPES:
        raise WireError(f"dtype {data['dtype']!r} not in {sorted(ALLOWED_DTYPES)}")
    for name in ("frame_sequences", "timestamps_s"):
        values = data.get(name, [])
        if len(values) > MAX_LIST_LEN or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise WireError(f"header field {name!r} must be a list of numbers")
        if not all(math.isfinite(v) for v in values):
            raise WireError(f"header field {name!r} holds a non-finite number")
    data["kind"] = kind
    data["shape"] = tuple(shape)
    data["frame_sequences"] = tuple(int(v) for v in data.get("frame_sequences", []))
    data["timestamps_s"] = tuple(float(v) for v in data.get("timestamps_s", []))
    return Header(**data)


def pack_display(topic: str, header: Header, array: np.ndarray) -> bytes:
    """One-frame display message (ZMQ CONFLATE keeps single frames only).

    Layout: ``topic`` ASCII, a NUL byte, uint32 little-endian header length, header, payload.
    """
    head = header.pack()
    payload = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data  # one copy in join
    return b"".join((topic.encode("ascii"), b"\x00", DISPLAY_LENGTH.pack(len(head)), head, payload))


def unpack_display(data: bytes | memoryview) -> tuple[str, Message]:
    """Inverse of :func:`pack_display`, with the same validation as :func:`decode`.

    ``data`` may be a received ZMQ frame's buffer: the array then views it without a copy.
    """
    view = memoryview(data).cast("B")
    cut = bytes(view[:64]).find(b"\x00")
    if cut <= 0:
        raise WireError("display message lacks a topic")
    start = cut + 1 + DISPLAY_LENGTH.size
    if view.nbytes < start:
        raise WireError("display message truncated before its header")
    (length,) = DISPLAY_LENGTH.unpack_from(view, cut + 1)
    if view.nbytes < start + length:
        raise WireError("display message truncated inside its header")
    header = parse_header(bytes(view[start : start + length]))
    array = _payload_array(header, view[start + length :])
    return bytes(view[:cut]).decode("ascii", errors="replace"), Message(header, array)


def _payload_array(header: Header, payload: memoryview) -> np.ndarray:
    dtype = np.dtype(header.dtype)
    expected = math.prod(header.shape) * dtype.itemsize
    if expected > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload of {expected} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if payload.nbytes != expected:
        raise WireError(
            f"payload is {payload.nbytes} bytes but {header.dtype}{list(header.shape)} "
            f"needs {expected}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(header.shape)


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    buffer = getattr(frame, "bytes", None)
    if isinstance(buffer, bytes):
        return buffer
    return bytes(memoryview(frame))


def _as_buffer(frame: Any) -> memoryview:
    buffer = getattr(frame, "buffer", None)
    if isinstance(buffer, memoryview):
        return buffer.cast("B") if buffer.format != "B" else buffer
    return memoryview(frame).cast("B")
