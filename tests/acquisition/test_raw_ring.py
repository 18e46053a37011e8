"""The shared-memory raw ring: slots, references, a read-only peer, and runs through it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from acquisition import run_file
from acquisition.engine import group_sets
from acquisition.protocol import Protocol
from acquisition.raw_ring import RawRing, RingReader, ring_supported
from acquisition.session import RunSession, SessionOptions
from acquisition.transport import MessageReceiver, RawSetSender
from acquisition.wire import Header, Kind, PayloadRing, WireError, decode, encode, header_for
from inference.reconstruction import WideFieldReconstructor
from inference.worker import WorkerState

from .conftest import ScriptedSource, expected_frame

pytestmark = pytest.mark.skipif(not ring_supported(), reason="needs Linux memfd_create")

FAST = SessionOptions(heartbeat_s=0.2, heartbeat_timeout_s=2.0, fsync=False, drain_idle_s=10.0)


def ring_descriptors(name: str = "livesim-raw-ring") -> list[str]:
    """This process's open descriptors that are a ring named ``name`` (memfd)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if name in target:
            out.append(target)
    return out


def reference(ring: RawRing, array: np.ndarray, sequence: int = 1) -> Header:
    info = ring.reference_info(array)
    assert info is not None
    return header_for(Kind.RAW_SET, "run", sequence, array, info=info)


def test_a_slot_is_handed_out_again_only_when_nothing_uses_it() -> None:
    with RawRing(2, 9 * 16 * 16 * 2) as ring:
        first = ring.take((9, 16, 16))
        second = ring.take((9, 16, 16))
        assert ring.locate(first)[:2] == (0, 0) and ring.locate(second)[:2] == (1, 0)
        third = ring.take((9, 16, 16))  # both slots in use: a heap buffer, sent inline
        assert ring.locate(third) is None and ring.fallbacks == 1
        kept = second[4]  # a view (e.g. queued for the recorder) keeps slot 1 busy
        del first, second
        again = ring.take((9, 16, 16))
        assert ring.locate(again)[:2] == (0, 0)
        assert ring.locate(again)[2] == 2  # generation bumped before the slot was reused
        assert ring.locate(kept)[:2] == (1, 4 * 16 * 16 * 2)
        assert ring.slots_in_use == 2
        assert ring.locate(ring.take((9, 64, 64))) is None  # larger than a slot: heap


def test_sets_grouped_into_the_ring_are_views_of_one_slot() -> None:
    from hardware.frames import FrameTag, TaggedFrame

    frames = [TaggedFrame(expected_frame(0, c, p, (8, 8)),
                          FrameTag(time_point=0, channel=c, laser_nm=488 + c, orientation=p // 3,
                                   phase=p % 3, pattern_index=p, sequence=9 * c + p,
                                   timestamp_s=0.0, exposure_ms=1.0))
              for c in range(2) for p in range(9)]
    with RawRing(2, 2 * 9 * 8 * 8 * 2) as ring:
        sets, problems = group_sets(0, frames, (488, 489), 9, pool=ring)
        assert not problems
        where = [ring.locate(s.frames) for s in sets]
        assert where == [(0, 0, 1), (0, 9 * 8 * 8 * 2, 1)]
        for c, raw in enumerate(sets):
            for p in range(9):
                np.testing.assert_array_equal(raw.frames[p], expected_frame(0, c, p, (8, 8)))


_PEER = textwrap.dedent("""
    import hashlib, json, mmap, os, sys
    import msgpack
    from acquisition.raw_ring import RingReader
    from acquisition.wire import decode
    fd = int(sys.argv[1])
    reader = RingReader(fd)
    digests = []
    for line in sys.stdin:
        header = bytes.fromhex(line.strip())
        message = decode([header, b""], reader)
        digests.append(hashlib.sha256(message.array.tobytes()).hexdigest())
    refused = []
    try:
        mmap.mmap(fd, os.fstat(fd).st_size)  # writable shared mapping of a read-only fd
    except PermissionError:
        refused.append("mmap")
    try:
        message.array[0, 0, 0] = 1
    except ValueError:
        refused.append("array")
    try:
        os.ftruncate(fd, 0)
    except OSError:
        refused.append("truncate")
    print(json.dumps({"digests": digests, "refused": refused}))
""")


def ring_resident_bytes(name: str = "livesim-raw-ring") -> int:
    """Resident bytes of this process's mappings of rings named ``name`` (/proc/self/smaps)."""
    resident = 0
    in_ring = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:  # a mapping's header line
            in_ring = name in line
        elif in_ring and line.startswith("Rss:"):
            resident += int(line.split()[1]) * 1024
    return resident


def test_the_ring_is_committed_at_start_without_touching_frames_already_in_it() -> None:
    with RawRing(16, 9 * 128 * 128 * 2) as ring:
        frames = ring.take((9, 128, 128))  # written while the slots are being populated
        for p in range(9):
            frames[p] = expected_frame(0, 0, p, (128, 128))
        if not ring.wait_populated(30.0):
            pytest.skip("this kernel has no MADV_POPULATE_WRITE")
        assert ring_resident_bytes() >= ring.total_bytes  # no page left for a frame to fault
        for p in range(9):
            np.testing.assert_array_equal(frames[p], expected_frame(0, 0, p, (128, 128)))
    started = RawRing(64, 16 * 1024 * 1024)  # closing while it populates: it stops, no hang
    started.close()
    assert not started._populating.is_alive() and started.populated_bytes < started.total_bytes


def test_a_worker_process_reads_equal_payloads_and_cannot_write_the_ring() -> None:
    import json

    with RawRing(3, 9 * 32 * 32 * 2) as ring:
        sets = []
        for t in range(3):
            frames = ring.take((9, 32, 32))
            for p in range(9):
                frames[p] = expected_frame(t, 0, p, (32, 32))
            sets.append(frames)
        lines = "".join(reference(ring, f, t).pack().hex() + "\n" for t, f in enumerate(sets))
        peer = subprocess.run([sys.executable, "-c", _PEER, str(ring.reader_fd)], input=lines,
                              capture_output=True, text=True, timeout=60,
                              pass_fds=(ring.reader_fd,), cwd=Path(__file__).parents[2])
        assert peer.returncode == 0, peer.stderr
        out = json.loads(peer.stdout)
        assert out["digests"] == [hashlib.sha256(f.tobytes()).hexdigest() for f in sets]
        assert sorted(out["refused"]) == ["array", "mmap", "truncate"]
        for t, frames in enumerate(sets):  # and the peer changed nothing
            for p in range(9):
                np.testing.assert_array_equal(frames[p], expected_frame(t, 0, p, (32, 32)))


def test_bad_references_are_refused_with_a_reason() -> None:
    with RawRing(2, 9 * 8 * 8 * 2) as ring:
        reader = RingReader(ring.reader_fd)
        frames = ring.take((9, 8, 8))
        frames[:] = 7
        good = reference(ring, frames)
        message = decode([good.pack(), b""], reader)
        assert not message.array.flags.writeable and int(message.array.sum()) == 7 * 9 * 64

        def refused(info: dict[str, int], payload: bytes = b"") -> str:
            header = header_for(Kind.RAW_SET, "run", 2, np.empty((9, 8, 8), np.uint16),
                                info={**good.info, **info})
            with pytest.raises(WireError) as caught:
                decode([header.pack(), payload], reader)
            return str(caught.value)

        assert "outside the ring" in refused({"ring_slot": 2})
        assert "outside the ring" in refused({"ring_offset": ring.slot_bytes - 2})
        assert "outside the ring" in refused({"ring_offset": 1})  # not on a uint16 boundary
        assert "empty payload" in refused({}, payload=b"\x00" * 8)
        with pytest.raises(WireError, match="no ring"):
            decode([good.pack(), b""])  # a receiver that maps no ring (a remote worker)
        sr = header_for(Kind.SR_RESULT, "run", 3, None, info={"ring_slot": 0})
        with pytest.raises(WireError):
            decode([sr.pack(), b""], reader)  # results never travel by reference
        del frames, message
        ring.take((9, 8, 8))  # slot 1
        ring.take((9, 8, 8))  # slot 0 again: the old reference is stale
        with pytest.raises(WireError, match="reused before it was read"):
            decode([good.pack(), b""], reader)
        assert not reader.unchanged(good)
        reader.close()
        # a header that carries its payload inline is untouched by the ring
        inline = np.arange(9 * 64, dtype=np.uint16).reshape(9, 8, 8)
        message = decode(encode(header_for(Kind.RAW_SET, "run", 4, inline), inline), reader)
        np.testing.assert_array_equal(message.array, inline)


def _protocol(tmp_path: Path, timepoints: int, reconstruction: str) -> Protocol:
    return Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": reconstruction}],
        "timepoints": timepoints, "output": str(tmp_path / "run.h5")})


@contextlib.contextmanager
def worker_loop(tmp_path: Path, ring: RawRing, result_rings: PayloadRing | None = None,
                **options: Any) -> Iterator[tuple[RawSetSender, MessageReceiver, WorkerState]]:
    """The real worker loop ('wide-field': it reads every pixel it is given) on a thread,
    mapping ``ring``; yields the raw sender, the results receiver (resolving references in
    ``result_rings``) and the worker's state; stopped and closed at exit."""
    import zmq

    from acquisition.transport import open_socket
    from inference.worker import WorkerOptions, serve

    context = zmq.Context()
    raw_endpoint, results_endpoint = f"ipc://{tmp_path}/raw", f"ipc://{tmp_path}/results"
    sender = RawSetSender(context, raw_endpoint, 4)
    results = MessageReceiver(open_socket(context, zmq.PULL, results_endpoint, bind=True),
                              "results", result_rings)
    worker_options = WorkerOptions(raw_endpoint, results_endpoint, ("wide-field",), (9, 16, 16),
                                   heartbeat_s=0.1, run_id="run", raw_ring_fd=ring.reader_fd,
                                   **options)
    state = WorkerState()
    worker = threading.Thread(target=serve, args=(worker_options, {0: WideFieldReconstructor()},
                                                   {}, context, state), daemon=True)
    worker.start()
    try:
        yield sender, results, state
    finally:
        state.stop.set()
        worker.join(10)
        sender.close()
        results.socket.close(linger=0)
        context.term()


def send_set(sender: RawSetSender, ring: RawRing, t: int) -> np.ndarray:
    """Time point ``t``'s expected frames, grouped into a ring slot and sent by reference
    (retried until the worker has connected)."""
    frames = ring.take((9, 16, 16))
    frames[:] = np.stack([expected_frame(t, 0, p, (16, 16)) for p in range(9)])
    info = ring.reference_info(frames)
    assert info is not None
    header = header_for(Kind.RAW_SET, "run", t + 1, frames, time_point=t, channel=0,
                        n_orientations=3, n_phases=3, info=info)
    deadline = time.monotonic() + 30
    while not sender.send_reference(header):
        assert time.monotonic() < deadline, "worker never connected"
        time.sleep(0.01)
    return frames


def test_the_worker_reconstructs_exactly_the_frames_in_the_ring(tmp_path: Path) -> None:
    """The real worker loop reading the ring: 'none' is the wide-field mean of what it read,
    which must be the mean of the frames put in the ring, set by set."""
    with RawRing(4, 9 * 16 * 16 * 2) as ring:
        with worker_loop(tmp_path, ring) as (sender, results, state):
            sets = [send_set(sender, ring, t) for t in range(3)]
            images: dict[int, np.ndarray] = {}
            deadline = time.monotonic() + 60
            while len(images) < 3 and time.monotonic() < deadline:
                message = results.receive(200)
                if message is not None and message.header.kind is Kind.SR_RESULT:
                    images[message.header.time_point] = np.array(message.array)
        reference_reconstructor = WideFieldReconstructor()
        assert sorted(images) == [0, 1, 2] and state.failed == 0
        for t, frames in enumerate(sets):
            np.testing.assert_array_equal(images[t],
                                          reference_reconstructor.reconstruct(frames).image)
        del sets, frames


def test_a_run_sends_raw_sets_through_the_ring_and_closes_it(tmp_path: Path) -> None:
    """Every set goes by reference, and every SR image comes back through the worker's result
    ring; every raw frame in the file is the camera's, every SR image is recorded, and the
    rings are gone after the run."""
    before = ring_descriptors() + ring_descriptors("livesim-result-ring")
    proto = _protocol(tmp_path, 8, "passthrough")
    session = RunSession(ScriptedSource(frame_delay_s=0.001), None, proto, (16, 16), 62.6,
                         options=FAST)
    summary = session.run()
    assert summary.error == "" and summary.sr_frames == 8
    assert getattr(session.raw_senders[0], "sent_by_reference", 0) == 8  # none went inline
    assert session.result_rings is not None and session.result_rings.received == 8
    with h5py.File(proto.output, "r") as h5:
        for t in range(8):
            raw = np.stack([expected_frame(t, 0, p, (16, 16)) for p in range(9)])
            np.testing.assert_array_equal(h5[run_file.RAW][t, 0], raw)
        assert h5["timestamps/sr_written"][:, 0].all()
        assert h5[f"{run_file.SR_GROUP}/passthrough"].shape == (8, 1, 32, 32)
    # closed: nothing of the rings left in this process
    assert ring_descriptors() + ring_descriptors("livesim-result-ring") == before
    assert not [n for n in os.listdir("/dev/shm") if "livesim" in n]  # never had a name


def test_without_shared_memory_the_same_run_goes_inline(tmp_path: Path) -> None:
    from dataclasses import replace

    proto = _protocol(tmp_path, 4, "passthrough")
    session = RunSession(ScriptedSource(), None, proto, (16, 16), 62.6,
                         options=replace(FAST, shared_memory=False))
    summary = session.run()
    assert summary.error == "" and summary.sr_frames == 4 and session.ring is None
    assert session.result_rings is None
    assert getattr(session.raw_senders[0], "sent_by_reference", -1) == 0


def test_a_killed_worker_leaves_the_ring_intact_and_the_ring_goes_at_exit(
        tmp_path: Path) -> None:
    """SIGKILL the worker mid-run: the run goes on, the restarted worker maps the same ring,
    every raw frame in the file is the camera's, and no ring descriptor survives the run."""
    before = ring_descriptors()
    proto = _protocol(tmp_path, 100_000, "passthrough")
    session = RunSession(ScriptedSource(frame_delay_s=0.002), None, proto, (16, 16), 62.6,
                         options=FAST)
    killed: list[int] = []

    def kill_then_stop() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            recorder, supervisor = session.recorder, session.supervisor
            if recorder is not None and recorder.stats.sr_frames >= 3 and supervisor:
                assert supervisor.process is not None
                killed.append(supervisor.process.pid)
                os.kill(supervisor.process.pid, signal.SIGKILL)
            time.sleep(0.01)
        while time.monotonic() < deadline:
            supervisor, recorder = session.supervisor, session.recorder
            if (supervisor is not None and supervisor.restarts and supervisor.ready
                    and recorder is not None and recorder.stats.sr_frames >= 10):
                break
            time.sleep(0.05)
        session.stop()

    controller = threading.Thread(target=kill_then_stop)
    controller.start()
    summary = session.run()
    controller.join()
    assert killed and summary.worker_restarts == 1 and summary.error == ""
    assert getattr(session.raw_senders[0], "sent_by_reference", 0) > 5
    with h5py.File(proto.output, "r") as h5:
        n = h5[run_file.RAW].shape[0]
        assert h5["timestamps/sr_written"][-3:, 0].all(), "SR did not resume after the restart"
        for t in range(n):
            raw = np.stack([expected_frame(t, 0, p, (16, 16)) for p in range(9)])
            np.testing.assert_array_equal(h5[run_file.RAW][t, 0], raw)
    assert ring_descriptors() == before
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)


def test_a_worker_given_something_else_than_a_ring_says_why(tmp_path: Path) -> None:
    import zmq

    from acquisition.transport import MessageReceiver, open_socket
    from inference.worker import WorkerOptions, serve

    context = zmq.Context()
    results_endpoint = f"ipc://{tmp_path}/results"
    results = MessageReceiver(open_socket(context, zmq.PULL, results_endpoint, bind=True),
                              "results")
    not_a_ring = tmp_path / "plain"
    not_a_ring.write_bytes(b"\0" * 8192)
    fd = os.open(not_a_ring, os.O_RDONLY)
    try:
        options = WorkerOptions(f"ipc://{tmp_path}/raw", results_endpoint, ("passthrough",),
                                raw_ring_fd=fd)
        with pytest.raises(ValueError, match="not a livesim ring"):
            serve(options, {}, {}, context)
        message = results.receive(10_000)
        assert message is not None and message.header.kind is Kind.HEARTBEAT
        assert "cannot map the shared-memory raw ring" in message.header.info["fatal"]
    finally:
        os.close(fd)
        results.socket.close(linger=0)
        context.term()
