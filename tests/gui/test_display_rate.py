"""The display stream's rate limit and wire format (no Qt, no acquisition process)."""

from __future__ import annotations

import numpy as np
import pytest

from acquisition import run_file
from acquisition.display_outlet import DisplayOutlet, wide_field_uint16
from acquisition.session import SessionOptions
from acquisition.wire import Header, Kind, Message, header_for


class RecordingPublisher:
    """Stands in for DisplayPublisher: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Header, np.ndarray]] = []

    def publish(self, topic: str, header: Header, array: np.ndarray) -> None:
        self.sent.append((topic, header, array))


def sr_message(time_point: int, image: np.ndarray, channel: int = 0,
               kind: Kind = Kind.SR_RESULT) -> Message:
    """A worker's result as the session's results thread receives it."""
    info = {"sr_scale": run_file.SR_SCALE, "photon_count_e": 12.5, "model_name": "m"}
    header = header_for(kind, "r", time_point, image, time_point=time_point, channel=channel,
                        info=info)
    return Message(header, image)


def published_per_s(monkeypatch: pytest.MonkeyPatch, source_hz: float, seconds: float = 10.0
                    ) -> float:
    """SR images/s that the display outlet lets through from a source at ``source_hz``."""
    clock = {"now": 100.0}
    monkeypatch.setattr("acquisition.display_outlet.time.monotonic", lambda: clock["now"])
    publisher = RecordingPublisher()
    outlet = DisplayOutlet(publisher, max_hz=SessionOptions().display_max_hz)  # type: ignore[arg-type]
    image = np.zeros((4, 4), np.uint16)
    n = int(seconds * source_hz)
    for i in range(n):
        clock["now"] = 100.0 + i / source_hz
        outlet.offer_result(sr_message(i, image))
    return len(publisher.sent) / seconds


def test_display_rate_is_a_schedule_not_a_minimum_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SessionOptions().display_max_hz == 36.0  # the GUI's 30 updates/s target + losses
    # a 50 Hz source: a "skip anything within 1/36 s" rule would let 25/s through
    assert 35.0 <= published_per_s(monkeypatch, 50.0) <= 36.5
    assert 35.0 <= published_per_s(monkeypatch, 100.0) <= 36.5
    assert 35.0 <= published_per_s(monkeypatch, 40.0) <= 36.5
    assert published_per_s(monkeypatch, 30.0) == 30.0  # slower sources: every image


def test_uint16_sr_goes_out_as_stored_with_its_scale() -> None:
    publisher = RecordingPublisher()
    outlet = DisplayOutlet(publisher)  # type: ignore[arg-type]
    stored = np.array([[0, 65535], [32768, 7]], np.uint16)
    outlet.offer_result(sr_message(5, stored))
    outlet.offer_result(sr_message(6, stored, channel=1))  # not the display channel
    assert len(publisher.sent) == 1
    topic, header, array = publisher.sent[0]
    assert topic == "sr" and array is stored  # no float32 copy on the acquisition side
    assert header.dtype == "uint16" and header.info["sr_scale"] == run_file.SR_SCALE
    assert header.time_point == 5 and header.info["photon_count_e"] == 12.5


def test_outlet_publishes_what_the_raw_view_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live view: one 2-D raw image per update, the full set only at 2 Hz."""
    from acquisition.engine import RawSet, TimePoint

    clock = {"now": 50.0}
    monkeypatch.setattr("acquisition.display_outlet.time.monotonic", lambda: clock["now"])
    publisher = RecordingPublisher()
    outlet = DisplayOutlet(publisher, max_hz=30.0)  # type: ignore[arg-type]
    rng = np.random.default_rng(2)
    frames = rng.integers(100, 60_000, size=(9, 8, 6), dtype=np.uint16)

    def point(index: int, channel: int = 0) -> TimePoint:
        raw = RawSet(index, channel, 488, 10.0, frames, np.zeros(9), np.arange(9))
        return TimePoint(index, 0.0, 0.0, (raw,))

    for i in range(40):  # 20 Hz for 2 s
        clock["now"] = 50.0 + i * 0.05
        outlet.offer_raw(point(i), acquired_s=float(i))
    raws = [(h, a) for t, h, a in publisher.sent if t == "raw"]
    sets = [(h, a) for t, h, a in publisher.sent if t == "set"]
    assert len(raws) == 40 and all(a.shape == (8, 6) for _, a in raws)
    assert np.array_equal(raws[0][1], frames[0]) and raws[0][0].kind is Kind.RAW_SET
    assert 4 <= len(sets) <= 5 and sets[0][1].shape == (9, 8, 6)  # 2 Hz
    assert sets[0][0].time_point == 0 and sets[0][0].info["acquired_s"] == 0.0

    publisher.sent.clear()
    outlet.set_raw_view("wide-field")
    clock["now"] += 1.0
    outlet.offer_raw(point(99), acquired_s=99.0)
    topic, header, image = publisher.sent[0]
    assert topic == "raw" and header.kind is Kind.WIDEFIELD and image.dtype == np.uint16
    mean = frames.astype(np.float64).mean(axis=0)
    assert np.abs(image - mean).max() <= 0.5 + 1e-9
    assert np.array_equal(wide_field_uint16(frames), image)
    publisher.sent.clear()
    clock["now"] += 1.0
    outlet.offer_raw(point(100, channel=1), acquired_s=100.0)  # not the display channel
    assert publisher.sent == []
    with pytest.raises(ValueError, match="raw_view"):
        outlet.set_raw_view("max")


def test_bench_cpu_split_accounts_for_all_window_cpu() -> None:
    from acquisition.cli.bench.display import WindowFigures
    from acquisition.cli.bench.display_cost import DisplayCost

    cost = DisplayCost(receive_s=0.01, raw_set_s=0.02, sr_set_s=0.03, full_set_s=0.005,
                       tick_s=0.08, raw_paint_s=0.04, sr_paint_s=0.06, view_paint_s=0.15)
    figures = WindowFigures(span_s=2.0, raw_updates=60, sr_updates=50, raw_painted=58,
                            sr_painted=50, process_cpu_s=0.5, gui_thread_cpu_s=0.35, cost=cost,
                            pattern_cpu_s=0.05, sr_time_points=72)
    assert figures.pairs == 50 and figures.cpu_ms_per_pair == pytest.approx(10.0)
    split = figures.split_ms()
    assert sum(split.values()) == pytest.approx(figures.cpu_ms_per_pair)
    assert split["rest of tick (status, captions)"] == pytest.approx(0.3)  # 80 - 65 ms / 50
    assert split["other threads (ZMQ I/O, pattern check FFTs)"] == pytest.approx(2.0)
    assert figures.sr_per_s == 25.0 and figures.raw_per_s == 29.0  # painted, not received
    assert figures.sr_made_per_s == 36.0
    # Qt's part: the views' paint around the images, and the event loop
    assert split["views' paint around the images (scene, histograms)"] == pytest.approx(1.0)
    assert split["event loop, other widgets"] == pytest.approx(2.4)  # 350 - 80 - 150 ms / 50


def test_live_outlet_limits_sr_to_the_display_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 10.0}
    monkeypatch.setattr("acquisition.display_outlet.time.monotonic", lambda: clock["now"])
    publisher = RecordingPublisher()
    outlet = DisplayOutlet(publisher)  # type: ignore[arg-type]
    image = np.zeros((4, 4), np.uint16)
    for i in range(200):  # SR at 100 Hz for 2 s, an IMC split every 10th
        clock["now"] = 10.0 + i * 0.01
        outlet.offer_result(sr_message(i, image))
        if i % 10 == 0:
            outlet.offer_result(sr_message(i, image, kind=Kind.IMC_RESULT))
    sr = [h for t, h, _ in publisher.sent if t == "sr"]
    assert 70 <= len(sr) <= 73  # 36/s, as the recording session's stream
    assert sum(t == "imc" for t, _, _ in publisher.sent) == 20  # IMC is not limited


def test_paced_frames_come_at_the_camera_rate() -> None:
    import time

    from acquisition.cli.bench.pipeline import BankSource

    bank = np.arange(2 * 9 * 4, dtype=np.uint16).reshape(2, 9, 2, 2)
    paced = BankSource(bank, frames_per_s=300.0)
    start = time.monotonic()
    frames = [f for t in range(3) for f in paced.stream_time_point(None, t, 1.0)]
    elapsed = time.monotonic() - start
    assert [f.tag.sequence for f in frames] == list(range(27))  # every frame, in order
    assert [int(f.image[0, 0]) for f in frames[9:18]] == [4 * (9 + p) for p in range(9)]
    assert 26 / 300.0 <= elapsed < 26 / 300.0 + 0.5  # not faster than the camera
    with pytest.raises(ValueError, match="frames_per_s"):
        BankSource(bank, -1.0)


def test_display_path_cost_adds_the_pipeline_extra_per_pair() -> None:
    from acquisition.cli.bench.display import DisplayBenchResult, WindowFigures
    from acquisition.cli.bench.display_cost import DisplayCost

    during = WindowFigures(span_s=10.0, raw_updates=320, sr_updates=310, raw_painted=320,
                           sr_painted=300, process_cpu_s=1.55, gui_thread_cpu_s=1.2,
                           cost=DisplayCost(raw_paint_s=0.1, sr_paint_s=0.1),
                           pattern_cpu_s=0.0)
    result = DisplayBenchResult(512, 1000, headless_fps=900.0, with_display_fps=800.0,
                                sr_shape=(1024, 1024), during=during, alone=during,
                                feed_hz=30.0, headless_cpu_ms_per_frame=1.6,
                                with_display_cpu_ms_per_frame=1.7)
    assert result.slowdown_pct == pytest.approx(100.0 / 9.0)
    # 0.1 ms more per frame x 800 frames/s = 80 ms/s over 30 pairs/s (the slower view)
    assert result.acquisition_ms_per_pair == pytest.approx(80.0 / 30.0)
    assert result.display_path_ms_per_pair == pytest.approx(5.0 + 80.0 / 30.0)
