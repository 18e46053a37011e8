"""Training checkpoints: weights, optimizer and schedule state, log rows and RNG state, in a
`.pt` that loads with `weights_only=True` (tensors and plain types only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from inference.model_file import load_torch_payload

CHECKPOINT_FORMAT = "livesim-training-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (names the file and the problem)."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (with the config as a JSON string) atomically: temp file, then rename."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, checking its format."""
    payload = load_torch_payload(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
                                 "livesim training checkpoint", CheckpointError)
    for key in ("config_json", "step", "generator", "generator_optimizer", "torch_rng"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    payload["config"] = json.loads(payload["config_json"])
    return payload
