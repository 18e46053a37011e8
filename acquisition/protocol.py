"""The acquisition protocol: what to image, how often, and where to write it (loaded from TOML).

Every field is validated before any hardware moves; a bad file gives an error naming the file,
the field and the offending value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from settings_file import read_toml, validate_settings

if TYPE_CHECKING:
    from hardware.sequencing import SequencePlan

Mode = Literal["wf", "sim", "nlsim"]
PATTERNS_PER_MODE: dict[str, tuple[int, int]] = {"wf": (1, 1), "sim": (3, 3), "nlsim": (5, 5)}
RUN_FILE_SUFFIXES = (".h5", ".hdf5")
# resolved at run start: the bundled 'dfcan-sim' when present, else Wiener
DEFAULT_RECONSTRUCTION = "default"
DEFAULT_IMC_MODEL = "imcsr"  # the bundled IMC-SR-All model


class ProtocolError(ValueError):
    """A protocol file or value is invalid; the message names the file, field and value."""


class ChannelProtocol(BaseModel):
    """One colour: laser line, power, exposure and the reconstruction used for its SR images."""

    model_config = ConfigDict(extra="forbid")

    laser_nm: int = Field(ge=350, le=800)
    power_pct: float = Field(default=20.0, ge=0.0, le=100.0)
    exposure_ms: float = Field(default=10.0, gt=0.0, le=10_000.0)
    reconstruction: str = DEFAULT_RECONSTRUCTION

    @field_validator("reconstruction")
    @classmethod
    def _reconstruction_known(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("reconstruction must be a bundled model name, a model path, "
                             "'wiener', 'none' or 'default'")
        looks_like_path = "/" in text or Path(text).suffix in (".pt", ".onnx", ".h5", ".engine")
        if looks_like_path and not Path(text).expanduser().is_file():
            raise ValueError(f"model file {text!r} does not exist")
        return text


class Roi(BaseModel):
    """Camera region of interest in raw pixels (x, y of the top-left corner, width, height)."""

    model_config = ConfigDict(extra="forbid")

    x: int = Field(default=0, ge=0)
    y: int = Field(default=0, ge=0)
    width: int = Field(ge=8, le=8192)
    height: int = Field(ge=8, le=8192)


class Protocol(BaseModel):
    """A time-lapse protocol: channels, SIM mode, time points, interval, ROI, IMC, output, rig."""

    model_config = ConfigDict(extra="forbid")

    channels: list[ChannelProtocol] = Field(min_length=1, max_length=4)
    mode: Mode = "sim"
    timepoints: int = Field(default=20, ge=1, le=10_000_000)
    interval_s: float = Field(default=0.0, ge=0.0, le=86_400.0)
    roi: Roi | None = None
    imc: bool = False
    imc_model: str = DEFAULT_IMC_MODEL  # IMC-SR model: bundled name or a model path
    overwrite: bool = False
    output: Path
    rig: str = "emulator"
    emulator_seed: int = Field(default=0, ge=0)
    calibration: Path | None = None  # camera calibration file (`livesim calibrate` output)

    @field_validator("channels")
    @classmethod
    def _distinct_lasers(cls, channels: list[ChannelProtocol]) -> list[ChannelProtocol]:
        lines = [c.laser_nm for c in channels]
        if len(set(lines)) != len(lines):
            raise ValueError(f"laser lines must be distinct, got {lines}")
        return channels

    @field_validator("imc_model")
    @classmethod
    def _imc_model_known(cls, value: str) -> str:
        text = value.strip()
        if not text or (_looks_like_path(text) and not Path(text).expanduser().is_file()):
            raise ValueError(f"IMC-SR model {value!r}: give a bundled name or an existing .pt file")
        return str(Path(text).expanduser().absolute()) if _looks_like_path(text) else text

    @model_validator(mode="after")
    def _imc_needs_sr(self) -> Protocol:
        if self.imc and all(c.reconstruction == "none" for c in self.channels):
            raise ValueError("imc = true needs SR images, but every channel has "
                             "reconstruction = 'none'")
        return self

    @field_validator("rig")
    @classmethod
    def _rig_exists(cls, value: str) -> str:
        if value != "emulator" and not Path(value).expanduser().is_file():
            raise ValueError(f"rig config {value!r} is neither 'emulator' nor an existing file")
        return value

    @field_validator("calibration")
    @classmethod
    def _calibration_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"camera calibration file {str(value)!r} does not exist")
        return None if value is None else Path(value).expanduser().absolute()

    @field_validator("output")
    @classmethod
    def _output_usable(cls, value: Path, info: ValidationInfo) -> Path:
        return validate_output_path(value, overwrite=bool(info.data.get("overwrite", False)))

    @property
    def n_orientations(self) -> int:
        """Pattern orientations per set (1 for wide-field)."""
        return PATTERNS_PER_MODE[self.mode][0]

    @property
    def n_phases(self) -> int:
        """Phases per orientation (1 for wide-field)."""
        return PATTERNS_PER_MODE[self.mode][1]

    @property
    def n_patterns(self) -> int:
        """Raw frames per channel per time point (1, 9 or 25)."""
        return self.n_orientations * self.n_phases

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Protocol:
        """Load and validate a TOML protocol; ``overrides`` (from the CLI) win over the file."""
        path = Path(path)
        data = read_toml(path, "protocol", ProtocolError)
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("output", "calibration", "imc_model"):
            value = data.get(key)
            if key == "imc_model" and not (isinstance(value, str) and _looks_like_path(value)):
                continue  # a bundled model name, not a file
            if isinstance(value, str) and not Path(value).is_absolute() and key not in overrides:
                data[key] = str(path.parent / value)
        return cls.parse_checked(data, source=str(path))

    @classmethod
    def parse_checked(cls, data: dict[str, Any], source: str = "<protocol>") -> Protocol:
        """Validate a mapping, turning pydantic's report into one naming source, field and value."""
        return validate_settings(cls, data, source, ProtocolError)


def _looks_like_path(text: str) -> bool:
    """A model given as a file (has a folder or a .pt suffix) rather than a bundled name."""
    return "/" in text or Path(text).suffix == ".pt"


def validate_output_path(path: Path, overwrite: bool) -> Path:
    """Check a run-file path: .h5 suffix, not a folder, parent creatable, no silent overwrite."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in RUN_FILE_SUFFIXES:
        raise ValueError(f"output {str(path)!r} must end in .h5 or .hdf5")
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder, not a file")
    if path.exists() and not overwrite:
        raise ValueError(
            f"output {str(path)!r} already exists (set overwrite = true to replace it)"
        )
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise ValueError(f"output {str(path)!r}: folder {str(ancestor)!r} is not writable")
    return path.absolute()


def sequence_plan(protocol: Protocol) -> SequencePlan:
    """The hardware sequence of a protocol: its channels x the patterns of its mode."""
    from hardware.sequencing import ChannelSpec, SequencePlan

    return SequencePlan(
        channels=tuple(ChannelSpec(laser_nm=c.laser_nm, power_pct=c.power_pct,
                                   exposure_ms=c.exposure_ms) for c in protocol.channels),
        mode=protocol.mode)
