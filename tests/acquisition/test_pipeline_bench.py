"""`livesim bench pipeline`: the bare h5py limit writes as the recorder does; a small full run."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from acquisition.cli.bench import pipeline as pipeline_bench


def _bank() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 4000, (2, 9, 16, 16), dtype=np.uint16)


def test_bare_h5py_fsyncs_behind_the_writer_or_inline(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    fps, cpu = pipeline_bench.bare_h5py_fps(_bank(), 12, tmp_path, fsync=True, plain=True)
    assert len(calls) == 13  # one per time point, inline, and one at the close
    assert fps > 0 and cpu >= 0
    calls.clear()
    fps, _ = pipeline_bench.bare_h5py_fps(_bank(), 12, tmp_path, fsync=True, same_bytes=True)
    assert 2 <= len(calls) <= 13  # coalesced on the second thread, plus the close
    assert fps > 0 and not any(tmp_path.iterdir())  # its scratch file is removed
    calls.clear()
    pipeline_bench.bare_h5py_fps(_bank(), 5, tmp_path, fsync=False)
    assert calls == []


def test_member_orders_are_a_balanced_latin_square() -> None:
    for n in (2, 3, 4, 5):
        rows = pipeline_bench.member_orders(n, 2 * n)
        full = rows[: n if n % 2 == 0 else 2 * n]
        assert all(sorted(row) == list(range(n)) for row in rows)
        # every member in every position, and each ordered pair adjacent equally often
        for position in range(n):
            assert Counter(row[position] for row in full) == {m: len(full) // n
                                                              for m in range(n)}
        pairs = Counter((row[i], row[i + 1]) for row in full for i in range(n - 1))
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1
    assert pipeline_bench.member_orders(4, 5)[4] == pipeline_bench.member_orders(4, 1)[0]


def test_run_interleaved_syncs_before_each_member_in_a_fresh_folder(tmp_path: Path) -> None:
    calls: list[str] = []
    seen: list[Path] = []

    def member(name: str) -> Callable[[Path], pipeline_bench.MemberOutcome]:
        def run(folder: Path) -> pipeline_bench.MemberOutcome:
            assert folder.is_dir() and not any(folder.iterdir())  # fresh
            assert folder not in seen
            seen.append(folder)
            (folder / "run.h5").write_bytes(b"x" * 10)
            calls.append(name)
            return pipeline_bench.MemberOutcome(fps=float(len(seen)), cpu_s=0.0)
        return run

    members = {name: member(name) for name in ("a", "b", "c", "d")}
    runs = pipeline_bench.run_interleaved(members, 3, tmp_path,
                                          sync=lambda: calls.append("sync"))
    assert calls[0::2] == ["sync"] * 12  # a sync before every member
    order = [c for c in calls if c != "sync"]
    assert [r.order for r in runs] == [tuple(order[4 * i:4 * i + 4]) for i in range(3)]
    assert len({r.order for r in runs}) == 3  # rotated
    for name in members:  # no member always follows the same one
        followers = {r.order[r.order.index(name) + 1] for r in runs if r.order[-1] != name}
        assert len(followers) >= 2
    assert all(set(r.outcomes) == set(members) == set(r.sync_s) == set(r.dirty_mb)
               for r in runs)
    assert all(mb >= 0 for r in runs for mb in r.dirty_mb.values())  # /proc/meminfo read
    assert runs[1].outcomes[runs[1].order[0]].fps == 5.0  # outcomes kept per member
    assert not any(tmp_path.iterdir())  # every member's folder deleted
    with pytest.raises(ValueError, match="repeats"):
        pipeline_bench.run_interleaved(members, 0, tmp_path)


def test_thread_cpu_names_python_threads_and_counts_their_own_cpu() -> None:
    done = threading.Event()

    def spin() -> None:
        deadline = time.monotonic() + 10.0
        while not done.is_set() and time.monotonic() < deadline:
            pass

    worker = threading.Thread(target=spin, name="spinner")
    before = pipeline_bench.thread_cpu_s()
    worker.start()
    try:
        mid = pipeline_bench.thread_cpu_s()
        deadline = time.monotonic() + 10.0
        while pipeline_bench.thread_cpu_delta_s(
                mid, pipeline_bench.thread_cpu_s()).get("spinner", 0.0) < 0.03:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.01)
        after = pipeline_bench.thread_cpu_s()
    finally:
        done.set()
        worker.join()
    assert "spinner" in {name for name, _ in mid.values()}
    assert "spinner" not in {name for name, _ in before.values()}
    spent = pipeline_bench.thread_cpu_delta_s(mid, after)
    assert 0.02 < spent["spinner"] < 1.0  # its own CPU, not the process's
    assert pipeline_bench.thread_cpu_s(2**22 + 12345) == {}  # no such process


def _repeat(h5_same: float, pipe: float, order: tuple[str, ...]) -> pipeline_bench.RepeatFigures:
    fps = {"bare zmq": 4000.0, "bare h5py raw": 3000.0, "bare h5py same bytes": h5_same,
           "pipeline": pipe}
    return pipeline_bench.RepeatFigures(order=order, fps=fps,
                                        cpu_ms_per_frame={"pipeline": 1.5},
                                        sync_s={m: 0.01 for m in order})


def test_report_gives_every_repeat_the_medians_and_the_composite_limit() -> None:
    members = pipeline_bench.MEMBERS
    repeats = [_repeat(1500.0, 600.0, members), _repeat(900.0, 900.0, members[::-1]),
               _repeat(1400.0, 700.0, members)]
    result = pipeline_bench.PipelineBenchResult(
        time_points=10, size_px=32, fsync=True, pipeline_fps=700.0, zmq_fps=4000.0,
        h5py_fps=3000.0, h5py_same_bytes_fps=1400.0, latency_p50_ms=1.0, latency_p99_ms=2.0,
        raw_lost=0, raw_mismatched=0, sr_frames=30, sr_skips=0,
        cpu_ms_per_frame={"pipeline": 1.5}, repeats=repeats)
    # no CPU figures of the bare members: the limit is the slower of zmq and h5py same bytes
    assert result.repeat_ratios == pytest.approx([0.4, 1.0, 0.5])
    assert result.composite_limit == 1400.0  # not bare h5py raw (3000): not the same bytes
    assert result.ratio == pytest.approx(0.5)
    assert result.raw_bytes_ratio == pytest.approx(700 / 3000)
    text = "\n".join(result.lines())
    assert "ratio of medians, pipeline / composite limit: 0.50 (target >= 0.8)" in text
    assert "0.40, 1.00, 0.50; median 0.50" in text
    assert "for reference, pipeline / bare h5py raw: 0.23" in text
    assert "pipeline > h5 same > h5 raw > zmq" in text  # each repeat's order
    cores = os.cpu_count() or 1
    assert (f"CPU ceiling on {cores} core(s) at 1.50 ms per raw frame: {cores * 1e3 / 1.5:.0f} "
            f"frames/s = {cores * 1e3 / 1.5 / 1400:.2f} of the composite limit") in text


@pytest.mark.slow
def test_small_pipeline_bench_is_lossless(tmp_path: Path) -> None:
    result = pipeline_bench.run_pipeline_bench(6, 32, tmp_path, repeats=2)
    assert result.raw_lost == 0 and result.raw_mismatched == 0
    assert result.sr_frames == 12 and result.sr_skips == 0
    assert result.sets_by_reference == result.sr_by_reference == 12  # both rings, every set
    assert len(result.repeats) == 2 and result.repeats[0].order != result.repeats[1].order
    assert result.ratio == pytest.approx(result.pipeline_fps / min(
        result.zmq_fps, result.h5py_same_bytes_fps,
        (os.cpu_count() or 1) * 1e3 / (result.cpu_ms_per_frame["bare zmq"]
                                       + result.cpu_ms_per_frame["bare h5py same bytes"])))
    assert result.pipeline_fps == pytest.approx(
        statistics.median(r.fps["pipeline"] for r in result.repeats))
    for r in result.repeats:
        cpu = r.cpu_ms_per_frame
        assert cpu["pipeline"] == pytest.approx(cpu["pipeline acquisition process"]
                                                + cpu["pipeline worker"])
        assert cpu["pipeline worker"] > 0  # schedstat: ns, not 10 ms ticks
        assert all(s >= 0 for s in r.sync_s.values()) and len(r.sync_s) == 4
        assert any(k.startswith("acq ") for k in r.thread_cpu_ms_per_frame)
        assert any(k.startswith("worker ") for k in r.thread_cpu_ms_per_frame)
    text = "\n".join(result.lines())
    assert "pipeline / composite limit" in text and "bare h5py raw" in text
    assert "SR images back 12 of 12 through the result ring" in text
    assert not any(tmp_path.iterdir())  # scratch files removed


def test_composite_limit_is_the_cpu_bound_of_both_bare_parts_together() -> None:
    cores = os.cpu_count() or 1
    result = pipeline_bench.PipelineBenchResult(
        time_points=10, size_px=32, fsync=True, pipeline_fps=700.0, zmq_fps=1e6,
        h5py_fps=1e6, h5py_same_bytes_fps=1e6, latency_p50_ms=1.0, latency_p99_ms=2.0,
        raw_lost=0, raw_mismatched=0, sr_frames=30, sr_skips=0,
        cpu_ms_per_frame={"pipeline": 1.5, "bare zmq": 0.4, "bare h5py same bytes": 0.6,
                          "bare h5py raw": 0.3})
    assert result.composite_limit == pytest.approx(cores * 1e3 / 1.0)  # 0.4 + 0.6 ms per frame
    assert result.ratio == pytest.approx(700.0 / (cores * 1e3))
    result.h5py_same_bytes_fps = 500.0  # a slower bare part is the limit itself
    assert result.composite_limit == 500.0
    result.h5py_fps = 100.0  # the raw bytes alone are not the pipeline's work: not the limit
    assert result.composite_limit == 500.0
    assert "pipeline / composite limit: 1.40 (target >= 0.8)" in "\n".join(result.lines())


def test_pipeline_cpu_ends_when_the_file_closes_not_after_the_teardown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping the worker and unmapping the rings come after the file closed: a teardown that
    burns 0.5 s of CPU must not show in the pipeline's CPU."""
    from acquisition.session import RunSession

    shut_down = RunSession._shut_down

    def slow_shut_down(self: RunSession, join_s: float) -> None:
        start = time.process_time()
        while time.process_time() - start < 0.5:
            pass
        shut_down(self, join_s)

    monkeypatch.setattr(RunSession, "_shut_down", slow_shut_down)
    m = pipeline_bench.measure_pipeline(_bank(), 4, tmp_path, False)
    assert m.summary.raw_frames == 36 and m.summary.sr_frames == 4
    assert 0 < m.acquisition_cpu_s < 0.4
