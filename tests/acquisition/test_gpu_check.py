"""The prepared GPU check (`livesim bench gpu`): its CPU rehearsal runs every stage that does
not need CUDA; the wheel list covers what the GPU image lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from acquisition.cli.bench.gpu import (
    GPU_IMAGE_PACKAGES,
    STAGES,
    gpu_test_files,
    normalise_name,
    project_requirements,
    run_gpu_check,
    verdict,
    wheel_folder_gaps,
    wheels_to_carry,
)


def test_dry_run_exercises_every_stage_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    report = run_gpu_check(out, dry_run=True, skip=("gpu_tests",))
    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    stages = report["stages"]
    assert list(stages) == list(STAGES)
    assert stages["gpu_tests"] == {"skipped": "--skip"}
    assert not [name for name, stage in stages.items() if "error" in stage]

    rows = {row["variant"]: row for row in stages["dfcan"]["rows"]}
    assert rows["fp32 eager"]["max_abs_diff_vs_fp32"] == 0.0
    assert rows["fp32 eager"]["batch1"]["frames_per_s"] > 0
    assert rows["fp32 eager"]["batch2"]["runs"] >= 1
    for label in ("fp32 graphs", "bf16 graphs", "fp16 graphs"):  # need CUDA: said why
        assert "unavailable" in rows[label]["note"] and "CUDA" in rows[label]["note"]
    compiled = rows["bf16 compile"]  # torch.compile rehearsed in fp32 on the CPU
    assert "compile" in compiled["engine"]
    assert compiled["max_abs_diff_vs_fp32"] < 1e-5

    assert stages["preprocessing"]["max_abs_diff_vs_numpy"] == 0.0
    assert stages["preprocessing"]["flags_equal"]
    assert stages["wiener"]["max_rel_diff_vs_numpy"] < 1e-4
    pipeline = stages["pipeline_gpu_worker"]
    assert pipeline["raw_lost"] == 0 and pipeline["raw_mismatched"] == 0
    assert pipeline["sr_frames"] + pipeline["sr_skips"] == pipeline["time_points"]
    assert stages["pipeline_limits"]["rows"][0]["raw_lost"] == 0
    verdict = report["verdict"]
    assert verdict["applies"] is False
    assert [v["met"] for k, v in verdict.items() if k != "applies"] == [None] * 4
    assert stages["pipeline_limits"]["rows"][0]["cores"] >= 1


def test_pipeline_verdict_needs_every_named_size_at_0_8_and_nothing_lost() -> None:
    def report(rows: list[tuple[int, float, int]]) -> dict[str, object]:
        return {"dry_run": False, "stages": {"pipeline_limits": {"rows": [
            {"size": size, "ratio": ratio, "raw_lost": lost} for size, ratio, lost in rows]}}}

    passing = [(256, 0.81, 0), (512, 0.9, 0), (1024, 1.2, 0), (2048, 0.3, 0)]
    item = verdict(report(passing))["pipeline_ratio"]
    assert item["met"] is True and item["measured"] == {256: 0.81, 512: 0.9, 1024: 1.2}
    assert verdict(report([(256, 0.79, 0), *passing[1:]]))["pipeline_ratio"]["met"] is False
    assert verdict(report([(256, 0.9, 1), *passing[1:]]))["pipeline_ratio"]["met"] is False
    assert verdict(report(passing[1:]))["pipeline_ratio"]["met"] is None  # 256 px not measured
    dry = {**report(passing), "dry_run": True}
    assert verdict(dry)["pipeline_ratio"]["met"] is None


def test_the_real_check_refuses_to_run_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        run_gpu_check(tmp_path / "r.json")


def test_unknown_stage_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wiener"):
        run_gpu_check(tmp_path / "r.json", dry_run=True, skip=("wienr",))


def test_wheels_cover_what_the_gpu_image_lacks(tmp_path: Path) -> None:
    needed = wheels_to_carry()
    assert {"pydantic", "pydantic-core", "pyzmq", "pymmcore-plus", "mrcfile"} <= set(needed)
    assert not {"numpy", "torch", "h5py", "msgpack", "typer", "rich"} & set(needed)
    direct = {normalise_name(Requirement(r).name) for r in project_requirements()}
    assert direct - GPU_IMAGE_PACKAGES <= set(needed)  # pyproject's own, not a stale install
    (tmp_path / "pydantic-" f"{needed['pydantic']}-py3-none-any.whl").touch()
    (tmp_path / "pyzmq-0.0.1-cp312-abi3-manylinux_2_28_x86_64.whl").touch()  # wrong version
    gaps = wheel_folder_gaps(tmp_path, needed)
    assert f"pyzmq=={needed['pyzmq']}" in gaps
    assert not [g for g in gaps if g.startswith("pydantic==")]


def test_gpu_test_files_are_found() -> None:
    names = {p.name for p in gpu_test_files()}
    assert {"test_engines.py", "test_wiener.py", "test_preprocessing.py"} <= names
