"""RunSession end to end: real worker subprocess over ZeroMQ, real HDF5, scripted frames."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.recorder import RecorderError, RunRecorder
from acquisition.session import RunSession, SessionError, SessionOptions
from acquisition.supervisor import WorkerSupervisor
from acquisition.wire import Kind, encode, header_for

from .conftest import ScriptedSource, expected_frame

FAST = SessionOptions(heartbeat_s=0.2, heartbeat_timeout_s=2.0, fsync=False, drain_idle_s=10.0)


def protocol(tmp_path: Path, timepoints: int, reconstruction: str = "passthrough") -> Protocol:
    return Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": reconstruction}],
        "timepoints": timepoints, "output": str(tmp_path / "run.h5")})


def events(h5: h5py.File) -> list[tuple[str, int, str]]:
    return [(e["kind"].decode(), int(e["time_point"]), e["detail"].decode())
            for e in h5[run_file.EVENTS][()]]


def test_twenty_time_points_all_raw_all_sr_no_gaps(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    proto = protocol(tmp_path, 20)
    session = RunSession(ScriptedSource(frame_delay_s=0.001), None, proto, (16, 16), 62.6,
                         options=FAST)
    at_worker_stop: list[tuple[bool, str]] = []
    original_stop = WorkerSupervisor.stop

    def stop(self: WorkerSupervisor, timeout_s: float = 10.0) -> None:
        # the run file is complete and closed before the worker's exit is awaited
        assert session.recorder is not None
        try:
            session.recorder.record_event("probe")
        except RecorderError as exc:
            at_worker_stop.append((self.alive, str(exc)))
        original_stop(self, timeout_s)

    monkeypatch.setattr(WorkerSupervisor, "stop", stop)
    summary = session.run()
    assert len(at_worker_stop) == 1 and at_worker_stop[0][0]  # the worker was still running
    assert "recorder is closed" in at_worker_stop[0][1]
    assert summary.error == "" and summary.engine.time_points == 20
    assert summary.raw_frames == 180 and summary.sr_frames == 20
    with h5py.File(proto.output, "r") as h5:
        assert h5["raw"].shape == (20, 1, 9, 16, 16)
        np.testing.assert_array_equal(h5["raw"][13, 0, 7], expected_frame(13, 0, 7, (16, 16)))
        sequence = h5["timestamps/sequence"][()].ravel()
        assert sequence.tolist() == list(range(180))
        stamps = h5["timestamps/camera_s"][()].ravel()
        assert np.all(np.diff(stamps) > 0)
        sr = run_file.read_sr(h5, "passthrough")
        assert sr.shape == (20, 1, 32, 32) and np.isfinite(sr[:, 0, 0, 0]).all()
        assert np.isfinite(h5["timestamps/sr_latency_ms"][()]).all()
        assert [k for k, _, _ in events(h5)] == ["run_end"]
        meta = run_file.read_metadata(h5)
        assert meta["models"]["0"]["model_name"] == "passthrough"
        assert meta["protocol"]["timepoints"] == 20 and meta["run_id"] == summary.run_id
    assert summary.rejected_messages == 0 and summary.worker_restarts == 0


def disturb_worker_then_stop(session: RunSession, signum: int, record: list[int]) -> None:
    """Send ``signum`` to the worker once SR flows; stop the run once SR flows again."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not record:
        recorder, supervisor = session.recorder, session.supervisor
        if recorder is not None and recorder.stats.sr_frames >= 3 and supervisor is not None:
            assert supervisor.process is not None
            record.append(recorder.stats.sr_frames)
            os.kill(supervisor.process.pid, signum)
        time.sleep(0.01)
    while time.monotonic() < deadline:
        supervisor, recorder = session.supervisor, session.recorder
        if (supervisor is not None and supervisor.restarts and supervisor.ready
                and recorder is not None and recorder.stats.sr_frames >= record[0] + 3):
            break
        time.sleep(0.05)
    session.stop()


def check_gap_recorded_and_resumed(path: Path, died_detail: str) -> None:
    with h5py.File(path, "r") as h5:
        log = events(h5)
        kinds = [k for k, _, _ in log]
        died = [d for k, _, d in log if k == "worker_died"]
        assert died and died_detail in died[0] and "worker_restarted" in kinds
        skipped = {t for k, t, _ in log if k == "sr_skip"}
        assert skipped, "the SR gap was not recorded"
        has_sr = h5["timestamps/sr_written"][:, 0] == 1
        n = len(has_sr)
        # Every time point has either an SR frame or a recorded skip: nothing silent.
        for t in range(n):
            assert has_sr[t] or t in skipped, f"time point {t}: no SR and no skip recorded"
        assert has_sr[max(skipped) + 1 :].any(), "SR did not resume after the restart"
        assert h5["timestamps/sequence"][()].ravel().tolist() == list(range(9 * n))


def test_garbage_on_the_results_socket_is_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    proto = protocol(tmp_path, 30)
    session = RunSession(ScriptedSource(frame_delay_s=0.002), None, proto, (16, 16), 62.6,
                         options=FAST)
    sent: list[int] = []

    def spam() -> None:
        context = zmq.Context()
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(session.endpoints.results)
        rng = np.random.default_rng(7)
        deadline = time.monotonic() + 60
        while session.recorder is None and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(40):
            push.send_multipart([rng.bytes(int(rng.integers(0, 64))) for _ in range(2)])
            sent.append(1)
        stray = np.zeros((32, 32), np.float32)  # well-formed, but from another run
        push.send_multipart(encode(header_for(Kind.SR_RESULT, "other-run", 1, stray,
                                              time_point=0, channel=0), stray), copy=False)
        far = header_for(Kind.SR_RESULT, session.run_id, 2, stray, time_point=10**9, channel=0)
        push.send_multipart(encode(far, stray), copy=False)  # would grow the file absurdly
        push.close()
        context.term()

    spammer = threading.Thread(target=spam)
    spammer.start()
    summary = session.run()
    spammer.join()
    assert len(sent) == 40 and summary.error == ""
    assert summary.rejected_messages == 42
    assert summary.raw_frames == 270 and summary.sr_frames == 30
    with h5py.File(proto.output, "r") as h5:
        assert h5["raw"].shape[0] == 30 and h5["sr/passthrough"].shape[0] == 30


@pytest.mark.parametrize(("disturbance", "gap_detail"), [
    (signal.SIGKILL, "exited with code"),  # killed: the supervisor sees it exit
    pytest.param(signal.SIGSTOP, "no heartbeat", marks=pytest.mark.slow),  # hung: heartbeat
])
def test_a_dead_or_hung_worker_is_replaced_while_acquisition_continues(
    tmp_path: Path, disturbance: signal.Signals, gap_detail: str,
) -> None:
    proto = protocol(tmp_path, 100_000)
    session = RunSession(ScriptedSource(frame_delay_s=0.002), None, proto, (16, 16), 62.6,
                         options=FAST)
    record: list[int] = []
    controller = threading.Thread(target=disturb_worker_then_stop,
                                  args=(session, disturbance, record))
    controller.start()
    summary = session.run()
    controller.join()
    assert record, "the worker was never disturbed"
    assert summary.error == "" and summary.engine.stopped_reason == "stopped"
    assert summary.raw_frames == summary.engine.time_points * 9  # acquisition never paused
    assert summary.worker_restarts == 1
    check_gap_recorded_and_resumed(proto.output, gap_detail)


def test_recorder_io_error_stops_the_run_cleanly(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    original = RunRecorder._do_raw

    def disk_full(self, t, *args):
        if t == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, t, *args)

    monkeypatch.setattr(RunRecorder, "_do_raw", disk_full)
    proto = protocol(tmp_path, 500, reconstruction="none")
    source = ScriptedSource(frame_delay_s=0.001)
    summary = RunSession(source, None, proto, (16, 16), 62.6, options=FAST).run()
    assert "No space left on device" in summary.error
    assert summary.engine.time_points < 500  # stopped, did not run on without a disk
    with h5py.File(proto.output, "r") as h5:
        assert h5["timestamps/complete"][:4].tolist() == [1, 1, 1, 1]
        np.testing.assert_array_equal(h5["raw"][3, 0, 8], expected_frame(3, 0, 8, (16, 16)))
        assert "fault" in [k for k, _, _ in events(h5)]


def test_worker_that_cannot_load_its_model_fails_before_any_frame(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    proto = protocol(tmp_path, 5, reconstruction=str(bad))
    source = ScriptedSource()
    with pytest.raises(SessionError, match="cannot start"):
        RunSession(source, None, proto, (16, 16), 62.6, options=FAST).run()
    assert source.sequence == 0 and not proto.output.exists()


def test_stop_with_a_time_limit_seals_the_file_while_sr_is_outstanding(tmp_path: Path) -> None:
    """Quitting the window: SR far behind (here: a frozen worker) must not hold the file open
    past the stop's limit; what is missing is recorded as skipped and the file is sealed."""
    proto = protocol(tmp_path, 100_000)
    session = RunSession(ScriptedSource(frame_delay_s=0.002), None, proto, (16, 16), 62.6,
                         options=FAST)
    marks: dict[str, float] = {}
    frozen: list[int] = []
    finish = session._finish

    def timed_finish(summary: object) -> object:
        marks["sealing"] = time.monotonic()
        for pid in frozen:  # let the worker take its SIGTERM afterwards
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        return finish(summary)  # type: ignore[arg-type]

    session._finish = timed_finish  # type: ignore[method-assign]

    def freeze_then_stop() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            recorder, supervisor = session.recorder, session.supervisor
            if (recorder is not None and recorder.stats.sr_frames >= 3 and supervisor is not None
                    and supervisor.process is not None):
                frozen.append(supervisor.process.pid)
                os.kill(supervisor.process.pid, signal.SIGSTOP)
                break
            time.sleep(0.01)
        while time.monotonic() < deadline and session.pending_sr() < 3:
            time.sleep(0.01)
        marks["stop"] = time.monotonic()
        session.stop(finish_within_s=0.5)

    controller = threading.Thread(target=freeze_then_stop)
    controller.start()
    try:
        summary = session.run()
    finally:
        controller.join()
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert frozen, "SR never flowed"
    # sealed within the limit plus a time point, not after drain_idle_s (10 s) of waiting
    assert marks["sealing"] - marks["stop"] < 0.5 + 2.0
    assert summary.error == ""
    with h5py.File(proto.output, "r") as h5:
        assert run_file.FAULT_RESERVE not in h5
        log = events(h5)
        assert log[-1][0] == "run_end"
        limited = [t for k, t, d in log if k == "sr_skip" and "time limit" in d]
        assert len(limited) >= 3
        has_sr = h5["timestamps/sr_written"][:, 0] == 1
        skipped = {t for k, t, _ in log if k == "sr_skip"}
        assert all(has_sr[t] or t in skipped for t in range(len(has_sr)))


def test_live_view_is_the_same_session_without_a_file(tmp_path: Path) -> None:
    """The GUI's live view: the same RunSession, no file; the worker starts in the background,
    raw images reach the outlet at once, SR follows, the counters count both, and a worker
    that cannot keep up costs counted skips, never a blocked acquisition thread."""
    from acquisition.display_outlet import DisplayOutlet

    class Sink:
        def __init__(self) -> None:
            self.sent: list[tuple[str, int]] = []
            self.lock = threading.Lock()

        def publish(self, topic: str, header: object, array: np.ndarray) -> None:
            with self.lock:
                self.sent.append((topic, int(getattr(header, "time_point", -1))))

        def close(self) -> None:
            pass

    sink = Sink()
    outlet = DisplayOutlet(sink, max_hz=1000.0)
    proto = protocol(tmp_path, 1)
    messages: list[tuple[str, str]] = []
    session = RunSession(ScriptedSource(frame_delay_s=0.001), None, proto, (16, 16), 62.6,
                         options=SessionOptions(max_pending_sets=2, heartbeat_s=0.2,
                                                heartbeat_timeout_s=5.0),
                         outlet=outlet, on_event=lambda level, text: messages.append(
                             (level, text)), endpoints=None)
    session.start_live(period_s=0.02)
    try:
        deadline = time.monotonic() + 120.0
        while session.counters.sr_frames < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.live and session.worker_ready
    finally:
        session.stop_live()
    assert not session.live and session.recorder is None
    assert not (tmp_path / "run.h5").exists()  # live view writes nothing
    counters = session.counters
    assert counters.sr_frames >= 5 and counters.raw_frames >= 9 * counters.sr_frames
    assert counters.raw_frames == 9 * (counters.time_point + 1)  # every frame of every point
    topics = {topic for topic, _ in sink.sent}
    assert {"raw", "set", "sr"} <= topics
    first_sr = min(t for topic, t in sink.sent if topic == "sr")
    assert any(topic == "raw" and t < first_sr for topic, t in sink.sent)  # raw did not wait
    assert any("inference worker ready" in text for _, text in messages)
    # every set was answered, is still in flight (at most 2) or was skipped and counted
    assert session.pending_sr() <= 2
    assert counters.sr_frames + session.pending_sr() + counters.sr_skips == counters.time_point + 1
