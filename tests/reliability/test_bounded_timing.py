"""A run of days must not grow: per-time-point timings (drift, SR latency) are kept in
constant memory, and the summaries read from them stay exact (count/mean/max) or within the
stated precision (latency percentiles) of numpy on the same values."""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from acquisition.engine import AcquisitionEngine
from acquisition.session import RunSummary
from acquisition.timing_summary import LatencyHistogram, RunningStats
from hardware.frames import FrameTag, TaggedFrame

PRECISION = LatencyHistogram.RELATIVE_PRECISION


def traced_growth_bytes(add: Any, values: np.ndarray) -> int:
    """Bytes still allocated after feeding ``values`` one by one to ``add``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for v in values.tolist():
            add(v)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_precision_is_what_the_docs_say() -> None:
    assert 0.011 < PRECISION < 0.012


@pytest.mark.parametrize("spread", ["lognormal", "two_modes", "ties"])
def test_percentiles_are_within_the_stated_precision_of_numpy(spread: str) -> None:
    rng = np.random.default_rng(7)
    values = {
        "lognormal": rng.lognormal(math.log(300.0), 1.5, 20_000),
        "two_modes": np.concatenate([rng.normal(5.0, 0.2, 9_000),
                                     rng.normal(40_000.0, 5_000.0, 1_000)]),
        "ties": np.repeat([1.0, 2.0, 3.0, 1000.0], [10, 1, 5, 3]),
    }[spread]
    histogram = LatencyHistogram()
    for v in values.tolist():
        histogram.add(v)
    assert histogram.count == len(values)
    assert histogram.max_ms == values.max()  # exact
    assert histogram.mean_ms == pytest.approx(values.mean(), rel=1e-12)
    for q in (0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100):
        exact = float(np.percentile(values, q))
        assert histogram.percentile_ms(q) == pytest.approx(exact, rel=PRECISION, abs=1e-9), q
    assert histogram.percentile_ms(0) == values.min()
    assert histogram.percentile_ms(100) == values.max()


def test_values_out_of_range_are_counted_and_read_back_as_the_exact_extremes() -> None:
    inside = np.random.default_rng(4).uniform(1, 10, 50)
    values = np.concatenate([[0.0, -2.0, 1e-5], inside, [3e7]])
    histogram = LatencyHistogram()
    for v in values.tolist():
        histogram.add(v)
    assert histogram.count == 54 and histogram.counts[0] == 3 and histogram.counts[-1] == 1
    assert histogram.percentile_ms(0) == -2.0 and histogram.percentile_ms(100) == 3e7
    for q in (10, 50, 90):  # order statistics inside the range: the stated precision holds
        assert histogram.percentile_ms(q) == pytest.approx(np.percentile(values, q),
                                                           rel=PRECISION)


def test_percentile_of_nothing_is_nan_and_bad_input_is_refused() -> None:
    histogram = LatencyHistogram()
    assert math.isnan(histogram.percentile_ms(50)) and math.isnan(histogram.max_ms)
    with pytest.raises(ValueError, match="NaN"):
        histogram.add(float("nan"))
    histogram.add(1.0)
    with pytest.raises(ValueError, match="q=101"):
        histogram.percentile_ms(101)


def test_histogram_memory_does_not_grow_with_the_number_of_latencies() -> None:
    histogram = LatencyHistogram()
    values = np.random.default_rng(1).lognormal(3.0, 2.0, 30_000)
    histogram.add(1.0)  # any lazy allocation happens here, not in the measured part
    grown = traced_growth_bytes(histogram.add, values)
    assert grown < 10_000  # a list of 30,000 floats would hold > 900 kB
    assert histogram.counts.nbytes < 10_000 and histogram.count == 30_001


def test_running_stats_are_exact_in_constant_memory() -> None:
    values = np.random.default_rng(2).normal(0.01, 0.003, 30_000)
    stats = RunningStats()
    stats.add(0.0)
    grown = traced_growth_bytes(stats.add, values)
    assert grown < 10_000  # a list would hold > 900 kB
    every = np.concatenate([[0.0], values])
    assert stats.count == every.size and stats.maximum == every.max()
    assert stats.minimum == every.min() and stats.mean == pytest.approx(every.mean(), rel=1e-9)


class CountingSource:
    """A minimal rig stand-in: one channel x 9 patterns of 4 x 4 px per time point."""

    def __init__(self) -> None:
        self.sequence = 0
        self.image = np.ones((4, 4), dtype=np.uint16)

    def stream_time_point(self, plan: Any, time_point: int, timeout_s: float
                          ) -> Iterator[TaggedFrame]:
        for p in range(9):
            tag = FrameTag(time_point=time_point, channel=0, laser_nm=488, orientation=p // 3,
                           phase=p % 3, pattern_index=p, sequence=self.sequence,
                           timestamp_s=time.monotonic(), exposure_ms=1.0)
            self.sequence += 1
            yield TaggedFrame(self.image, tag)

    def acquire_time_point(self, plan: Any, time_point: int, timeout_s: float
                           ) -> list[TaggedFrame]:
        return list(self.stream_time_point(plan, time_point, timeout_s))


def test_engine_report_does_not_grow_with_the_number_of_time_points() -> None:
    def report_bytes(n: int) -> tuple[int, AcquisitionEngine]:
        engine = AcquisitionEngine(CountingSource(), None, (488,), 9, interval_s=0.0)
        tracemalloc.start()
        try:
            engine.run(n)
            report = engine.report
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert report.time_points == n and report.drift_s.count == n
        return held, engine

    small, _ = report_bytes(50)
    large, engine = report_bytes(1_000)
    assert large - small < 20_000  # one float per time point would add > 24 kB
    report = engine.report
    assert report.mean_drift_s == report.max_drift_s == 0.0  # continuous: no schedule
    assert not any(isinstance(v, list) and len(v) >= 1_000 for v in vars(report).values())


def test_run_summary_reads_percentiles_and_max_from_the_histogram() -> None:
    values = np.random.default_rng(3).lognormal(6.0, 1.0, 2_000)
    summary = RunSummary(path=None, run_id="r", engine=None)  # type: ignore[arg-type]
    for v in values.tolist():
        summary.sr_latency.add(v)
    for q in (50, 90, 99):
        assert summary.latency_percentile_ms(q) == pytest.approx(np.percentile(values, q),
                                                                  rel=PRECISION)
    assert summary.sr_latency.max_ms == values.max()
