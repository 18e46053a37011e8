"""The TensorFlow reference comparison: report arithmetic, missing inputs, a silent reference."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from acquisition.cli.bench.tf_reference import (
    EngineTimes,
    ReferenceComparison,
    ReferenceError,
    ReferenceProcess,
    compare_with_reference,
)


def test_speedups_are_taken_repeat_by_repeat() -> None:
    comparison = ReferenceComparison(
        input_shape=(1, 9, 8, 8),
        reference=EngineTimes(wall_s=[4.0, 8.0, 6.0], cpu_s=[7.0, 7.5, 7.2]),
        engines={"fast": EngineTimes(wall_s=[1.0, 4.0, 2.0], cpu_s=[2.0, 2.1, 2.0],
                                     max_abs_diff=1e-6, description="torch:cpu:fp32+fused")},
        reference_info={"tensorflow": "2.x"}, load_before=(1.0, 1.0, 1.0),
        load_after=(2.0, 2.0, 2.0), torch_threads=2)
    assert comparison.speedup("fast") == [4.0, 2.0, 3.0]
    fast_line = next(line for line in comparison.lines() if line.startswith("fast"))
    assert "(median 3.00)" in fast_line and "1.00e-06" in fast_line
    assert comparison.as_dict()["engines"]["fast"]["speedup"] == [4.0, 2.0, 3.0]


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="DL-SR checkout not found"):
        compare_with_reference(tmp_path / "DL-SR", Path("/bin/sh"), tmp_path, tmp_path)


def test_a_reference_that_never_answers_is_stopped(tmp_path: Path) -> None:
    silent = tmp_path / "python"
    silent.write_text("#!/bin/sh\nsleep 30\n")
    silent.chmod(silent.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(ReferenceError, match="no answer within 1 s"):
        ReferenceProcess(silent, tmp_path, tmp_path, tmp_path, ready_timeout_s=1.0)


def test_the_driver_stops_when_the_authors_code_differs(tmp_path: Path) -> None:
    from acquisition.cli.bench.tf_reference_driver import RENAMES, load_authors_models

    assert set(RENAMES) == {"common.py", "DFCAN16.py"}
    models = tmp_path / "src" / "models"
    models.mkdir(parents=True)
    (models / "common.py").write_text("import tensorflow as tf\n")
    with pytest.raises(SystemExit, match="expected text not found"):
        load_authors_models(tmp_path)
