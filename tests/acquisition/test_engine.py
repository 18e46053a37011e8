"""AcquisitionEngine: sets in pattern order, every gap reported, schedule drift, live mode."""

from __future__ import annotations

import threading
import time

import numpy as np

from acquisition.engine import (
    AcquisitionEngine,
    SequenceChecker,
    SetBufferPool,
    TimePoint,
    group_sets,
)
from hardware.frames import FrameTag, TaggedFrame

from .conftest import ScriptedSource, StreamingSource, expected_frame


def collect(source: ScriptedSource, n: int, interval_s: float = 0.0
            ) -> tuple[AcquisitionEngine, list[TimePoint]]:
    points: list[TimePoint] = []
    engine = AcquisitionEngine(source, None, source.channel_lasers, source.n_patterns,
                               interval_s=interval_s, on_time_point=points.append)
    engine.run(n)
    return engine, points


def test_sets_arrive_in_pattern_order_without_gaps() -> None:
    source = ScriptedSource(channel_lasers=(488, 560))
    engine, points = collect(source, 3)
    assert [p.index for p in points] == [0, 1, 2]
    for point in points:
        assert point.gaps == ()
        for raw in point.sets:
            assert raw.complete and raw.frames.shape == (9, 16, 16)
            for p in range(9):
                np.testing.assert_array_equal(raw.frames[p],
                                              expected_frame(point.index, raw.channel, p,
                                                             (16, 16)))
    assert points[2].sets[1].sequences.tolist() == list(range(45, 54))
    assert engine.report.frames == 54 and engine.report.gaps == []


def test_dropped_frame_is_a_gap_and_a_hole() -> None:
    source = ScriptedSource(drop={(1, 0, 4)})
    engine, points = collect(source, 3)
    gaps = points[1].gaps
    assert {g.kind for g in gaps} == {"missing_frame", "gap"}
    sequence_gap = next(g for g in gaps if g.kind == "gap")
    assert (sequence_gap.first_sequence, sequence_gap.count) == (13, 1)
    raw = points[1].sets[0]
    assert not raw.complete and raw.sequences[4] == -1 and not raw.frames[4].any()
    assert raw.frame_count == 8 and points[0].sets[0].frame_count == 9
    assert points[2].gaps == ()  # the checker resynchronises
    assert len(engine.report.gaps) == 2


def test_rig_error_keeps_frames_that_arrived_and_continues() -> None:
    source = ScriptedSource(fail_at={1: 5})
    engine, points = collect(source, 3)
    assert [p.index for p in points] == [0, 1, 2]
    assert points[1].sets[0].sequences[:5].tolist() == [9, 10, 11, 12, 13]
    assert (points[1].sets[0].sequences[5:] == -1).all()
    assert any(g.kind == "rig_error" for g in engine.report.gaps)
    assert engine.report.failures and engine.report.stopped_reason == "completed"


def test_repeated_failures_stop_the_run_with_a_reason() -> None:
    source = ScriptedSource(fail_at={t: 0 for t in range(10)})
    engine, points = collect(source, 10)
    assert "3 time points failed in a row" in engine.report.stopped_reason
    # each failed time point is still reported (so its cause reaches /events), with no frames
    assert [p.index for p in points] == [0, 1, 2]
    assert all(p.sets == () and [g.kind for g in p.gaps] == ["rig_error"] for p in points)
    assert "scripted camera stall" in points[0].gaps[0].detail


def test_lost_sync_discards_the_time_point_rather_than_mislabel_it() -> None:
    source = ScriptedSource(fail_at={1: 5}, sync_lost=True)
    _engine, points = collect(source, 3)
    assert [p.index for p in points] == [0, 1, 2]
    assert points[1].sets == ()
    (error,) = [g for g in points[1].gaps if g.kind == "rig_error"]
    assert error.count == 9 and "5 frame(s) of this time point discarded" in error.detail
    assert points[2].sets[0].complete  # the next time point re-synchronises


def test_interval_schedule_is_kept_and_drift_measured() -> None:
    source = ScriptedSource()
    engine, points = collect(source, 4, interval_s=0.2)  # generous: the machine is shared
    starts = [p.started_s - points[0].started_s for p in points]
    np.testing.assert_allclose(starts, [0, 0.2, 0.4, 0.6], atol=0.08)
    assert 0 <= engine.report.max_drift_s < 0.08


def test_sequence_checker_reports_out_of_order() -> None:
    checker = SequenceChecker()
    assert checker.check(0, [0, 1, 2]) == []
    gaps = checker.check(1, [1, 5])
    assert [(g.first_sequence, g.count) for g in gaps] == [(1, 0), (3, 2)]


def test_live_mode_runs_until_stopped() -> None:
    source = ScriptedSource(frame_delay_s=0.001)
    seen = threading.Event()
    count = []
    engine = AcquisitionEngine(source, None, (488,), 9, on_time_point=lambda point: (
        count.append(point.index), len(count) >= 3 and seen.set()))
    engine.start_live()
    assert seen.wait(10) and engine.is_live
    engine.stop_live(timeout_s=5)
    assert not engine.is_live and engine.report.stopped_reason == "stopped"
    n = len(count)
    assert count == list(range(n))


def test_run_long_stream_is_armed_once_and_reopened_after_an_error() -> None:
    source = StreamingSource(fail_at={2: 3})
    engine, points = collect(source, 5)
    assert [p.index for p in points] == [0, 1, 2, 3, 4]
    assert source.streams_opened == 2 and source.streams_closed == 2
    assert points[2].sets[0].sequences[:3].tolist() == [18, 19, 20]
    assert all(p.sets[0].complete for p in points if p.index != 2)
    assert [g.kind for g in engine.report.gaps].count("rig_error") == 1


def test_set_buffer_pool_reuses_only_buffers_nobody_holds() -> None:
    pool = SetBufferPool()
    first = pool.take((1, 9, 8, 8))
    first_id = id(first)
    view = first[0]  # a RawSet's frames are views of the buffer
    del first
    second = pool.take((1, 9, 8, 8))
    assert id(second) != first_id and pool.made == 2  # the view still holds the first
    del view
    third = pool.take((1, 9, 8, 8))
    assert id(third) == first_id and pool.made == 2 and pool.reused == 1
    assert pool.take((1, 9, 4, 4)).shape == (1, 9, 4, 4)  # a new ROI: fresh buffers
    small = SetBufferPool(max_bytes=2 * 9 * 64 * 2)  # room for two 8x8 sets
    held = [small.take((1, 9, 8, 8)) for _ in range(4)]
    kept = [id(b) for b in held[:2]]
    del held
    assert id(small.take((1, 9, 8, 8))) in kept and small.made == 4 and small.reused == 1
    trimmed = SetBufferPool(max_idle=2)
    burst = [trimmed.take((1, 9, 8, 8)) for _ in range(10)]  # ten sets in flight at once
    assert len(trimmed) == 10
    del burst
    assert trimmed.take((1, 9, 8, 8)).shape == (1, 9, 8, 8) and len(trimmed) == 3  # 1 + 2 idle


def test_set_buffer_is_not_reused_while_zeromq_holds_it_for_sending() -> None:
    import zmq

    context = zmq.Context()
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    shape = (1, 9, 64, 64)  # a 72 KiB frame: above pyzmq's copy threshold (zero-copy)
    try:
        pull.bind("inproc://pool")
        push.connect("inproc://pool")
        pool = SetBufferPool()
        buffer = pool.take(shape)
        buffer[:] = 7
        buffer_id = id(buffer)
        push.send(buffer[0], copy=False)  # queued, not yet received
        del buffer
        other = pool.take(shape)
        assert id(other) != buffer_id  # ZeroMQ still holds the frames
        other[:] = 9
        del other
        assert pull.poll(5000)
        message = pull.recv()
        assert (np.frombuffer(message, np.uint16) == 7).all()  # not overwritten by the 9s
        deadline = time.monotonic() + 5.0  # pyzmq lets go of it on its own thread
        while id(pool.take(shape)) != buffer_id:
            assert time.monotonic() < deadline, "the sent buffer never came back"
            time.sleep(0.01)
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        context.term()


def test_reused_buffers_never_show_an_earlier_set() -> None:
    source = ScriptedSource(drop={(3, 0, 4)})
    seen: list[tuple[int, np.ndarray]] = []

    def check_and_drop(point: TimePoint) -> None:  # keeps nothing: buffers get reused
        raw = point.sets[0]
        for p in range(9):
            expected = (np.zeros((16, 16), np.uint16) if raw.sequences[p] < 0
                        else expected_frame(point.index, 0, p, (16, 16)))
            np.testing.assert_array_equal(raw.frames[p], expected)
        seen.append((point.index, raw.frames.copy()))

    engine = AcquisitionEngine(source, None, source.channel_lasers, source.n_patterns,
                               on_time_point=check_and_drop)
    engine.run(6)
    assert [t for t, _ in seen] == list(range(6))
    assert engine._pool.reused >= 3  # the buffers did come back


def test_group_sets_widefield_is_the_exact_mean_of_each_stored_set() -> None:
    """The wide-field image summed while grouping equals the float32 mean of the stored set
    bit for bit: full-range values, a missing pattern (zeros), a duplicate frame (not summed),
    a channel with no frame, and a reused buffer whose earlier sums must not leak through."""
    rng = np.random.default_rng(5)
    pool = SetBufferPool(dtype=np.uint16)
    widefields = SetBufferPool(dtype=np.float32)
    for t, missing in ((0, None), (1, 4)):
        images = rng.integers(0, 65536, (3, 9, 6, 7), dtype=np.uint16)
        frames = [TaggedFrame(images[c, p], FrameTag(
            time_point=t, channel=c, laser_nm=488, orientation=p // 3, phase=p % 3,
            pattern_index=p, sequence=18 * t + 9 * c + p, timestamp_s=0.0, exposure_ms=1.0))
            for c in range(2) for p in range(9) if not (c == 1 and p == missing)]
        frames.append(TaggedFrame(images[2, 0], frames[3].tag))  # duplicate of (0, 3)
        sets, problems = group_sets(t, frames, (488, 561, 640), 9, pool=pool,
                                    widefields=widefields)
        assert [g.kind for g in problems] == (["unexpected_frame"] + ["missing_frame"] * 9
                                              + ["missing_frame"] * (missing is not None))
        for raw in sets:
            assert raw.widefield is not None and raw.widefield.dtype == np.float32
            expected = raw.frames.mean(axis=0, dtype="<f4")
            assert np.array_equal(raw.widefield, expected), (t, raw.channel)
        np.testing.assert_array_equal(sets[2].widefield, 0)
        del sets  # the buffers go back to their pools for the next time point


def test_a_recording_engine_gives_each_set_its_widefield_and_live_view_does_not() -> None:
    """With ``widefields`` (a recording) every set carries its wide-field image, the float32
    mean of its frames, so the recorder need not read the set again; without (live view, no
    file) none is made."""
    for widefields in (True, False):
        source = ScriptedSource(channel_lasers=(488, 560))
        points: list[TimePoint] = []
        engine = AcquisitionEngine(source, None, source.channel_lasers, source.n_patterns,
                                   on_time_point=points.append, widefields=widefields)
        engine.run(2)
        for point in points:
            for raw in point.sets:
                if widefields:
                    assert raw.widefield is not None
                    assert np.array_equal(raw.widefield, raw.frames.mean(axis=0, dtype="<f4"))
                else:
                    assert raw.widefield is None
