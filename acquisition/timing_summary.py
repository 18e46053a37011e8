"""Summaries of per-time-point timings (schedule drift, SR latency) that never grow with a run.

A run of days must not keep one float per time point: ``RunningStats`` keeps count, mean, min
and max exactly; ``LatencyHistogram`` adds percentiles from fixed log-spaced bins (100 per
decade from 1 us to 10^7 ms, 8 kB), within ``LatencyHistogram.RELATIVE_PRECISION`` (1.2 %) of
numpy's linear-interpolated percentile of the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunningStats:
    """Count, mean, min and max of a stream of values in constant memory (exact)."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        """Take one value into the summary."""
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    @property
    def mean(self) -> float:
        """Mean of the values (NaN before any)."""
        return self.total / self.count if self.count else math.nan


@dataclass
class LatencyHistogram:
    """Latencies (ms) in fixed log-spaced bins: percentiles in 8 kB whatever the run length.

    Bin ``i`` holds [LOW_MS * r**i, LOW_MS * r**(i+1)) with r = 10**(1/BINS_PER_DECADE);
    a value is read back as its bin's geometric centre, clamped to the exact min/max, so a
    percentile is within a factor sqrt(r) (1.16 %) of the exact one for values in range.
    Values below LOW_MS (including 0 and negatives) and above HIGH_MS are counted in an
    under/overflow bin and read back as the exact min/max.
    """

    LOW_MS = 1e-3
    HIGH_MS = 1e7
    BINS_PER_DECADE = 100
    RELATIVE_PRECISION = 10 ** (0.5 / BINS_PER_DECADE) - 1.0  # 0.0116

    stats: RunningStats = field(default_factory=RunningStats)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(
        LatencyHistogram.n_bins() + 2, dtype=np.int64))  # [underflow, bins..., overflow]

    @classmethod
    def n_bins(cls) -> int:
        """Number of log-spaced bins between LOW_MS and HIGH_MS."""
        return round(math.log10(cls.HIGH_MS / cls.LOW_MS) * cls.BINS_PER_DECADE)

    def add(self, latency_ms: float) -> None:
        """Count one latency; NaN is refused (it has no place in a distribution)."""
        if math.isnan(latency_ms):
            raise ValueError("latency_ms is NaN")
        self.stats.add(latency_ms)
        if latency_ms < self.LOW_MS:
            index = 0
        elif latency_ms >= self.HIGH_MS:
            index = len(self.counts) - 1
        else:
            bin_ = int(math.log10(latency_ms / self.LOW_MS) * self.BINS_PER_DECADE)
            index = 1 + min(bin_, self.n_bins() - 1)
        self.counts[index] += 1

    @property
    def count(self) -> int:
        """How many latencies were counted."""
        return self.stats.count

    @property
    def max_ms(self) -> float:
        """The largest latency (exact; NaN before any)."""
        return self.stats.maximum if self.stats.count else math.nan

    @property
    def mean_ms(self) -> float:
        """The mean latency (exact; NaN before any)."""
        return self.stats.mean

    def _value_at_rank(self, cumulative: np.ndarray, rank: int) -> float:
        """Estimate of the ``rank``-th smallest value (0-based); the extremes are exact."""
        if rank <= 0:
            return self.stats.minimum
        if rank >= self.stats.count - 1:
            return self.stats.maximum
        index = int(np.searchsorted(cumulative, rank, side="right"))
        if index == 0:
            return self.stats.minimum
        if index == len(self.counts) - 1:
            return self.stats.maximum
        centre = self.LOW_MS * 10 ** ((index - 1 + 0.5) / self.BINS_PER_DECADE)
        return min(max(centre, self.stats.minimum), self.stats.maximum)

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) as numpy's default (linear) defines it; NaN before any."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile q={q} is outside 0..100")
        n = self.stats.count
        if n == 0:
            return math.nan
        cumulative = np.cumsum(self.counts)
        rank = q / 100.0 * (n - 1)
        below = math.floor(rank)
        low = self._value_at_rank(cumulative, below)
        if below + 1 >= n:
            return low
        high = self._value_at_rank(cumulative, below + 1)
        return low + (rank - below) * (high - low)
