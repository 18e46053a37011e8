"""Property tests: headers generated field by field (each field valid, missing or of a hostile
type or value) never make a receiver raise. The decoder either returns a message whose fields
all have their schema's types, or raises WireError; the session's results handler, the
worker's raw handler and the display decoder then never raise on what was decoded."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.recorder import RunLayout, RunRecorder
from acquisition.session import RunSession, SessionOptions
from acquisition.supervisor import WorkerCommand, WorkerPool
from acquisition.transport import MessageReceiver
from acquisition.wire import (
    INFO_SCHEMAS,
    WIRE_VERSION,
    Kind,
    Message,
    WireError,
    decode,
    encode,
    header_for,
    pack_display,
    unpack_display,
)
from inference.worker import WorkerState, _handle

RUN_ID = "r" * 32
WORKER_ID = "w" * 16

# anything msgpack can carry: the hostile alternative for every field
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8)


_MISSING = object()
FINITE = st.floats(0.0, 2e9)

# schema-valid values of every info field (each kind's schema picks its own)
INFO_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "busy_since_s": FINITE, "pid": st.integers(0, 2**31), "processed": st.integers(0, 99),
    "failed": st.integers(0, 9), "rejected": st.integers(0, 9), "fatal": st.text(max_size=30),
    "hello": st.fixed_dictionaries({"channels": st.dictionaries(
        st.sampled_from(["0", "1"]), st.fixed_dictionaries({
            "model_name": st.text(max_size=8), "model_sha256": st.text(max_size=8),
            "sr_shape": st.lists(st.integers(1, 64), min_size=2, max_size=2)}), max_size=2)}),
    "photon_count_e": st.floats(allow_nan=True), "raw_sent_s": FINITE,
    "sr_scale": st.floats(1e-6, 10.0), "timings_ms": st.dictionaries(
        st.text(max_size=5), FINITE, max_size=3),
    "flags": st.lists(st.text(max_size=8), max_size=3), "model_name": st.text(max_size=8),
    "model_sha256": st.text(max_size=8), "error": st.text(max_size=20), "imc": st.booleans(),
    "command": st.sampled_from(["flush", "other", ""]), "flushed": st.integers(0, 3),
    "channel_names": st.lists(st.text(max_size=5), max_size=4), "acquired_s": FINITE,
    "temporal": st.booleans(),
}


@st.composite
def headers(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A header map built field by field: every field valid, then 0-3 of them (envelope or
    info) replaced by any other value or dropped, sometimes an unknown field added; and a
    payload of the size its shape claims (mostly)."""
    kind = draw(st.sampled_from(list(Kind)))
    shape = draw(st.lists(st.integers(0, 24), min_size=1, max_size=3))
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
    schema = INFO_SCHEMAS[kind]
    info_names = draw(st.sets(st.sampled_from(sorted(set(schema.model_fields) & set(
        INFO_FIELDS))), max_size=6))
    fields: dict[str, Any] = {
        "version": WIRE_VERSION, "kind": kind.value,
        "run_id": draw(st.sampled_from([RUN_ID, RUN_ID, "other", ""])),
        "worker_id": draw(st.sampled_from([WORKER_ID, WORKER_ID, "x", ""])),
        "sequence": draw(st.integers(0, 2**40)), "time_point": draw(st.integers(-1, 12)),
        "channel": draw(st.integers(-1, 2)), "shape": shape, "dtype": dtype,
        "n_orientations": draw(st.integers(1, 3)), "n_phases": draw(st.integers(1, 3)),
        "laser_nm": draw(st.integers(0, 700)), "exposure_ms": draw(FINITE),
        "frame_sequences": draw(st.lists(st.integers(0, 99), max_size=9)),
        "timestamps_s": draw(st.lists(FINITE, max_size=9)), "sent_s": time.time(),
        "info": {name: draw(INFO_FIELDS[name]) for name in sorted(info_names)},
    }
    if kind is Kind.SR_RESULT and draw(st.booleans()):  # one the session would store
        fields.update(shape=[16, 16], dtype="uint16")
        fields["info"]["sr_scale"] = run_file.SR_SCALE
        shape, dtype = [16, 16], "uint16"
    for _ in range(draw(st.integers(0, 3))):  # corrupt some fields, one at a time
        info = fields.get("info")
        where = info if draw(st.booleans()) and isinstance(info, dict) and info else fields
        if not isinstance(where, dict) or not where:
            continue
        name = draw(st.sampled_from(sorted(where)))
        where[name] = draw(st.one_of(ANY_VALUE, st.just(_MISSING)))
        if where[name] is _MISSING:
            del where[name]
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.text(max_size=6))] = draw(ANY_VALUE)  # an unknown field
    size = math.prod(shape) * {"uint8": 1, "uint16": 2, "float32": 4}[dtype]
    size += draw(st.sampled_from([0, 0, 0, 0, 1, -1])) if size else 0
    return fields, bytes(size)


def decoded_or_none(fields: dict[str, Any], payload: bytes) -> Message | None:
    try:
        head = msgpack.packb(fields, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return None  # not representable in msgpack: nobody can send it
    try:
        message = decode([head, payload])
    except WireError:
        return None
    h = message.header
    # whatever passed has the schema's types: no later float()/int() can fail
    assert isinstance(h.kind, Kind) and isinstance(h.run_id, str)
    assert isinstance(h.time_point, int) and isinstance(h.channel, int)
    assert all(isinstance(v, float) and math.isfinite(v) for v in h.timestamps_s)
    assert isinstance(h.sent_s, float) and math.isfinite(h.sent_s)
    for key in ("busy_since_s", "raw_sent_s", "acquired_s"):
        if key in h.info:
            assert isinstance(h.info[key], float) and math.isfinite(h.info[key])
    if "photon_count_e" in h.info:
        assert isinstance(h.info["photon_count_e"], float)
    if "timings_ms" in h.info:
        assert all(isinstance(v, float) for v in h.info["timings_ms"].values())
    return message


@pytest.fixture
def session(tmp_path: Path) -> Any:
    proto = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "passthrough"}],
        "timepoints": 10, "output": str(tmp_path / "run.h5")})
    run = RunSession(object(), None, proto, (8, 8), 62.6,
                     options=SessionOptions(display=False, fsync=False))
    run.run_id = RUN_ID
    layout = RunLayout(n_channels=1, n_orientations=3, n_phases=3, frame_shape=(8, 8),
                       sr_shape=(16, 16), pixel_size_nm=62.6, sr_models=("passthrough",))
    run.recorder = RunRecorder(proto.output, layout, {"run_id": RUN_ID}, fsync=False)
    command = WorkerCommand("ipc://x", "ipc://y", ("passthrough",), (9, 8, 8), run_id=RUN_ID)
    run.pool = WorkerPool([command], lambda slot, kind, detail: None)
    run.pool.supervisors[0].worker_id = WORKER_ID  # as if started: the ids it would own
    run.pool._slot_of_id[WORKER_ID] = 0
    run._in_flight = [0]
    run._labels = {0: "passthrough"}
    run._latest_raw_time_point = 10
    run.display = None

    class _Results:  # what rejections() reads from the receiver
        rejected = 0

    run.results = _Results()  # type: ignore[assignment]
    yield run
    run.recorder.close()


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(headers())
def test_results_handler_never_raises_on_field_by_field_headers(
        session: RunSession, header: tuple[dict[str, Any], bytes]) -> None:
    message = decoded_or_none(*header)
    if message is not None:
        session._on_result(message)  # must not raise: rejected, recorded or stored
    assert session.recorder is not None and session.recorder.error is None


class _Recon:
    def reconstruct(self, raw: np.ndarray) -> Any:
        class Result:
            image = np.zeros((2 * raw.shape[1], 2 * raw.shape[2]), np.float32)
            photon_count_e = 1.0
            flags: tuple[str, ...] = ()
        return Result()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_worker_handler_and_display_decoder_never_raise(header: tuple[dict[str, Any], bytes]
                                                        ) -> None:
    message = decoded_or_none(*header)
    if message is None:
        return
    sent: list[tuple[dict[str, Any], Kind, np.ndarray | None]] = []
    _handle(message, {0: _Recon()}, WorkerState(),
            lambda fields, kind, array: sent.append((dict(fields), kind, array)) is None)
    for fields, kind, array in sent:  # whatever the worker answers is itself valid on the wire
        run_id = str(fields.pop("run_id", ""))
        answer = header_for(kind, run_id, 1, array, worker_id=WORKER_ID, **fields)
        decode(encode(answer, array))
    topic, again = unpack_display(pack_display("sr", message.header, message.array))
    assert topic == "sr" and repr(again.header.info) == repr(message.header.info)  # NaN too


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_receiver_never_raises(header: tuple[dict[str, Any], bytes]) -> None:
    fields, payload = header
    try:
        head = msgpack.packb(fields, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return

    class _Frames:
        def __init__(self) -> None:
            self.frames = [head, payload]

        def recv_multipart(self, copy: bool = False) -> list[bytes]:
            return self.frames

        def get(self, option: int) -> int:  # ZMQ_EVENTS: nothing flagged, the poller decides
            return 0

    receiver = MessageReceiver.__new__(MessageReceiver)
    receiver.socket = _Frames()  # type: ignore[assignment]
    receiver.name = "property"
    receiver.rejected = receiver.received = 0

    class _Ready:
        def poll(self, timeout_ms: int) -> bool:
            return True

    receiver._poller = _Ready()  # type: ignore[assignment]
    message = receiver.receive(timeout_ms=0)
    assert (message is None) == (receiver.rejected == 1)
