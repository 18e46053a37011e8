"""The training log: one row per step (losses, learning rate, validation figures), written as
CSV and JSON, and a PNG of the curves (no TensorBoard)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

LogRow = dict[str, float]


def log_paths(output: Path) -> dict[str, Path]:
    """Where the log of a run writing `output` goes: <stem>.log.csv/.log.json/.curves.png."""
    stem = output.with_suffix("")
    return {
        "csv": Path(f"{stem}.log.csv"),
        "json": Path(f"{stem}.log.json"),
        "png": Path(f"{stem}.curves.png"),
    }


def write_log(
    rows: list[LogRow], paths: dict[str, Path], summary: dict[str, Any], plot: bool = True
) -> None:
    """Write the rows as CSV (blank where a value is absent), JSON (rows + summary) and, when
    `plot`, the PNG of the curves."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    if plot:
        plot_curves(rows, paths["png"], str(summary.get("title", "training")))


def plot_curves(rows: list[LogRow], path: Path, title: str) -> None:
    """Loss per step (and smoothed) on the left, validation NRMSE (IMC-SR: Pearson) on the right."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing to close

    fig = Figure(figsize=(9, 3.5))
    left, right = fig.subplots(1, 2)
    steps = [row["step"] for row in rows]
    for key in ("loss", "g_loss", "d_loss"):
        values = [row.get(key, math.nan) for row in rows]
        if any(math.isfinite(v) for v in values):
            left.plot(steps, values, lw=0.6, alpha=0.5, label=key)
            window = max(1, len(values) // 50)
            smooth = [
                float(np.mean(values[max(0, i - window + 1) : i + 1])) for i in range(len(values))
            ]
            left.plot(steps, smooth, lw=1.2, label=f"{key} (mean of {window})")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_yscale("log")
    left.legend(fontsize=7)
    key = "val_pearson" if any("val_pearson" in row for row in rows) else "val_nrmse"
    validated = [row for row in rows if key in row]
    right.plot([r["step"] for r in validated], [r[key] for r in validated], "o-", ms=3)
    right.set_xlabel("step")
    right.set_ylabel(f"validation {key[4:]}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
