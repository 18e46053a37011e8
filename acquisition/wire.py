"""The wire protocol between acquisition, inference worker and viewers: [header, payload].

The header is msgpack (no pickle anywhere), the payload the raw image buffer, sent zero-copy.
Every received header is validated field by field against one typed schema (pydantic, strict:
no type coercion) before anything uses it: the envelope (version, kind, run and worker id,
shape x dtype == payload size, sane limits) and the ``info`` map of its kind (a heartbeat's
``busy_since_s`` must be a finite number, an SR result's ``photon_count_e`` a number, ...). A
malformed message raises :class:`WireError`; receivers count and log it, never act on it.
The display stream and the GUI's control channel decode through the same functions.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Annotated, Any, Protocol

import msgpack
import numpy as np
import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

WIRE_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
MAX_NDIM = 4
MAX_DIM = 16_384
MAX_LIST_LEN = 4_096
MAX_ID_LEN = 64
MAX_TEXT_LEN = 4_096
ALLOWED_DTYPES = frozenset({"uint8", "uint16", "float32"})
DISPLAY_LENGTH = struct.Struct("<I")
# one message part: received (zero-copy or not) or as `encode` made it
Frame = zmq.Frame | bytes | memoryview | np.ndarray


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

    ``run_id`` names the run a message belongs to and ``worker_id`` the worker process (one
    id per start) that sent it; receivers drop messages of other runs and workers.
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


# --- the schema: one place, every field -----------------------------------------------------

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0.0)]
Count = Annotated[int, Field(ge=0, le=2**62)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LEN)]
Ident = Annotated[str, Field(max_length=MAX_ID_LEN)]
Name = Annotated[str, Field(max_length=256)]
Dim = Annotated[int, Field(ge=0, le=MAX_DIM)]
SrDim = Annotated[int, Field(ge=1, le=MAX_DIM)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ChannelHello(_Strict):
    """One reconstructed channel as the worker announces it."""

    model_name: Name = ""
    model_sha256: Name = ""
    sr_shape: Annotated[list[SrDim], Field(min_length=2, max_length=2)]
    note: Text = ""


class ImcHello(_Strict):
    """The worker's IMC-SR model."""

    model_name: Name = ""
    model_sha256: Name = ""
    channel_names: Annotated[list[Name], Field(max_length=16)] = []
    temporal: bool = False
    latency_frames: Annotated[int, Field(ge=0, le=1024)] = 0
    channel: Annotated[int, Field(ge=0, le=255)] = 0


class Hello(_Strict):
    """What a worker loaded, sent once in its first heartbeat."""

    channels: Annotated[dict[Annotated[str, Field(max_length=8)], ChannelHello],
                        Field(max_length=256)] = {}
    pid: Count = 0
    calibrated: bool = False
    imc: ImcHello | None = None


class HeartbeatInfo(_Strict):
    """A worker's heartbeat: alive, how long the current set has run (0 idle), counters."""

    pid: Count = 0
    processed: Count = 0
    failed: Count = 0
    rejected: Count = 0
    busy_since_s: NonNegative = 0.0  # wall time the current set started; 0 when idle
    hello: Hello | None = None
    fatal: Text | None = None


MAX_TRUST_MAP_BLOCKS = 64  # per side (one value per 8 x 8 raw px; the header stays < 64 KiB)


class TrustInfo(_Strict):
    """The trust record of one SR image (inference.trust): three scalars and the block map."""

    raw_chi2: NonNegative
    resolution_scaled_pearson: Annotated[float, Field(allow_inf_nan=False, ge=-1.0, le=1.0)]
    beyond_support_fraction: Annotated[float, Field(allow_inf_nan=False, ge=0.0, le=1.0)]
    raw_chi2_map: Annotated[
        list[Annotated[list[NonNegative], Field(min_length=1, max_length=MAX_TRUST_MAP_BLOCKS)]],
        Field(min_length=1, max_length=MAX_TRUST_MAP_BLOCKS)]


class ResultInfo(_Strict):
    """An SR or IMC-SR result (and its display copy): photons, timings, model, encoding."""

    photon_count_e: float = math.nan  # NaN when uncalibrated
    timings_ms: Annotated[dict[Name, NonNegative], Field(max_length=64)] = {}
    model_name: Name = ""
    model_sha256: Name = ""
    flags: Annotated[list[Text], Field(max_length=64)] = []
    raw_sent_s: NonNegative = 0.0
    sr_scale: Annotated[float, Field(allow_inf_nan=False, gt=0.0)] | None = None
    channel_names: Annotated[list[Name], Field(max_length=16)] = []
    acquired_s: NonNegative = 0.0  # display copies: when the raw set was acquired
    # Wiener SIM: the pattern it used, one [kx, ky, phase, modulation] row per orientation
    sim_params: Annotated[
        list[Annotated[list[Finite], Field(min_length=4, max_length=4)]], Field(max_length=16)
    ] | None = None
    trust: TrustInfo | None = None  # every Nth set (worker --trust-every): for /qc
    # an SR image left in the worker's result ring (acquisition.result_ring), not in a payload
    ring_slot: Annotated[int, Field(ge=0, le=65_535)] | None = None
    ring_offset: Annotated[int, Field(ge=0, le=MAX_PAYLOAD_BYTES)] | None = None
    ring_generation: Count | None = None


class EventInfo(_Strict):
    """A worker fault or control message (the IMC flush request and its confirmation)."""

    error: Text = ""
    imc: bool = False
    raw_sent_s: NonNegative = 0.0
    command: Name = ""
    flushed: Count | None = None


class ImageInfo(_Strict):
    """Raw and wide-field images on the display stream; a raw set sent by reference names
    its place in the run's shared-memory ring (acquisition.raw_ring) instead of a payload."""

    photon_count_e: float = math.nan
    sr_scale: Annotated[float, Field(allow_inf_nan=False, gt=0.0)] | None = None
    acquired_s: NonNegative = 0.0
    ring_slot: Annotated[int, Field(ge=0, le=65_535)] | None = None
    ring_offset: Annotated[int, Field(ge=0, le=MAX_PAYLOAD_BYTES)] | None = None
    ring_generation: Count | None = None


INFO_SCHEMAS: dict[Kind, type[_Strict]] = {
    Kind.RAW_SET: ImageInfo, Kind.WIDEFIELD: ImageInfo, Kind.SR_RESULT: ResultInfo,
    Kind.IMC_RESULT: ResultInfo, Kind.EVENT: EventInfo, Kind.HEARTBEAT: HeartbeatInfo,
}


class HeaderSchema(_Strict):
    """The envelope of every message; ``info`` is checked by its kind's schema afterwards."""

    version: int
    kind: Kind
    run_id: Ident
    worker_id: Ident = ""
    sequence: Count
    time_point: Annotated[int, Field(ge=-1, le=2**40)] = -1
    channel: Annotated[int, Field(ge=-1, le=255)] = -1
    shape: Annotated[list[Dim], Field(min_length=1, max_length=MAX_NDIM)]
    dtype: str
    n_orientations: Annotated[int, Field(ge=1, le=64)] = 1
    n_phases: Annotated[int, Field(ge=1, le=64)] = 1
    laser_nm: Annotated[int, Field(ge=0, le=100_000)] = 0
    exposure_ms: NonNegative = 0.0
    frame_sequences: Annotated[list[Annotated[int, Field(ge=-(2**62), le=2**62)]],
                               Field(max_length=MAX_LIST_LEN)] = []
    timestamps_s: Annotated[list[Finite], Field(max_length=MAX_LIST_LEN)] = []
    sent_s: NonNegative = 0.0
    info: dict[str, Any] = {}

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, use_enum_values=False)


def _coerce_kind(data: dict[str, object]) -> None:
    """Strict mode wants a Kind instance: map the wire string (or refuse it) first."""
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise WireError(f"header field 'kind' has type {type(kind).__name__}")
    try:
        data["kind"] = Kind(kind)
    except ValueError as exc:
        raise WireError(f"unknown message kind {kind!r}") from exc


_PLAIN_ERRORS = {
    "missing": "lacks this field",
    "extra_forbidden": "unknown field",
    "finite_number": "non-finite number",
}


def _describe(exc: ValidationError, where: str) -> str:
    """The first few failures of a validation as 'field.path: what' (no input echo)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        path = ".".join(str(p) for p in error["loc"]) or "(root)"
        text = _PLAIN_ERRORS.get(error["type"], error["msg"])
        parts.append(f"{where}{path}: {text}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def unpack_map(raw: bytes, max_bytes: int, what: str) -> dict[str, object]:
    """Decode msgpack bytes that must hold a map (a header or a control message)."""
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


def validate_header(data: Mapping[str, object]) -> Header:
    """Check a decoded header map against the schema (envelope, then its kind's info)."""
    data = dict(data)
    if "version" in data and data["version"] != WIRE_VERSION:
        raise WireError(f"wire version {data['version']!r} is not {WIRE_VERSION}")
    _coerce_kind(data)
    try:
        envelope = HeaderSchema.model_validate(data)
    except ValidationError as exc:
        raise WireError(f"header {_describe(exc, '')}") from exc
    if envelope.dtype not in ALLOWED_DTYPES:
        raise WireError(f"dtype {envelope.dtype!r} not in {sorted(ALLOWED_DTYPES)}")
    try:
        info = INFO_SCHEMAS[envelope.kind].model_validate(envelope.info)
    except ValidationError as exc:
        raise WireError(f"{envelope.kind} header {_describe(exc, 'info.')}") from exc
    return Header(
        kind=envelope.kind, run_id=envelope.run_id, worker_id=envelope.worker_id,
        sequence=envelope.sequence, time_point=envelope.time_point, channel=envelope.channel,
        shape=tuple(envelope.shape), dtype=envelope.dtype,
        n_orientations=envelope.n_orientations, n_phases=envelope.n_phases,
        laser_nm=envelope.laser_nm, exposure_ms=envelope.exposure_ms,
        frame_sequences=tuple(envelope.frame_sequences),
        timestamps_s=tuple(envelope.timestamps_s), sent_s=envelope.sent_s,
        info=info.model_dump(exclude_unset=True), version=envelope.version)


def parse_header(raw: bytes) -> Header:
    """Decode and validate a msgpack header (see :func:`validate_header`)."""
    return validate_header(unpack_map(raw, MAX_HEADER_BYTES, "header"))


# --- framing --------------------------------------------------------------------------------


def encode(header: Header, array: np.ndarray | None = None) -> list[Any]:
    """Frames for ``send_multipart(..., copy=False)``: header bytes and the array's own buffer
    (typed ``Any``: pyzmq's stubs take an ndarray as a buffer only on Python >= 3.12)."""
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


class PayloadRing(Protocol):
    """Where payloads sent by reference live: raw sets for a worker
    (``acquisition.raw_ring.RingReader``), SR images for the acquisition (its workers'
    ``acquisition.result_ring.ResultRing``)."""

    def view(self, header: Header) -> np.ndarray:
        """The array the header names; WireError when it cannot be resolved (also when
        this ring does not carry the header's kind)."""
        ...


def decode(frames: Sequence[Frame], ring: PayloadRing | None = None) -> Message:
    """Validate a received [header, payload] message and view its payload; raise WireError.

    A raw set or SR result whose header names a ring slot (``info.ring_slot``) has an empty
    payload frame; its array is resolved in ``ring``, which a receiver without one refuses.
    """
    if len(frames) != 2:
        raise WireError(f"expected 2 frames [header, payload], got {len(frames)}")
    header = parse_header(_as_bytes(frames[0]))
    if header.info.get("ring_slot") is not None:
        if header.kind not in (Kind.RAW_SET, Kind.SR_RESULT):
            raise WireError(f"a {header.kind} message cannot name a ring slot")
        if _as_buffer(frames[1]).nbytes:
            raise WireError("a ring reference must come with an empty payload frame")
        if ring is None:
            raise WireError("message names a shared-memory ring slot, but this receiver maps "
                            "no ring")
        return Message(header, ring.view(header))
    return Message(header, _payload_array(header, _as_buffer(frames[1])))


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


def _as_bytes(frame: Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    if isinstance(frame, np.ndarray):
        return frame.tobytes()
    return bytes(frame)


def _as_buffer(frame: Frame) -> memoryview:
    if isinstance(frame, zmq.Frame):
        view = frame.buffer
    elif isinstance(frame, np.ndarray):
        view = frame.data
    else:
        view = memoryview(frame)
    if view.format == "B":
        return view
    # an empty array (a zero in its shape) cannot be cast: its bytes are no bytes
    return view.cast("B") if view.nbytes else memoryview(b"")
