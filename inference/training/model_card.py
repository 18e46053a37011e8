"""Model cards: the markdown next to a model file saying what it is, what it was trained on,
how well it validated, its SHA-256 and the command that reproduces it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.file_hash import file_sha256
from inference.model_file import read_model_file


def model_card(
    model_path: Path,
    commands: Sequence[str],
    summaries: Sequence[dict[str, Any]],
    metrics_markdown: str = "",
    notes: str = "",
) -> str:
    """Markdown card of `model_path`; `summaries` are the training logs' JSON summaries (one
    per stage), `commands` the exact commands that produced it, in order."""
    info, state = read_model_file(model_path)
    parameters = sum(int(t.numel()) for t in state.values())
    lines = [
        f"# {info.name}",
        "",
        f"- architecture: `{info.architecture}`, mode `{info.mode}` "
        f"({info.input_frames} input frame(s)), {parameters:,} parameters",
        f"- options: `{info.options}`",
        f"- input normalisation: `{info.normalisation.model_dump()}`",
        f"- weights SHA-256 (checked on load): `{info.weights_sha256}`",
        f"- file SHA-256: `{file_sha256(model_path)}` ({model_path.stat().st_size:,} bytes)",
        f"- provenance recorded in the file: {info.source}",
        "",
        "## Training",
        "",
    ]
    for index, summary in enumerate(summaries, start=1):
        config = summary.get("config", {})
        lines += [
            (f"Stage {index}: " if len(summaries) > 1 else "")
            + f"{summary.get('data', config.get('data'))}; "
            f"{summary.get('steps')} steps of batch {config.get('batch_size')} x "
            f"{config.get('patch_px')} px crops, lr {config.get('learning_rate')}, "
            f"seed {config.get('seed')}; best validation "
            f"{summary.get('validation_metric', 'nrmse')} "
            f"{summary.get('best_val', float('nan')):.4f} at step "
            f"{summary.get('best_step')}; {summary.get('elapsed_s', 0.0) / 60:.1f} min "
            f"on the 2-core CPU (torch 1 thread)"
            + (f"; init {summary['init']}" if summary.get("init") else ""),
            "",
        ]
    lines += ["## Reproduce", "", "```sh", *commands, "```", ""]
    if metrics_markdown:
        lines += ["## Validation on held-out emulator fields", "", metrics_markdown.strip(), ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)
