"""A run under hostile-but-well-formed messages on its results socket keeps SR and its worker.

Every message below is valid msgpack with the right fields; what is wrong is a type inside
``info``, the run or worker id, or that it repeats a result already stored. The run must store
SR for >= 90 % of its time points, restart no healthy worker, keep the first SR of a time
point, and count every rejected message in its summary.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import h5py
import msgpack
import numpy as np
import pytest
import zmq

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.session import RunSession, SessionOptions
from acquisition.wire import Kind, encode, header_for
from tests.acquisition.conftest import ScriptedSource

TIME_POINTS = 60
OPTIONS = SessionOptions(heartbeat_s=0.2, heartbeat_timeout_s=3.0, busy_timeout_s=1.0,
                         fsync=False, drain_idle_s=10.0)


def _raw_header(kind: str, run_id: str, worker_id: str, time_point: int, info: dict[str, Any],
                shape: list[int], dtype: str) -> bytes:
    """A well-formed header built by hand, so that info values can have any type."""
    return msgpack.packb({"version": 1, "kind": kind, "run_id": run_id, "worker_id": worker_id,
                          "sequence": 1, "time_point": time_point, "channel": 0,
                          "shape": shape, "dtype": dtype, "sent_s": time.time(), "info": info})


def _hostile(session: RunSession, sent: dict[str, int], stop: threading.Event) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(session.endpoints.results)
    forged = np.full((32, 32), 60000, np.uint16)  # never what passthrough returns
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            recorder, supervisor = session.recorder, session.supervisor
            if recorder is not None and recorder.stats.sr_frames >= 2 and supervisor:
                break
            time.sleep(0.005)
        assert session.supervisor is not None
        run_id, worker_id = session.run_id, session.supervisor.worker_id
        long_ago = time.time() - 1000.0  # "busy for 1000 s": a hung worker, if believed
        rounds = 0
        while not stop.is_set() and rounds < 40:
            rounds += 1
            t = max(session._latest_sr_time_point, 0)
            bursts = [
                # the right ids, wrong types inside info: the schema must refuse them
                ([_raw_header("heartbeat", run_id, worker_id, -1,
                              {"busy_since_s": "soon"}, [0], "uint8"), b""], "bad type"),
                ([_raw_header("sr_result", run_id, worker_id, t,
                              {"photon_count_e": "many", "sr_scale": run_file.SR_SCALE},
                              [32, 32], "uint16"), forged.tobytes()], "bad type"),
                ([_raw_header("sr_result", run_id, worker_id, t,
                              {"timings_ms": {"net": "1"}}, [32, 32], "uint16"),
                  forged.tobytes()], "bad type"),
                # forged heartbeats claiming a hung worker: another run, another worker
                ([_raw_header("heartbeat", "another-run", worker_id, -1,
                              {"busy_since_s": long_ago}, [0], "uint8"), b""], "foreign"),
                ([_raw_header("heartbeat", run_id, "not-the-worker", -1,
                              {"busy_since_s": long_ago}, [0], "uint8"), b""], "foreign"),
                # a result of another run
                (encode(header_for(Kind.SR_RESULT, "another-run", 1, forged, time_point=t,
                                   channel=0, info={"sr_scale": run_file.SR_SCALE}), forged),
                 "foreign"),
                # a duplicate of a result already stored, with the right ids
                (encode(header_for(Kind.SR_RESULT, run_id, 1, forged, time_point=t, channel=0,
                                   worker_id=worker_id,
                                   info={"sr_scale": run_file.SR_SCALE}), forged),
                 "duplicate"),
            ]
            for frames, what in bursts:
                push.send_multipart(frames, copy=False)
                sent[what] = sent.get(what, 0) + 1
            time.sleep(0.03)
    finally:
        push.close()
        context.term()


def test_run_under_hostile_messages_keeps_sr_and_its_worker(tmp_path: Path) -> None:
    proto = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "passthrough"}],
        "timepoints": TIME_POINTS, "output": str(tmp_path / "run.h5")})
    session = RunSession(ScriptedSource(frame_delay_s=0.004), None, proto, (16, 16), 62.6,
                         options=OPTIONS)
    sent: dict[str, int] = {}
    stop = threading.Event()
    attacker = threading.Thread(target=_hostile, args=(session, sent, stop))
    attacker.start()
    try:
        summary = session.run()
    finally:
        stop.set()
        attacker.join(30)
    assert sent.get("bad type", 0) >= 30 and sent.get("foreign", 0) >= 30, sent
    assert summary.error == "", summary.error
    assert summary.worker_restarts == 0  # the forged "hung" heartbeats were not believed
    assert summary.engine.time_points == TIME_POINTS
    with h5py.File(proto.output, "r") as h5:
        has_sr = h5["timestamps/sr_written"][:, 0] == 1
        assert has_sr.mean() >= 0.9, f"only {has_sr.sum()} of {TIME_POINTS} time points have SR"
        sr = h5["sr/passthrough"][()]
        assert not np.any(sr == 60000), "a forged or duplicate SR image was stored"
        kinds = [e["kind"].decode() for e in h5[run_file.EVENTS][()]]
        run_end = [e for e in h5[run_file.EVENTS][()] if e["kind"] == b"run_end"]
        assert run_end and b"rejected_by_reason" in run_end[0]["detail"]
    duplicates = sent.get("duplicate", 0)
    assert kinds.count("sr_duplicate") == summary.rejected_by_reason.get("duplicate result", 0)
    assert kinds.count("sr_duplicate") >= duplicates - 2  # the last ones may miss the drain
    assert summary.sr_frames == int(has_sr.sum())  # duplicates are never counted as SR
    reasons = summary.rejected_by_reason
    assert reasons.get("malformed", 0) >= sent["bad type"] - 2
    assert reasons.get("foreign run id", 0) + reasons.get(
        "not from a worker of this run", 0) >= sent["foreign"] - 2
    assert summary.rejected_messages == sum(reasons.values())


def test_a_dying_results_thread_fails_the_run_loudly(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that kills the results thread stops the run with an error and a /events row
    (before, SR silently stopped and the run still reported "completed" with exit 0)."""
    proto = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "passthrough"}],
        "timepoints": 400, "output": str(tmp_path / "run.h5")})
    original = RunSession._on_result

    def buggy(self: RunSession, message: Any) -> None:
        if message.header.kind is Kind.SR_RESULT and message.header.time_point == 3:
            raise KeyError("a bug in the results handler")
        original(self, message)

    monkeypatch.setattr(RunSession, "_on_result", buggy)
    session = RunSession(ScriptedSource(frame_delay_s=0.002), None, proto, (16, 16), 62.6,
                         options=OPTIONS)
    summary = session.run()
    assert "results thread died: KeyError" in summary.error
    assert summary.engine.time_points < 400  # acquisition stopped, not run on without SR
    with h5py.File(proto.output, "r") as h5:
        faults = [e["detail"].decode() for e in h5[run_file.EVENTS][()]
                  if e["kind"] == b"fault"]
    assert any("results thread died" in f for f in faults)


def test_two_ctrl_c_still_seal_the_run_file_with_its_accounting(tmp_path: Path) -> None:
    """Before, the second Ctrl-C raised KeyboardInterrupt out of the run: no run_end row, the
    SWMR flags left set, time points with neither SR nor a skip row."""
    import os
    import signal
    import subprocess
    import sys

    output = tmp_path / "run.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "acquisition.cli", "run", "--emulator", "-t", "100000",
         "--size-px", "32", "--model", "passthrough", "--no-fsync", "-o", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not output.exists():
            time.sleep(0.1)
        time.sleep(3.0)  # some time points recorded, SR on its way
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert "sealing the run file" in stderr and "Traceback" not in stderr
    with h5py.File(output, "r") as h5:  # sealed: opens without SWMR or `livesim recover`
        events = h5[run_file.EVENTS][()]
        kinds = [e["kind"].decode() for e in events]
        complete = h5[run_file.COMPLETE][()] == 1
        has_sr = h5[run_file.SR_WRITTEN][:, 0] == 1
    assert "run_end" in kinds and "worker_died" not in kinds
    skipped = {int(e["time_point"]) for e in events if e["kind"] == b"sr_skip"}
    assert complete.sum() > 3
    for t in np.flatnonzero(complete):
        assert has_sr[t] or t in skipped, f"time point {t}: neither SR nor a skip row"


def test_a_run_leaves_no_socket_folder_in_tmp(tmp_path: Path) -> None:
    """Each run made a /tmp/livesim-* folder for its ipc sockets and left it behind."""
    proto = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "passthrough"}],
        "timepoints": 3, "output": str(tmp_path / "run.h5")})
    session = RunSession(ScriptedSource(), None, proto, (16, 16), 62.6, options=OPTIONS)
    folder = session.endpoints.temporary_folder
    assert folder is not None and folder.is_dir() and folder.name.startswith("livesim-")
    summary = session.run()
    assert summary.sr_frames == 3
    assert not folder.exists()
