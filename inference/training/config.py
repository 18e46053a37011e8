"""Training configuration (pydantic, TOML-loadable): architecture, data, schedule, sizes.

IMC-SR (arch `imcsr`, mode `imc`) is a configuration of the same trainer: its data are SR
images in and per-structure components out (`inference.imc.data`), its loss `imc_loss`, its
validation metric the mean Pearson per channel; `imc` holds what only it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from inference.imc.loss import ImcLossWeights
from inference.model_file import ROBUST_NORMALISATION, Normalisation
from inference.training.losses import ADVERSARIAL_WEIGHT, SSIM_WEIGHT
from settings_file import StrictModel, load_settings

TrainingArch = Literal["dfcan", "dfgan", "cmgan", "imcsr"]
TrainingMode = Literal["sisr", "sim", "nlsim", "imc"]
REGISTRY_NAME = {"dfcan": "dfcan", "dfgan": "dfgan", "cmgan": "cross-modality-unet",
                 "imcsr": "imcsr"}
SCALE_FOR_MODE = {"sisr": 2, "sim": 2, "nlsim": 3}


class ImcSettings(ImcLossWeights):
    """What only IMC-SR training needs (arch `imcsr`): the loss weights of `imc_loss`
    (`ImcLossWeights`, same names in `[imc]`) and the following."""

    outputs: tuple[str, ...] | None = Field(
        default=None, description="structures the model outputs (None: all of the data's, in "
        "order; one name: an IMC-SR-Single model)"
    )
    temporal: bool = Field(default=False, description="3 frames in (t-1, t, t+1), t separated")
    training_brightness_range: tuple[float, float] | None = Field(
        default=None, description="imc-mix data: relative brightness of the training fields "
        "only (None: 0.4-1, as validation); wider makes brightness a weaker cue than shape"
    )

    def loss_weights(self, single_output: bool = False) -> ImcLossWeights:
        """The weights of `imc_loss`; a single-output model has no summation term."""
        weights = ImcLossWeights.model_validate(
            self.model_dump(include=set(ImcLossWeights.model_fields)))
        return weights.model_copy(update={"summation_weight": 0.0}) if single_output else weights


SR_ONLY_FIELDS = ("pixel_loss", "ssim_weight", "normalisation")  # not read in mode imc


class TrainingConfig(StrictModel):
    """Everything that decides a training run; two runs with equal configs train identically."""

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
    adversarial_weight: float = Field(
        default=ADVERSARIAL_WEIGHT, gt=0, description="GANs: weight of the generator's BCE term "
        "against the content loss (paper: 0.1)"
    )
    validation_every: int = Field(default=100, ge=1, description="steps between validations")
    validation_count: int = Field(default=8, ge=1, description="held-out examples")
    patience: int = Field(default=10, ge=1, description="validations without gain -> lr / 2")
    lr_floor_fraction: float = Field(default=0.1, gt=0, le=1)
    checkpoint_every: int = Field(default=0, ge=0, description="steps; 0 = at every validation")
    augment: bool = True
    pixel_loss: Literal["mse", "l1"] = Field(
        default="mse", description="SR networks: pixel term of the content loss (paper: mse)"
    )
    ssim_weight: float = Field(
        default=SSIM_WEIGHT, ge=0, description="SR networks: weight of 1 - SSIM"
    )
    normalisation: Normalisation = Field(
        default=ROBUST_NORMALISATION,
        description="SR networks: input normalisation, recorded in the model file "
        "(the authors' is low_pct 0, high_pct 100)",
    )
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
    imc: ImcSettings = Field(default_factory=ImcSettings)

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if (self.arch == "imcsr") != (self.mode == "imc"):
            raise ValueError(f"arch={self.arch} with mode={self.mode}: IMC-SR (arch imcsr) "
                             "trains in mode imc, the SR networks in sisr, sim or nlsim")
        if self.mode == "imc":  # patch_px counts SR pixels, the field emulator_size_px raw
            ignored = [f"{name}={getattr(self, name)!r}" for name in SR_ONLY_FIELDS
                       if getattr(self, name) != type(self).model_fields[name].default]
            if ignored:  # IMC-SR has its own loss ([imc]) and normalises each frame min-max
                raise ValueError(f"{', '.join(ignored)}: SR-network settings, not used by "
                                 "IMC-SR (its loss weights are in [imc]; each frame is min-max "
                                 "normalised as ImcSeparator does live)")
            if self.patch_px > 2 * self.emulator_size_px:
                raise ValueError(f"patch_px={self.patch_px} exceeds the SR field of 2 x "
                                 f"emulator_size_px={self.emulator_size_px}")
        elif self.emulator_size_px < self.patch_px:
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

    @property
    def validation_metric(self) -> Literal["nrmse", "pearson"]:
        """What validation measures: NRMSE (lower is better) or IMC-SR's mean Pearson."""
        return "pearson" if self.mode == "imc" else "nrmse"

    def generator_options(self, structures: tuple[str, ...] = ()) -> dict[str, Any]:
        """Options of the network to train: mode-derived channels/scale plus overrides
        (IMC-SR: frames in and the output structures, `imc.outputs` or the data's)."""
        options: dict[str, Any]
        if self.mode == "imc":
            names = self.imc.outputs or structures
            options = {"input_frames": 3 if self.imc.temporal else 1,
                       "output_channels": len(names), "channel_names": list(names)}
        else:
            options = {"input_channels": self.input_channels, "scale": self.scale}
        options.update(self.model_options)
        return options

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainingConfig:
        """Load from a TOML file; errors name the file, the field and the value."""
        return load_settings(cls, path, "training config")
