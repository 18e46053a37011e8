"""Training of the SR networks: data sources, losses, the trainer, checkpoints and logs."""

from inference.training.config import TrainingConfig
from inference.training.data import (
    BiosrSource,
    DataSourceError,
    EmulatorSource,
    Example,
    PatchSampler,
    RunFileSource,
    open_source,
    scan_biosr,
)
from inference.training.trainer import Trainer, TrainingError, TrainingResult

__all__ = [
    "BiosrSource",
    "DataSourceError",
    "EmulatorSource",
    "Example",
    "PatchSampler",
    "RunFileSource",
    "Trainer",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "open_source",
    "scan_biosr",
]
