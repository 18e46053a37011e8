"""`livesim bench autopilot` at a tiny size: both arms image the same sample, the autopilot
arm moves the light only between sets and uses less of it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from acquisition.cli import build_app


def test_bench_autopilot_tiny_run(tmp_path: Path) -> None:
    out, png = tmp_path / "autopilot.json", tmp_path / "autopilot.png"
    result = CliRunner().invoke(
        build_app(),
        ["bench", "autopilot", "--size-px", "48", "--time-points", "12", "--json", str(out),
         "--figure", str(png)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    fixed, pilot = report["fixed"], report["autopilot"]
    assert len(fixed) == len(pilot) == 12
    assert {r["power_pct"] for r in fixed} == {40.0}
    # the same sample and seed: the first set of both arms is the same set
    assert fixed[0]["photon_count_e"] == pilot[0]["photon_count_e"]
    assert pilot[0]["power_pct"] == 40.0 and pilot[-1]["power_pct"] < 40.0
    assert report["summary"]["autopilot_total_dose"] < report["summary"]["fixed_total_dose"]
    # the error model falls with light towards the noiseless floor (relative error 1)
    errors = [point[1] for point in report["error_model"]]
    assert errors[0] > 2.0 * errors[-1] and errors[-1] < 1.6
    assert png.stat().st_size > 10_000
