"""Throughput targets of the emulator (slow: run with --runslow on a quiet machine)."""

from __future__ import annotations

import pytest

from acquisition.cli.bench.emulator import measure_throughput


@pytest.mark.slow
def test_full_physics_and_fast_path_meet_their_targets_per_cpu_second() -> None:
    result = measure_throughput(size_px=512, sets=10, fast_frames=2000)
    assert result.full_sets_per_cpu_s >= 10.0
    assert result.fast_frames_per_cpu_s >= 2000.0
