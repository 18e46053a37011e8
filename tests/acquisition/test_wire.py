"""Wire protocol: round trips are exact; malformed or random bytes are rejected, never crash."""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from acquisition.transport import MessageReceiver
from acquisition.wire import (
    WIRE_VERSION,
    Header,
    Kind,
    WireError,
    decode,
    encode,
    header_for,
    pack_display,
    parse_header,
    unpack_display,
)


def raw_set(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65535, size=(9, 12, 10), dtype=np.uint16)


def test_round_trip_is_exact_and_keeps_every_field() -> None:
    array = raw_set()
    header = header_for(Kind.RAW_SET, "run-1", 42, array, time_point=3, channel=1,
                        laser_nm=560, exposure_ms=12.5, n_orientations=3, n_phases=3,
                        frame_sequences=tuple(range(100, 109)),
                        timestamps_s=tuple(0.1 * i for i in range(9)))
    frames = encode(header, array)
    assert frames[1] is array  # the payload is the array's own buffer (zero-copy)
    message = decode([frames[0], memoryview(array).cast("B")])
    assert message.header == header
    assert message.array.dtype == np.uint16 and message.array.shape == (9, 12, 10)
    np.testing.assert_array_equal(message.array, array)



@pytest.mark.parametrize("shape", [(0, 0), (2, 0), (0, 5)])
def test_an_empty_image_round_trips(shape: tuple[int, int]) -> None:
    """A zero-size float32 image (a worker's answer to an empty set) decodes as itself; it
    raised TypeError (memoryview cannot cast a view with a zero in its shape)."""
    array = np.zeros(shape, np.float32)
    message = decode(encode(header_for(Kind.SR_RESULT, "run-1", 1, array), array))
    assert message.array.shape == shape and message.array.dtype == np.float32

def test_encode_refuses_a_header_that_lies_about_the_array() -> None:
    array = raw_set()
    header = header_for(Kind.RAW_SET, "r", 1, array[:8])
    with pytest.raises(WireError, match="header says"):
        encode(header, array)


def _header_dict(**changes: object) -> dict:
    base = {"kind": "raw_set", "run_id": "r", "sequence": 1, "version": WIRE_VERSION,
            "shape": [9, 12, 10], "dtype": "uint16"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "payload_bytes", "match"),
    [
        ({"version": 99}, 2160, "version"),
        ({"kind": "pickle"}, 2160, "unknown message kind"),
        ({"dtype": "object"}, 2160, "dtype"),
        ({"shape": [9, 12, 11]}, 2160, "payload is 2160 bytes"),
        ({"shape": [1, 1, 1, 1, 1]}, 2, "shape"),
        ({"shape": [100000, 100000]}, 0, "shape"),
        ({"shape": [-1, 4]}, 0, "shape"),
        ({"sequence": "7"}, 2160, "sequence"),
        ({"sequence": True}, 2160, "sequence"),
        ({"run_id": None}, 2160, "run_id: lacks"),
        ({"evil": 1}, 2160, "evil: unknown field"),
        ({"timestamps_s": [float("nan")]}, 2160, "non-finite"),
    ],
)
def test_malformed_headers_are_rejected_with_a_reason(changes: dict, payload_bytes: int,
                                                       match: str) -> None:
    head = msgpack.packb(_header_dict(**changes))
    with pytest.raises(WireError, match=match):
        decode([head, bytes(payload_bytes)])


def test_wrong_frame_count_and_non_map_headers_are_rejected() -> None:
    with pytest.raises(WireError, match="expected 2 frames"):
        decode([b"x"])
    with pytest.raises(WireError, match="must be a map"):
        decode([msgpack.packb([1, 2, 3]), b""])
    with pytest.raises(WireError, match="exceeds"):
        parse_header(b"\x00" * 70_000)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=256), min_size=0, max_size=4))
def test_random_bytes_only_ever_raise_wire_error(frames: list[bytes]) -> None:
    with contextlib.suppress(WireError):
        decode(frames)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["kind", "run_id", "sequence", "version", "shape",
                                        "dtype", "info", "timestamps_s", "channel"]),
                       st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=8), st.floats(),
                                 st.lists(st.integers(-5, 70000), max_size=5), st.none())),
       st.binary(max_size=64))
def test_random_headers_only_ever_raise_wire_error(fields: dict, payload: bytes) -> None:
    with contextlib.suppress(WireError):
        decode([msgpack.packb(fields), payload])


def test_display_message_round_trip_and_truncation() -> None:
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    data = pack_display("sr", header_for(Kind.SR_RESULT, "r", 3, image, time_point=3), image)
    topic, message = unpack_display(data)
    assert topic == "sr" and message.header.time_point == 3
    np.testing.assert_array_equal(message.array, image)
    for cut in (1, 5, len(data) - 1):
        with pytest.raises(WireError):
            unpack_display(data[:cut])


def test_receiver_counts_garbage_and_keeps_going() -> None:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = context.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    receiver = MessageReceiver(pull, "test")
    rng = np.random.default_rng(1)
    good = raw_set()
    try:
        for i in range(20):
            push.send_multipart([rng.bytes(int(rng.integers(0, 50))) for _ in range(i % 4)]
                                or [b""])
        push.send_multipart(encode(header_for(Kind.RAW_SET, "r", 1, good), good), copy=False)
        got = None
        for _ in range(40):
            got = receiver.receive(timeout_ms=500)
            if got is not None:
                break
        assert got is not None and got.header.sequence == 1
        np.testing.assert_array_equal(got.array, good)
        assert receiver.rejected == 20 and receiver.received == 1
        assert receiver.receive(timeout_ms=10) is None  # times out, no hang
    finally:
        push.close(0)
        pull.close(0)
        context.term()


def test_header_kind_round_trips_as_enum() -> None:
    header = Header(kind=Kind.HEARTBEAT, run_id="", sequence=0)
    assert parse_header(header.pack()).kind is Kind.HEARTBEAT


def test_wiener_result_with_its_pattern_parameters_passes_the_schema() -> None:
    """The worker sends Wiener's pattern rows with every SR result; the schema must keep
    them (a strict schema without the field rejected every Wiener result of a run)."""
    from acquisition import wire

    image = np.zeros((8, 8), dtype=np.float32)
    rows = [[0.27, 0.08, -0.05, 0.88], [0.06, 0.28, 2.06, 0.87], [-0.21, 0.19, 1.1, 0.85]]
    header = wire.header_for(wire.Kind.SR_RESULT, "run", 0, image, time_point=0, channel=0,
                             info={"model_name": "wiener", "sim_params": rows})
    message = wire.decode(wire.encode(header, image))
    assert message.header.info["sim_params"] == rows
    bad = wire.header_for(wire.Kind.SR_RESULT, "run", 1, image, time_point=0, channel=0,
                          info={"sim_params": [[0.1, 0.2, float("nan"), 0.9]]})
    with pytest.raises(wire.WireError):
        wire.decode(wire.encode(bad, image))
