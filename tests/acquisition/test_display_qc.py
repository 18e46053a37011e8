"""The display stream's 'qc' topic: trust records with their map, and Wiener fallbacks with
their reason, for every channel; unconflated, validated by the wire schema like every message."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from acquisition.display_outlet import QC_REPEAT_S, DisplayOutlet, is_fallback
from acquisition.transport import (
    DisplayPublisher,
    DisplaySubscriber,
    TransportSecurityError,
    qc_endpoint,
)
from acquisition.wire import (
    Header,
    Kind,
    Message,
    WireError,
    header_for,
    pack_display,
    unpack_display,
)

FALLBACK = "auto:wiener: photon count 14.29 e- above 12 e-, where Wiener SIM is as good as " \
           "dfcan-sim (assessment)"


def trust(chi2_map: np.ndarray) -> dict[str, object]:
    return {"raw_chi2": float(chi2_map.mean()), "resolution_scaled_pearson": 0.997,
            "beyond_support_fraction": 0.0001, "raw_chi2_map": chi2_map.tolist()}


def result(time_point: int, channel: int = 0, model: str = "wiener",
           flags: tuple[str, ...] = (), record: dict[str, object] | None = None) -> Message:
    image = np.zeros((8, 8), np.uint16)
    info: dict[str, object] = {"sr_scale": 1 / 65535, "photon_count_e": 14.3,
                               "model_name": model, "flags": ["iterations=1", *flags]}
    if record is not None:
        info["trust"] = record
    return Message(header_for(Kind.SR_RESULT, "r", time_point, image, time_point=time_point,
                              channel=channel, info=info), image)


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Header, np.ndarray]] = []

    def publish(self, topic: str, header: Header, array: np.ndarray) -> None:
        self.sent.append((topic, header, array))

    def qc(self) -> list[tuple[Header, np.ndarray]]:
        return [(h, a) for topic, h, a in self.sent if topic == "qc"]


def test_trust_records_of_every_channel_go_out_with_their_map() -> None:
    sink = Sink()
    outlet = DisplayOutlet(sink)  # type: ignore[arg-type]
    chi2 = np.array([[1.0, 1.2], [7.5, 0.9]], np.float32)
    outlet.offer_result(result(0))  # no trust record, no fallback: nothing under 'qc'
    assert sink.qc() == []
    outlet.offer_result(result(10, channel=1, record=trust(chi2)))  # not the display channel
    (header, array), = sink.qc()
    assert header.channel == 1 and header.time_point == 10
    np.testing.assert_array_equal(array, chi2)
    assert array.dtype == np.float32
    assert header.info["trust"]["raw_chi2_map"] == chi2.tolist()
    assert header.info["model_name"] == "wiener"
    # the message passes the strict schema on the way to a window
    _, message = unpack_display(pack_display("qc", header, array))
    np.testing.assert_array_equal(message.array, chi2)


def test_fallback_goes_out_on_change_and_then_once_a_second(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    clock = {"now": 10.0}
    monkeypatch.setattr("acquisition.display_outlet.time.monotonic", lambda: clock["now"])
    sink = Sink()
    outlet = DisplayOutlet(sink)  # type: ignore[arg-type]
    outlet.offer_result(result(0, flags=(FALLBACK,)))
    outlet.offer_result(result(1, flags=(FALLBACK,)))  # same state, within QC_REPEAT_S
    assert [h.time_point for h, _ in sink.qc()] == [0]
    header, array = sink.qc()[0]
    assert header.info["flags"] == [FALLBACK]  # only the auto: flag, with its reason
    assert array.shape == (1, 1) and np.isnan(array).all()  # no map without a trust record
    assert is_fallback(header.info["model_name"], header.info["flags"]).startswith(
        "photon count 14.29 e- above 12 e-")
    clock["now"] += QC_REPEAT_S
    outlet.offer_result(result(2, flags=(FALLBACK,)))  # repeated: a window attached later
    outlet.offer_result(result(3, model="dfcan-sim",
                               flags=("auto:dfcan-sim: inside the training domain",)))
    outlet.offer_result(result(4, model="dfcan-sim",
                               flags=("auto:dfcan-sim: inside the training domain",)))
    assert [h.time_point for h, _ in sink.qc()] == [0, 2, 3]  # 3: the fallback ended
    assert not is_fallback("dfcan-sim", sink.qc()[2][0].info["flags"])
    assert not is_fallback("wiener", [])  # Wiener asked for: no fallback


def test_a_bad_trust_map_is_refused_by_the_schema() -> None:
    chi2 = np.ones((2, 2), np.float32)
    record = trust(chi2)
    record["raw_chi2_map"] = [[1.0, float("nan")], [1.0, 1.0]]
    header = header_for(Kind.SR_RESULT, "r", 1, chi2, time_point=1, info={"trust": record})
    with pytest.raises(WireError, match="raw_chi2_map"):
        unpack_display(pack_display("qc", header, chi2))


def test_qc_subscriber_keeps_every_record(tmp_path: Path) -> None:
    """'qc' is not conflated: a window that reads late still gets every trust record."""
    context = zmq.Context.instance()
    endpoint = f"ipc://{tmp_path}/display"
    publisher = DisplayPublisher(context, endpoint)
    subscriber = DisplaySubscriber(context, endpoint, "qc", conflate=False)
    conflated = DisplaySubscriber(context, endpoint, "qc")
    try:
        outlet = DisplayOutlet(publisher)
        # PUB drops everything until a subscription has reached it (ZeroMQ's slow joiner):
        # offer the first record until it arrives, however loaded the machine is
        deadline = time.monotonic() + 10.0
        got: list[Message] = []
        while not got and time.monotonic() < deadline:
            outlet.offer_result(result(0, record=trust(np.full((2, 2), 1.0, np.float32))))
            if subscriber.socket.poll(100):
                got += subscriber.drain()
        time.sleep(0.2)
        got = got[:1] + [m for m in subscriber.drain() if m.header.time_point != 0]
        for t in range(1, 5):
            outlet.offer_result(result(10 * t, record=trust(np.full((2, 2), 1.0 + t, np.float32))))
        deadline = time.monotonic() + 5.0
        while len(got) < 5 and time.monotonic() < deadline:
            if subscriber.socket.poll(100):  # waits without taking a message
                got += subscriber.drain()
        newest = conflated.newest()
    finally:
        for sub in (subscriber, conflated):
            sub.close()
        publisher.close()
    assert [m.header.time_point for m in got] == [0, 10, 20, 30, 40]
    assert got[-1].header.time_point == 40 and float(got[-1].array[0, 0]) == 5.0
    assert newest is not None and newest.header.time_point == 40  # conflated: newest only


def test_no_qc_record_is_dropped_for_a_burst_of_images(tmp_path: Path) -> None:
    """Images stay newest-only while every 'qc' record between them reaches a slow window, in
    order: the records travel beside the conflated image PUB, not through it."""
    context = zmq.Context.instance()
    endpoint = f"ipc://{tmp_path}/display"
    publisher = DisplayPublisher(context, endpoint)
    qc = DisplaySubscriber(context, endpoint, "qc", conflate=False)
    sr = DisplaySubscriber(context, endpoint, "sr")
    image = np.zeros((16, 16), np.float32)

    def publish_qc(time_point: int) -> None:
        chi2 = np.full((2, 2), 1.0 + time_point, np.float32)
        publisher.publish("qc", header_for(Kind.SR_RESULT, "r", time_point, chi2,
                                           time_point=time_point, info={"trust": trust(chi2)}),
                          chi2)

    try:
        deadline = time.monotonic() + 10.0  # the slow joiner: until both subscriptions arrived
        first_qc: list[Message] = []
        first_sr: Message | None = None
        while (not first_qc or first_sr is None) and time.monotonic() < deadline:
            publish_qc(0)
            publisher.publish("sr", header_for(Kind.SR_RESULT, "r", 0, image), image)
            time.sleep(0.05)
            first_qc += qc.drain()
            first_sr = sr.newest() or first_sr
        assert first_qc and first_sr is not None, "subscriptions never reached the publisher"
        n_records = 100
        for t in range(1, n_records + 1):  # a burst, nobody reading meanwhile
            for k in range(5):
                frame = np.full((16, 16), t + k / 10, np.float32)
                publisher.publish("sr", header_for(Kind.SR_RESULT, "r", 10 * t + k, frame,
                                                   time_point=t), frame)
            publish_qc(t)
        got: list[int] = []
        deadline = time.monotonic() + 10.0
        while (not got or got[-1] != n_records) and time.monotonic() < deadline:
            if qc.socket.poll(100):
                got += [m.header.time_point for m in qc.drain()]
        time.sleep(0.1)
        newest_sr = sr.newest()
    finally:
        for sub in (qc, sr):
            sub.close()
        publisher.close()
    assert got == list(range(1, n_records + 1))  # every record, in order, none twice
    assert newest_sr is not None and newest_sr.header.time_point == n_records  # newest only
    assert float(newest_sr.array[0, 0]) == pytest.approx(n_records + 0.4)


def test_qc_endpoint_sits_beside_the_display_endpoint() -> None:
    assert qc_endpoint("ipc:///tmp/x/display") == "ipc:///tmp/x/display-qc"
    assert qc_endpoint("inproc://display") == "inproc://display-qc"
    assert qc_endpoint("tcp://127.0.0.1:5560") == "tcp://127.0.0.1:5561"
    with pytest.raises(TransportSecurityError, match="fixed port"):
        qc_endpoint("tcp://127.0.0.1:*")
