"""Training configuration (pydantic, TOML-loadable): architecture, data, schedule, sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from settings_file import load_settings

TrainingArch = Literal["dfcan", "dfgan", "cmgan"]
TrainingMode = Literal["sisr", "sim", "nlsim"]
REGISTRY_NAME = {"dfcan": "dfcan", "dfgan": "dfgan", "cmgan": "cross-modality-unet"}
SCALE_FOR_MODE = {"sisr": 2, "sim": 2, "nlsim": 3}


class TrainingConfig(BaseModel):
    """Everything that decides a training run; two runs with equal configs train identically."""

    model_config = ConfigDict(extra="forbid")

    arch: TrainingArch = "dfcan"
    mode: TrainingMode = "sim"
    data: str = "emulator:microtubules"
    steps: int = Field(default=10_000, ge=1, description="iterations (DFGAN: 1 D + 3 G steps)")
    batch_size: int = Field(default=4, ge=1)
    patch_px: int = Field(default=64, ge=8, description="raw crop size; GT crop is scale x")
    emulator_size_px: int = Field(default=80, ge=8, description="emulator field size (raw px)")
    learning_rate: float = Field(default=1e-4, gt=0)
    discriminator_learning_rate: float = Field(default=2e-5, gt=0)
    generator_steps: int = Field(default=3, ge=1, le=7, description="DFGAN G steps per D step")
    validation_every: int = Field(default=100, ge=1, description="steps between validations")
    validation_count: int = Field(default=8, ge=1, description="held-out examples")
    patience: int = Field(default=10, ge=1, description="validations without gain -> lr / 2")
    lr_floor_fraction: float = Field(default=0.1, gt=0, le=1)
    checkpoint_every: int = Field(default=0, ge=0, description="steps; 0 = at every validation")
    augment: bool = True
    seed: int = 0
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="architecture option overrides (width, groups, ...)"
    )
    discriminator_options: dict[str, Any] = Field(default_factory=dict)
    amp: Literal["auto", "on", "off"] = Field(
        default="auto", description="mixed precision: auto = on for CUDA, never on the CPU"
    )
    device: str = "auto"
    threads: int = Field(default=0, ge=0, description="torch CPU threads (0: leave as is)")

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.emulator_size_px < self.patch_px:
            raise ValueError(
                f"emulator_size_px={self.emulator_size_px} must be >= patch_px={self.patch_px}"
            )
        return self

    @property
    def registry_name(self) -> str:
        """The architecture's name in `inference.models` (what model files record)."""
        return REGISTRY_NAME[self.arch]

    @property
    def input_channels(self) -> int:
        from inference.model_file import FRAMES_PER_MODE

        return FRAMES_PER_MODE[self.mode]

    @property
    def scale(self) -> int:
        return SCALE_FOR_MODE[self.mode]

    def generator_options(self) -> dict[str, Any]:
        """Options of the network to train: mode-derived channels/scale plus overrides."""
        options: dict[str, Any] = {"input_channels": self.input_channels, "scale": self.scale}
        options.update(self.model_options)
        return options

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainingConfig:
        """Load from a TOML file; errors name the file, the field and the value."""
        return load_settings(cls, path, "training config")
