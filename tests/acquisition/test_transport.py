"""Sockets: loopback by default, Curve required elsewhere, non-blocking raw path, conflation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from acquisition.transport import (
    IPC_PATH_MAX_BYTES,
    CurveKeys,
    DisplayPublisher,
    DisplaySubscriber,
    Endpoints,
    MessageReceiver,
    RawSetSender,
    TransportSecurityError,
    check_endpoint,
    endpoint_is_local,
    open_socket,
)
from acquisition.wire import Kind, header_for


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.mark.parametrize("endpoint", ["ipc:///tmp/x", "inproc://a", "tcp://127.0.0.1:5555",
                                      "tcp://localhost:1", "tcp://[::1]:5"])
def test_local_endpoints_need_no_keys(endpoint: str) -> None:
    assert endpoint_is_local(endpoint)
    check_endpoint(endpoint, None)


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5555", "tcp://*:5555",
                                      "tcp://192.168.1.20:5555", "tcp://scope-pc:5555"])
def test_exposed_endpoints_are_refused_without_curve_keys(endpoint: str) -> None:
    with pytest.raises(TransportSecurityError, match="CurveZMQ"):
        check_endpoint(endpoint, None)
    keys = CurveKeys(*zmq.curve_keypair())
    check_endpoint(endpoint, keys)


def test_curve_secured_pair_talks(context: zmq.Context) -> None:
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    server = CurveKeys(server_public, server_secret)
    client = CurveKeys(client_public, client_secret, server_public_key=server_public)
    pull = open_socket(context, zmq.PULL, "tcp://127.0.0.1:*", bind=True, keys=server)
    endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    push = open_socket(context, zmq.PUSH, endpoint, bind=False, keys=client)
    try:
        push.send(b"hello")
        assert pull.poll(5000) and pull.recv() == b"hello"
        assert pull.getsockopt(zmq.CURVE_SERVER) == 1
    finally:
        push.close(0)
        pull.close(0)


def test_raw_sender_never_blocks_and_reports_refusal(context: zmq.Context, tmp_path) -> None:
    endpoints = Endpoints.ipc(tmp_path)
    sender = RawSetSender(context, endpoints.raw, high_water_mark=2)
    array = np.zeros((9, 8, 8), np.uint16)
    try:
        start = time.monotonic()
        # No worker connected: nothing can be queued, and send returns at once.
        assert not sender.send(header_for(Kind.RAW_SET, "r", 1, array), array)
        pull = open_socket(context, zmq.PULL, endpoints.raw, bind=False, RCVHWM=1)
        time.sleep(0.2)
        accepted = [sender.send(header_for(Kind.RAW_SET, "r", i, array), array)
                    for i in range(50)]
        assert time.monotonic() - start < 2.0
        assert accepted[0] and not all(accepted)  # bounded: a slow worker means refusals
        assert sender.refused == 1 + accepted.count(False)
        receiver = MessageReceiver(pull, "w")
        got = [m.header.sequence for m in iter(lambda: receiver.receive(200), None)]
        assert got == [i for i, ok in enumerate(accepted) if ok]  # every accepted set arrives
        pull.close(0)
    finally:
        sender.close()


def test_display_stream_keeps_only_the_newest(context: zmq.Context, tmp_path) -> None:
    endpoints = Endpoints.ipc(tmp_path)
    publisher = DisplayPublisher(context, endpoints.display)
    subscriber = DisplaySubscriber(context, endpoints.display, "sr")
    try:
        time.sleep(0.3)  # slow joiner
        for i in range(20):
            image = np.full((4, 4), i, np.float32)
            publisher.publish("sr", header_for(Kind.SR_RESULT, "r", i, image, time_point=i),
                              image)
            publisher.publish("raw", header_for(Kind.RAW_SET, "r", i, image), image)
        time.sleep(0.2)
        message = subscriber.latest(timeout_ms=2000)
        assert message is not None and message.header.time_point == 19
        assert float(message.array[0, 0]) == 19.0
        assert subscriber.latest(timeout_ms=50) is None  # conflated: nothing older queued
        with pytest.raises(ValueError, match="topic"):
            publisher.publish("secret", message.header, message.array)
    finally:
        subscriber.close()
        publisher.close()


def test_display_publisher_knows_when_a_viewer_is_connected(context: zmq.Context,
                                                            tmp_path) -> None:
    """The outlet packs display images only while someone watches (headless runs pay
    nothing); a viewer that connects is seen, and one that leaves is forgotten."""
    from acquisition.display_outlet import DisplayOutlet
    from acquisition.engine import RawSet, TimePoint

    endpoints = Endpoints.ipc(tmp_path)
    publisher = DisplayPublisher(context, endpoints.display)
    packed: list[str] = []
    original = publisher.publish

    def counting(topic, header, array) -> None:
        packed.append(topic)
        original(topic, header, array)

    publisher.publish = counting  # type: ignore[method-assign]
    outlet = DisplayOutlet(publisher, max_hz=1000.0)
    frames = np.zeros((9, 8, 8), np.uint16)
    point = TimePoint(0, 0.0, 0.0, (RawSet(0, 0, 488, 1.0, frames, np.zeros(9),
                                           np.arange(9)),))

    def wait_for(state: bool) -> bool:
        deadline = time.monotonic() + 5
        while publisher.has_viewers() is not state and time.monotonic() < deadline:
            time.sleep(0.01)
        return publisher.has_viewers() is state

    try:
        assert not publisher.has_viewers()
        outlet.offer_raw(point, 0.0)
        assert packed == []
        subscriber = DisplaySubscriber(context, endpoints.display, "raw")
        assert wait_for(True)
        outlet.offer_raw(point, 0.0)
        assert packed and packed[0] == "raw"
        subscriber.close()
        assert wait_for(False)
        packed.clear()
        outlet.offer_raw(point, 0.0)
        assert packed == []
    finally:
        outlet.close()


def test_ipc_folder_too_deep_for_a_socket_path_falls_back_to_a_temporary_folder(
        tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    endpoints = Endpoints.ipc(deep)
    try:
        assert endpoints.temporary_folder is not None  # the session removes it at the end
        assert not str(endpoints.display).startswith(f"ipc://{deep}")
        longest = f"{endpoints.display}-qc".removeprefix("ipc://")
        assert len(longest.encode()) <= IPC_PATH_MAX_BYTES
        context = zmq.Context()
        try:  # the longest endpoint of the folder binds
            socket = context.socket(zmq.PUB)
            socket.bind(f"ipc://{longest}")
            socket.close(linger=0)
        finally:
            context.term()
    finally:
        endpoints.remove_temporary_folder()
    assert not endpoints.temporary_folder.exists()
    short = Endpoints.ipc(tmp_path)  # a folder that fits is used as given
    assert short.temporary_folder is None and short.raw == f"ipc://{tmp_path}/raw"
