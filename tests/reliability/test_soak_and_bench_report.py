"""The soak's bookkeeping (frames lost, memory growth) and the bench-all report writer."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition.cli import build_app
from acquisition.cli.bench.all_benchmarks import (
    SECTION_END,
    SECTION_START,
    BenchReport,
    BenchSettings,
    Figure,
    write_docs,
)
from acquisition.cli.bench.soak import (
    RssSample,
    SoakOptions,
    SoakReport,
    count_lost_frames,
    largest_growth,
    object_counts,
    run_soak,
)


def sequence_file(path: Path, sequence: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5:
        h5["timestamps/sequence"] = sequence
    return path


def test_lost_frames_are_counted_from_sequence_numbers(tmp_path: Path) -> None:
    seq = np.arange(4 * 9).reshape(4, 1, 9)
    assert count_lost_frames(sequence_file(tmp_path / "a.h5", seq)) == (36, 0)
    holed = seq.copy()
    holed[1, 0, 4] = -1  # a frame that never arrived
    holed[2, 0, 0] = 16  # a repeated number: 18 is missing
    assert count_lost_frames(sequence_file(tmp_path / "b.h5", holed)) == (35, 2)


def report_with(acquisition_mb: list[float]) -> SoakReport:
    report = SoakReport(SoakOptions(minutes=1.0, warmup_fraction=0.2), duration_s=100.0,
                        time_points=10)
    report.rss = [RssSample(10.0 * i, i, mb, 300.0) for i, mb in enumerate(acquisition_mb)]
    return report


def test_rss_growth_ignores_warm_up_and_fails_a_leak() -> None:
    flat = report_with([50, 80, 100, 100, 101, 100, 101, 100, 101, 100])
    assert abs(flat.rss_growth_pct()) < 1.5 and flat.passed
    leak = report_with([100, 100, 100, 104, 108, 112, 116, 120, 124, 128])
    assert leak.rss_growth_pct() > 10 and not leak.passed
    assert math.isnan(report_with([100, 100]).rss_growth_pct())


def test_a_lost_frame_fails_the_soak() -> None:
    report = report_with([100] * 10)
    assert report.passed
    report.raw_frames_lost = 1
    assert not report.passed and "FAIL" in report.lines()[-1]


@pytest.mark.slow
def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    report = run_soak(SoakOptions(minutes=0.5, size_px=32, reconstruction="passthrough",
                                  folder=tmp_path, sample_every_s=2.0, fsync=False))
    assert report.time_points > 20 and report.raw_frames == 9 * report.time_points
    assert report.raw_frames_lost == 0 and report.error == ""
    assert report.sr_frames + report.sr_skipped == report.time_points


def test_bench_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# livesim benchmarks\n\n## Emulator\n\nkept figure 1,234\n")
    report = BenchReport(BenchSettings(), machine={"cpu": "test cpu", "cores": 2, "gpu": "none",
                                                   "load_average": (1.0, 1.0, 1.0)})
    report.figures.append(Figure("recorder", "RunRecorder", 900.0, "frames/s", "bare h5py",
                                 1000.0))
    write_docs(report, "livesim bench all --json x.json", docs)
    first = docs.read_text()
    assert "kept figure 1,234" in first and "| 0.90 |" in first and "test cpu" in first
    report.figures[0].value = 450.0
    write_docs(report, "livesim bench all --json x.json", docs)
    second = docs.read_text()
    assert second.count(SECTION_START) == 1 and second.count(SECTION_END) == 1
    assert "| 0.45 |" in second and "| 0.90 |" not in second
    assert second.startswith("# livesim benchmarks\n\n## Emulator\n\nkept figure 1,234\n")


def test_commands_are_registered() -> None:
    runner = CliRunner()
    assert "--time-limit-s" in runner.invoke(build_app(), ["soak", "--help"]).output
    assert "--json" in runner.invoke(build_app(), ["bench", "all", "--help"]).output


def test_object_growth_names_the_types_that_grew() -> None:
    class Leaked:
        pass

    before = object_counts()
    kept = [Leaked() for _ in range(500)]
    grown = largest_growth(before, object_counts())
    assert grown.get("Leaked") == 500 and all(v > 0 for v in grown.values())
    assert largest_growth(object_counts(), before).get("Leaked") is None
    del kept
