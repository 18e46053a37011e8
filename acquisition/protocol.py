"""The acquisition protocol: what to image, how often, and where to write it (loaded from TOML).

Every field is validated before any hardware moves; a bad file gives an error naming the file,
the field and the offending value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import useq
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from acquisition import run_file
from acquisition.autopilot import AutopilotSettings
from settings_file import read_toml, validate_settings

if TYPE_CHECKING:
    from hardware.roles import RoleMap
    from hardware.sequencing import SequencePlan

Mode = Literal["wf", "sim", "nlsim"]
PATTERNS_PER_MODE: dict[str, tuple[int, int]] = {"wf": (1, 1), "sim": (3, 3), "nlsim": (5, 5)}
RUN_FILE_SUFFIXES = (".h5", ".hdf5")
# resolved at run start: 'auto' with the bundled 'dfcan-sim' (the network inside its training
# domain, Wiener SIM elsewhere, per set) when present, else Wiener (inference.worker)
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
    autopilot: AutopilotSettings | None = Field(
        default=None,
        description="photon-budget autopilot: the least light that keeps the SR error within "
        "autopilot.target_error (power first, then exposure within limits, between time points)",
    )

    @field_validator("reconstruction")
    @classmethod
    def _reconstruction_known(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("reconstruction must be a bundled model name, a model path, "
                             "'auto', 'auto:NAME', 'wiener', 'none' or 'default'")
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


@dataclass(frozen=True)
class AcquisitionRow:
    """One event of a multi-D protocol: a hardware-sequenced SIM set (every channel) at
    time index ``t``, stage position ``p`` and z plane ``z``; stage target in micrometres
    (None = leave that axis where it is). A position without z takes its planes at
    ``z_offset_um`` from the focus the run started at. Row n of the run file holds event n."""

    t: int
    p: int
    z: int
    x_um: float | None
    y_um: float | None
    z_um: float | None
    z_offset_um: float | None = None


class Protocol(BaseModel):
    """A time-lapse protocol: channels, SIM mode, time points, interval, ROI, IMC, output, rig.

    ``mda`` (a useq-schema ``MDASequence``) adds stage positions and z planes: every event
    (t, p, z) is one hardware-sequenced SIM set of all channels, taken after the stage moved.
    Time comes from ``timepoints`` / ``interval_s`` or from ``mda.time_plan`` (not both).
    """

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
    # role map of the rig: shipped profile names and/or TOML files, "+"-joined, later ones
    # winning (e.g. "hamamatsu-dcam+triggerscope+lab.toml"); None: the emulator's names
    roles: str | None = None
    emulator_seed: int = Field(default=0, ge=0)
    calibration: Path | None = None  # camera calibration file (`livesim calibrate` output)
    # Wiener SIM: rig pattern calibration (`livesim calibrate pattern`); phases refined live
    pattern_calibration: Path | None = None
    mda: useq.MDASequence | None = None  # positions, z planes (and optionally time): useq

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

    @model_validator(mode="after")
    def _mda_fits(self) -> Protocol:
        if self.mda is None:
            return self
        seq = self.mda
        if seq.channels:
            raise ValueError("mda.channels: channels come from [[channels]] (each event is one "
                             "hardware-sequenced SIM set of every channel)")
        if seq.grid_plan is not None:
            raise ValueError("mda.grid_plan is not supported; list the positions in "
                             "mda.stage_positions")
        if any(p.sequence is not None for p in seq.stage_positions):
            raise ValueError("mda.stage_positions: sub-sequences per position are not supported")
        if seq.z_plan is not None:
            if not seq.z_plan.is_relative:
                raise ValueError("mda.z_plan must be relative to each position's z (e.g. "
                                 "{relative = [-0.5, 0.0, 0.5]} or {range = 1.0, step = 0.5})")
            offsets = np.asarray(list(seq.z_plan), dtype=float)
            steps = np.diff(offsets)
            if offsets.size > 1 and (steps.min() <= 0 or np.ptp(steps) > 1e-6):
                raise ValueError(f"mda.z_plan planes {offsets.tolist()} must be increasing and "
                                 "evenly spaced")
        used = [a for a in seq.used_axes if a in "tpz"]
        if "t" in used and used[0] != "t":
            raise ValueError(f"mda.axis_order {''.join(seq.axis_order)!r}: time must be the "
                             "outer axis (positions and planes are taken within a time point)")
        if seq.time_plan is not None:
            if {"timepoints", "interval_s"} & self.model_fields_set:
                raise ValueError("give time either as timepoints / interval_s or as "
                                 "mda.time_plan, not both")
            plan = seq.time_plan
            if not isinstance(plan, useq.TIntervalLoops):
                raise ValueError(f"mda.time_plan {type(plan).__name__}: use "
                                 "{interval = SECONDS, loops = N}")
            self.timepoints = int(plan.loops)
            self.interval_s = float(plan.interval.total_seconds())
            # time now lives in timepoints / interval_s only (one place; dumps re-validate)
            self.mda = useq.MDASequence(**{**seq.model_dump(exclude_unset=True),
                                           "time_plan": None})
        return self

    @field_validator("rig")
    @classmethod
    def _rig_exists(cls, value: str) -> str:
        if value != "emulator" and not Path(value).expanduser().is_file():
            raise ValueError(f"rig config {value!r} is neither 'emulator' nor an existing file")
        return value

    @field_validator("roles")
    @classmethod
    def _roles_load(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from hardware.errors import ConfigError
        from hardware.roles import RoleMap

        parts = [p if "/" not in p and not p.endswith(".toml")
                 else str(Path(p).expanduser().absolute()) for p in value.split("+")]
        try:
            RoleMap.load(parts)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return "+".join(parts)

    def role_map(self) -> RoleMap | None:
        """The rig's role map (None: the emulator's device names)."""
        from hardware.roles import RoleMap

        return None if self.roles is None else RoleMap.load(self.roles.split("+"))

    @field_validator("pattern_calibration", "calibration")
    @classmethod
    def _calibration_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if not Path(value).expanduser().is_file():
            what = "pattern" if info.field_name == "pattern_calibration" else "camera"
            raise ValueError(f"{what} calibration file {str(value)!r} does not exist")
        return Path(value).expanduser().absolute()

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

    def mda_sequence(self) -> useq.MDASequence:
        """The whole protocol as a useq ``MDASequence`` (time from timepoints / interval_s)."""
        data = self.mda.model_dump(exclude_unset=True) if self.mda is not None else {}
        data["time_plan"] = {"interval": self.interval_s, "loops": self.timepoints}
        data.setdefault("axis_order", "tpz")
        return useq.MDASequence(**data)

    @property
    def is_multi_d(self) -> bool:
        """True with stage positions or z planes (the run file gets /mda)."""
        return self.mda is not None and bool(self.mda.stage_positions or self.mda.z_plan)

    @property
    def n_events(self) -> int:
        """SIM sets to acquire (run-file rows): time points x positions x z planes."""
        if not self.is_multi_d:
            return self.timepoints
        sizes = self.mda_sequence().sizes
        return int(np.prod([sizes.get(a, 1) or 1 for a in "tpz"]))

    def acquisition_rows(self) -> list[AcquisitionRow] | None:
        """Every event of a multi-D protocol in acquisition order (None for a plain one)."""
        if not self.is_multi_d:
            return None
        seq = self.mda_sequence()
        rows = []
        for event in seq:
            index = event.index
            p = int(index.get("p", 0))
            position = seq.stage_positions[p] if seq.stage_positions else None
            relative = seq.z_plan is not None and (position is None or position.z is None)
            rows.append(AcquisitionRow(
                int(index.get("t", 0)), p, int(index.get("z", 0)), event.x_pos, event.y_pos,
                None if relative else event.z_pos, event.z_pos if relative else None))
        return rows

    def mda_layout(self) -> run_file.MdaLayout | None:
        """What the run file's /mda group records for this protocol (None for a plain one)."""
        rows = self.acquisition_rows()
        if rows is None:
            return None
        sizes = self.mda_sequence().sizes
        size_p, size_z = sizes.get("p", 1) or 1, sizes.get("z", 1) or 1
        positions = np.full((size_p, 3), np.nan)
        for k, position in enumerate(self.mda_sequence().stage_positions):
            positions[k] = [np.nan if v is None else v for v in (position.x, position.y,
                                                                  position.z)]
        z_step = 0.0
        if self.mda is not None and self.mda.z_plan is not None and size_z > 1:
            z_step = float(np.diff(list(self.mda.z_plan)).mean())
        return run_file.MdaLayout(
            index=tuple((r.t, r.p, r.z) for r in rows), sizes_tpz=(self.timepoints, size_p,
                                                                    size_z),
            positions_um=tuple(tuple(float(v) for v in p) for p in positions),
            z_step_um=z_step, sequence_json=json.dumps(
                self.mda_sequence().model_dump(mode="json", exclude_unset=True)))

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Protocol:
        """Load and validate a TOML protocol; ``overrides`` (from the CLI) win over the file."""
        path = Path(path)
        data = read_toml(path, "protocol", ProtocolError)
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("output", "calibration", "pattern_calibration", "imc_model"):
            value = data.get(key)
            if key == "imc_model" and not (isinstance(value, str) and _looks_like_path(value)):
                continue  # a bundled model name, not a file
            if isinstance(value, str) and not Path(value).is_absolute() and key not in overrides:
                data[key] = str(path.parent / value)
        roles = data.get("roles")
        if isinstance(roles, str) and "roles" not in overrides:  # files beside the protocol
            data["roles"] = "+".join(
                str(path.parent / p) if p.endswith(".toml") and not Path(p).is_absolute() else p
                for p in roles.split("+"))
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
