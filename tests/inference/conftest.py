"""Shared steps of the inference tests."""

from __future__ import annotations

from pathlib import Path

from inference.training import Trainer, TrainingConfig, TrainingResult


def straight_and_resumed(
    config: TrainingConfig, tmp_path: Path, stop_step: int
) -> tuple[TrainingResult, TrainingResult]:
    """The same training run uninterrupted (``a.pt``) and checkpointed at ``stop_step`` then
    resumed from the checkpoint (``b.pt``, ``b.ckpt``); returns both results."""
    straight = Trainer(config, tmp_path / "a.pt").run(plot=False)
    first = Trainer(config, tmp_path / "b.pt")
    first.run(until_step=stop_step, checkpoint=tmp_path / "b.ckpt", plot=False)
    resumed = Trainer.resume(tmp_path / "b.ckpt", tmp_path / "b.pt")
    assert resumed.step == stop_step
    return straight, resumed.run(plot=False)
