"""RunRecorder: exact round trip, SWMR, I/O errors stop cleanly, SIGKILL loses nothing flushed."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition import run_file
from acquisition.recorder import RecorderError, RunLayout, RunRecorder
from acquisition.recovery import describe_run_file, lookup3, recover_run_file

from .conftest import expected_frame

LAYOUT = RunLayout(n_channels=2, n_orientations=3, n_phases=3, frame_shape=(16, 16),
                   sr_shape=(32, 32), pixel_size_nm=62.6, sr_models=("dfcan-sim",), imc=True,
                   channel_names=("488nm", "560nm"))


def raw(t: int, c: int) -> np.ndarray:
    return np.stack([expected_frame(t, c, p, (16, 16)) for p in range(9)])


def write_time_point(recorder: RunRecorder, t: int) -> None:
    for c in range(2):
        recorder.write_raw_set(t, c, raw(t, c), np.arange(9) + 100.0 * t, np.arange(9) + 18 * t
                               + 9 * c)
    recorder.end_time_point(t)



def test_table_rows_written_as_whole_chunks_keep_every_row_in_any_order(
        tmp_path: Path) -> None:
    """Rows go to the file as whole chunks from the recorder's copy: a row of a chunk whose
    copy was dropped (older than the kept ones) reads that chunk back first, so no row
    written before is lost, a changed copy dropped before ``write_pending`` is stored then,
    unwritten rows keep the fill value, and a SWMR reader sees each row after the flush."""
    from acquisition.recorder import _TableRows

    path = tmp_path / "tables.h5"
    h5 = h5py.File(path, "w", libver="latest")
    table = run_file.create_table(h5, "t", (2, 512), np.float32, np.nan)  # 4 rows a chunk
    assert table.chunks == (4, 2, 512)
    h5.swmr_mode = True
    rows = _TableRows(table)
    order = [0, 1, 5, 9, 13, 17, 21, 2, 25, 6, 29, 3, 30]  # 2, 6, 3: chunks already dropped
    expected = np.full((31, 2, 512), np.nan, np.float32)
    table.id.set_extent((31, 2, 512))
    for i, t in enumerate(order):
        rows.write((t, t % 2), np.arange(512, dtype=np.float32) + t)
        expected[t, t % 2] = np.arange(512) + t
        if i not in (1, 2, 3, 4, 5, 8):  # else in a group: chunk 0 changed, then dropped
            rows.write_pending()
            h5.flush()
            with h5py.File(path, "r", libver="latest", swmr=True) as reader:
                np.testing.assert_array_equal(reader["t"][()], expected)
    rows.write((31 - 1,), 7.0)  # a whole row from one value
    expected[30] = 7.0
    rows.write_pending()
    h5.close()
    with h5py.File(path, "r") as stored:
        np.testing.assert_array_equal(stored["t"][()], expected)


def test_rewriting_table_chunks_in_place_does_not_grow_the_file(tmp_path: Path) -> None:
    """Each table row rewrites its whole chunk (up to 32 KiB); the file must grow by the image
    bytes of a time point and its index entries only, not by a new copy of every table chunk
    (7 tables x up to 32 KiB a time point if HDF5 put each rewrite in new space)."""
    layout = RunLayout(n_channels=1, n_orientations=3, n_phases=3, frame_shape=(16, 16),
                       sr_shape=(32, 32), pixel_size_nm=62.6, sr_models=("dfcan-sim",))
    sizes = {}
    for n in (40, 120):
        path = tmp_path / f"run{n}.h5"
        recorder = RunRecorder(path, layout, {}, fsync=False)
        for t in range(n):
            recorder.write_raw_set(t, 0, np.zeros((9, 16, 16), np.uint16), np.zeros(9),
                                   np.arange(9) + 9 * t)
            recorder.write_sr(t, 0, "dfcan-sim", np.zeros((32, 32), np.uint16), 1.0, 1.0, 1.0)
            recorder.end_time_point(t)
        recorder.close()
        sizes[n] = path.stat().st_size
    image_bytes = 9 * 16 * 16 * 2 + 16 * 16 * 4 + 32 * 32 * 2  # raw, wide-field, SR
    assert (sizes[120] - sizes[40]) / 80 < image_bytes + 512


def test_table_rows_land_in_their_row_when_results_come_late_and_out_of_order(
        tmp_path: Path) -> None:
    """The per-time-point tables keep one dataspace per growth: a row written after the file
    grew past it (a late SR result) and a row of the newest time point both land right."""
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {}, fsync=False)
    for t in range(3):
        write_time_point(recorder, t)
    for t, c in ((2, 1), (0, 0), (1, 1)):  # out of order, after the tables grew to 3 rows
        recorder.write_sr(t, c, "dfcan-sim", np.zeros((32, 32), np.float32),
                          photon_count=10.0 * t + c, latency_ms=float(t), inference_ms=1.0)
    write_time_point(recorder, 3)
    recorder.write_sr(3, 0, "dfcan-sim", np.zeros((32, 32), np.float32), photon_count=30.0,
                      latency_ms=3.0, inference_ms=1.0)
    recorder.close()
    with h5py.File(path, "r") as h5:
        counts = h5["photon_count"][()]
        assert counts[0, 0] == 0.0 and counts[1, 1] == 11.0 and counts[2, 1] == 21.0
        assert counts[3, 0] == 30.0 and np.isnan(counts[[0, 1, 2, 3], [1, 0, 0, 1]]).all()
        assert h5["timestamps/sr_written"][()].tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]
        np.testing.assert_array_equal(h5["timestamps/sequence"][:, 1, 0], [9, 27, 45, 63])
        np.testing.assert_array_equal(h5["timestamps/camera_s"][3, 0], np.arange(9) + 300.0)

def _hold_writer(recorder: RunRecorder) -> threading.Event:
    """Block the writer thread on an event item (alone in its group) until the returned event
    is set."""
    release, holding = threading.Event(), threading.Event()
    do_event = recorder._do_event

    def held(when_s: float, kind: str, t: int, sequence: int, detail: str) -> None:
        holding.set()
        assert release.wait(30.0)
        do_event(when_s, kind, t, sequence, detail)

    recorder._do_event = held  # type: ignore[method-assign]
    recorder.record_event("hold")
    assert holding.wait(10.0)
    return release


def test_a_backlog_is_written_as_one_group_with_one_flush(tmp_path: Path) -> None:
    """Time points queued while the writer was busy are written together and flushed once,
    after the last ended one; every frame and row lands where it belongs; without a backlog
    each time point is flushed on its own."""
    recorder = RunRecorder(tmp_path / "group.h5", LAYOUT, {}, fsync=False)
    flushed: list[int] = []
    flush = recorder._flush_ended

    def counted() -> None:
        flushed.append(recorder._ended)
        flush()

    recorder._flush_ended = counted  # type: ignore[method-assign]
    release = _hold_writer(recorder)
    for t in range(6):
        write_time_point(recorder, t)
        recorder.write_sr(t, 0, "dfcan-sim", np.full((32, 32), t / 10, np.float32), 100.0 + t,
                          5.0, 2.0)
    release.set()
    deadline = time.monotonic() + 10
    while recorder.stats.time_points < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flushed == [5]  # one flush for the group of 6, after t=5 ended
    write_time_point(recorder, 6)
    while recorder.stats.time_points < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flushed == [5, 6]
    recorder.close()
    with h5py.File(tmp_path / "group.h5", "r") as h5:
        assert h5[run_file.RAW].shape[0] == 7
        for t in range(7):
            for c in range(2):
                np.testing.assert_array_equal(h5[run_file.RAW][t, c], raw(t, c))
        np.testing.assert_array_equal(h5["timestamps/complete"][()], np.ones(7))
        np.testing.assert_array_equal(h5["timestamps/sequence"][:, 1, 0], 18 * np.arange(7) + 9)
        np.testing.assert_array_equal(h5["timestamps/sr_written"][:, 0], [1] * 6 + [0])
        np.testing.assert_allclose(h5[run_file.PHOTON_COUNT][:6, 0], 100.0 + np.arange(6))
        np.testing.assert_allclose(run_file.read_sr(h5, "dfcan-sim", 4, 0), 0.4, atol=1e-4)


def test_queue_bound_holds_while_the_writer_works_on_a_group(tmp_path: Path) -> None:
    """The queue's bound counts items in the writer's group too: with the writer held, the
    item beyond ``queue_size`` waits ``put_timeout_s`` and fails with a clear error, and what
    was queued is still written."""
    recorder = RunRecorder(tmp_path / "bound.h5", LAYOUT, {}, fsync=False, queue_size=4,
                           put_timeout_s=0.2)
    release = _hold_writer(recorder)  # the held event takes one of the 4 places
    recorder.write_raw_set(0, 0, raw(0, 0), np.zeros(9), np.arange(9))
    recorder.write_raw_set(0, 1, raw(0, 1), np.zeros(9), np.arange(9) + 9)
    recorder.end_time_point(0)
    with pytest.raises(RecorderError, match=r"has not kept up for 0 s \(4 items queued\)"):
        recorder.write_raw_set(1, 0, raw(1, 0), np.zeros(9), np.arange(9) + 18)
    release.set()
    recorder.close()
    with h5py.File(tmp_path / "bound.h5", "r") as h5:
        assert h5[run_file.RAW].shape[0] == 1
        np.testing.assert_array_equal(h5[run_file.RAW][0, 1], raw(0, 1))


def test_a_write_failure_in_a_group_fails_a_waiting_producer_at_once(tmp_path: Path) -> None:
    """A producer waiting for room when the writer fails in the middle of a group gets the
    writer's error as soon as it happened, not a "has not kept up" after put_timeout_s."""
    recorder = RunRecorder(tmp_path / "fail.h5", LAYOUT, {}, fsync=False, queue_size=4,
                           put_timeout_s=30.0)

    def full_disk(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    release = _hold_writer(recorder)  # 1 of 4 places
    recorder._do_raw = full_disk  # type: ignore[method-assign]
    for c in range(2):
        recorder.write_raw_set(0, c, raw(0, c), np.zeros(9), np.arange(9) + 9 * c)
    recorder.end_time_point(0)  # 4 of 4
    outcomes: dict[int, tuple[str, float]] = {}

    def producer(t: int) -> None:
        start = time.monotonic()
        try:
            recorder.write_raw_set(t, 0, raw(t, 0), np.zeros(9), np.arange(9) + 18 * t)
            outcomes[t] = ("queued", time.monotonic() - start)
        except RecorderError as exc:
            outcomes[t] = (str(exc), time.monotonic() - start)

    waiting = [threading.Thread(target=producer, args=(t,)) for t in (1, 2)]
    for thread in waiting:
        thread.start()
    time.sleep(0.3)  # both wait for room: the held item frees one place, the failure all
    release.set()
    for thread in waiting:
        thread.join(20.0)
        assert not thread.is_alive()
    failed = [(text, waited) for text, waited in outcomes.values() if text != "queued"]
    assert len(outcomes) == 2 and failed  # the one not let in by the held item's place failed
    for text, waited in failed:
        assert "ENOSPC" in text and "kept up" not in text and waited < 15.0
    with pytest.raises(RecorderError, match="ENOSPC"):
        recorder.close()
    with h5py.File(tmp_path / "fail.h5", "r") as h5:  # sealed: the "hold" event was not flushed
        assert [e["kind"].decode() for e in h5["events"][()]] == ["fault"]
    # the failed handle had an unflushed event row and extents; this process records on (if
    # the failed handle's last writes fail, HDF5 crashes at the next file)
    again = RunRecorder(tmp_path / "again.h5", LAYOUT, {}, fsync=False)
    write_time_point(again, 0)
    again.close()
    with h5py.File(tmp_path / "again.h5", "r") as h5:
        np.testing.assert_array_equal(h5[run_file.RAW][0, 1], raw(0, 1))


def test_round_trip_layout_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {"protocol": {"timepoints": 3}, "emulator_seed": 7},
                           calibration={"offset_adu": np.full((16, 16), 100.0)})
    for t in range(3):
        write_time_point(recorder, t)
        sr = np.full((32, 32), t / 10, np.float32)
        recorder.write_sr(t, 0, "dfcan-sim", sr, photon_count=55.0, latency_ms=12.0,
                          inference_ms=3.0)
    recorder.write_imc(1, np.ones((3, 32, 32), np.float32))
    recorder.record_event("sr_skip", 2, 44, "channel 1: worker behind")
    recorder.close()
    with h5py.File(path, "r") as h5:
        assert h5["raw"].shape == (3, 2, 9, 16, 16) and h5["raw"].chunks == (1, 1, 1, 16, 16)
        for t in range(3):
            for c in range(2):
                np.testing.assert_array_equal(h5["raw"][t, c], raw(t, c))
                np.testing.assert_allclose(h5["wf"][t, c], raw(t, c).mean(axis=0), rtol=1e-6)
        np.testing.assert_array_equal(h5["timestamps/sequence"][:, 1, 0], [9, 27, 45])
        assert h5["timestamps/complete"][()].tolist() == [1, 1, 1]
        sr = h5["sr/dfcan-sim"]
        assert sr.shape == (3, 2, 32, 32) and sr.dtype == np.uint16
        assert (sr[2, 0] == round(0.2 * 65535)).all() and sr.attrs["scale"] == 1 / 65535
        assert h5["timestamps/sr_written"][()].tolist() == [[1, 0], [1, 0], [1, 0]]
        images = run_file.read_sr(h5, "dfcan-sim")
        np.testing.assert_allclose(images[:, 0, 5, 5], [0.0, 0.1, 0.2], atol=1e-5)
        assert np.isnan(images[:, 1]).all()  # never written = NaN
        assert np.isnan(run_file.read_sr(h5, "dfcan-sim", 2, 1)).all()
        assert h5["photon_count"][0, 0] == 55.0
        assert np.isnan(h5["imc"][0]).all() and (h5["imc"][1] == 1).all()
        assert list(h5["imc"].attrs["channel_names"]) == ["microtubules", "er", "lysosomes"]
        np.testing.assert_allclose(h5["raw"].attrs["element_size_um"], [1, 1, 1, 0.0626, 0.0626],
                                   rtol=1e-6)
        np.testing.assert_allclose(sr.attrs["element_size_um"], [1, 1, 0.0313, 0.0313], rtol=1e-6)
        events = h5["events"][()]
        assert [e["kind"].decode() for e in events] == ["sr_skip"]
        assert events[0]["time_point"] == 2 and events[0]["sequence"] == 44
        assert (h5["calibration/offset_adu"][()] == 100).all()
        meta = run_file.read_metadata(h5)
        assert meta["emulator_seed"] == 7 and meta["protocol"] == {"timepoints": 3}


def test_refuses_to_overwrite_and_checks_shapes(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    path.write_bytes(b"old data")
    with pytest.raises(RecorderError, match="refusing to overwrite"):
        RunRecorder(path, LAYOUT, {})
    assert path.read_bytes() == b"old data"
    recorder = RunRecorder(tmp_path / "b.h5", LAYOUT, {})
    with pytest.raises(RecorderError, match="does not match"):
        recorder.write_raw_set(0, 0, np.zeros((8, 16, 16), np.uint16), [0] * 8, [0] * 8)
    with pytest.raises(RecorderError, match="not declared"):
        recorder.write_sr(0, 0, "other", np.zeros((32, 32), np.float32), 0, 0, 0)
    recorder.close()


def test_swmr_reader_sees_flushed_time_points_while_recording(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {}, fsync=False)
    try:
        write_time_point(recorder, 0)
        write_time_point(recorder, 1)
        deadline = time.monotonic() + 10
        with h5py.File(path, "r", swmr=True) as h5:
            complete = h5["timestamps/complete"]
            while time.monotonic() < deadline:
                complete.refresh()
                if complete.shape[0] == 2 and complete[()].sum() == 2:
                    break
                time.sleep(0.02)
            h5["raw"].refresh()
            np.testing.assert_array_equal(h5["raw"][1, 1], raw(1, 1))
    finally:
        recorder.close()


def test_io_error_stops_cleanly_and_keeps_what_was_flushed(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    path = tmp_path / "run.h5"
    original = RunRecorder._do_raw

    def disk_full(self, t, *args):
        if t == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, t, *args)

    monkeypatch.setattr(RunRecorder, "_do_raw", disk_full)
    recorder = RunRecorder(path, LAYOUT, {})
    with pytest.raises(RecorderError, match="No space left"):
        for t in range(50):
            write_time_point(recorder, t)
            time.sleep(0.005)
    with pytest.raises(RecorderError, match="No space left"):
        recorder.close()
    with h5py.File(path, "r") as h5:  # closed cleanly: opens without SWMR or recovery
        assert h5["timestamps/complete"][:3].tolist() == [1, 1, 1]
        for t in range(3):
            np.testing.assert_array_equal(h5["raw"][t, 0], raw(t, 0))
        kinds = [e["kind"].decode() for e in h5["events"][()]]
        assert kinds == ["fault"]


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    from tests.acquisition.test_recorder import LAYOUT, write_time_point
    from acquisition.recorder import RunRecorder
    recorder = RunRecorder({path!r}, LAYOUT, {{}}, fsync=False)
    t = 0
    while True:
        write_time_point(recorder, t)
        t += 1
""")


def test_sigkill_leaves_every_flushed_time_point_intact(tmp_path: Path) -> None:
    path = tmp_path / "killed.h5"
    root = str(Path(__file__).resolve().parents[2])
    process = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, path=str(path))])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if not path.exists():
                continue
            try:
                if describe_run_file(path).complete_time_points >= 5:
                    break
            except (OSError, KeyError):
                continue
        else:
            pytest.fail("writer did not record 5 time points in 30 s")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    with pytest.raises(OSError):
        h5py.File(path, "r")  # a killed SWMR writer leaves the file flagged
    with h5py.File(path, "r", swmr=True) as h5:
        complete = h5["timestamps/complete"][()]
        flushed = np.flatnonzero(complete)
        assert len(flushed) >= 5 and flushed.tolist() == list(range(len(flushed)))
        for t in flushed:
            for c in range(2):
                np.testing.assert_array_equal(h5["raw"][t, c], raw(int(t), c))
    report = recover_run_file(path)
    assert report.flags_cleared and report.complete_time_points == len(flushed)
    with h5py.File(path, "r") as h5:  # any reader now
        np.testing.assert_array_equal(h5["raw"][int(flushed[-1]), 1], raw(int(flushed[-1]), 1))
        assert run_file.FAULT_RESERVE not in h5  # the killed writer's reserve is released


def test_lookup3_matches_hdf5s_own_superblock_checksum(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with h5py.File(path, "w", libver="latest") as h5:
        h5.create_dataset("x", data=np.arange(5))
    head = path.read_bytes()[:48]
    assert head[8] in (2, 3)
    assert lookup3(head[:44]) == int.from_bytes(head[44:48], "little")
    assert lookup3(b"") == 0xDEADBEEF and lookup3(b"Four score and seven years ago") == 0x17770551


def test_recover_refuses_what_is_not_hdf5(tmp_path: Path) -> None:
    from acquisition.recovery import RecoveryError

    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(RecoveryError, match="no HDF5 superblock"):
        recover_run_file(junk)
    with pytest.raises(RecoveryError, match="no such file"):
        recover_run_file(tmp_path / "absent.h5")


def test_writer_chunk_cache_is_bounded(tmp_path: Path) -> None:
    """Each dataset's chunk cache is capped (HDF5 2.0's default let a 30-minute soak grow
    the acquisition's memory by 13.6 %, 0.23 kB per time point)."""
    recorder = RunRecorder(tmp_path / "run.h5", LAYOUT, {"protocol": {}})
    try:
        _, _, chunk_cache_bytes, _ = recorder._h5.id.get_access_plist().get_cache()
        assert chunk_cache_bytes == run_file.WRITER_CHUNK_CACHE_BYTES <= 1024 * 1024
    finally:
        recorder.close()


def testwidefield_mean_is_bit_identical_to_the_float32_mean() -> None:
    from acquisition.recorder import widefield_mean

    rng = np.random.default_rng(3)
    # SIM sets; limits; a frame summed in several row bands (its last one partial)
    for shape in [(9, 32, 32), (25, 7, 11), (256, 3, 3), (300, 2, 2), (9, 1030, 700)]:
        frames = rng.integers(0, 65536, shape, dtype=np.uint16)
        frames[:, 0, 0] = 65535  # saturated pixels: the largest sum
        frames[:, -1, -1] = 65535
        wf = widefield_mean(frames)
        assert wf.dtype == np.float32 and wf.shape == shape[1:]
        np.testing.assert_array_equal(wf, frames.mean(axis=0, dtype="<f4"))
    view = frames[:, ::3, 1::2]  # not contiguous
    np.testing.assert_array_equal(widefield_mean(view), view.mean(axis=0, dtype="<f4"))


def test_sim_params_recorded_per_time_point(tmp_path: Path) -> None:
    """/sim_params holds what the Wiener reconstruction used; NaN where nothing was given."""
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {})
    used = np.array([[0.3, 0.01, 1.0, 0.8], [-0.14, 0.26, 2.0, 0.7], [-0.15, -0.25, 3.0, 0.9]])
    for t in range(2):
        write_time_point(recorder, t)
        recorder.write_sr(t, 0, "dfcan-sim", np.zeros((32, 32), np.float32), 1.0, 1.0, 1.0,
                          sim_params=used + t if t == 1 else None)
    recorder.write_sr(0, 1, "dfcan-sim", np.zeros((32, 32), np.float32), 1.0, 1.0, 1.0,
                      sim_params=np.zeros((2, 4)))  # wrong orientation count: not recorded
    recorder.close()
    with h5py.File(path, "r") as h5:
        table = h5[run_file.SIM_PARAMS][()]
    assert table.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(table[1, 0], used + 1)
    assert np.isnan(table[0]).all() and np.isnan(table[1, 1]).all()
