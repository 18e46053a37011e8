"""SIM sequencing: a plan (channels x patterns per time point) as hardware property sequences.

One time point is one triggered camera sequence: for each channel (colour) in order, every
pattern of the mode, orientation-major. Each frame position gets its SLM running-order index,
AOTF line, rotator state and exposure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hardware.errors import ConfigError
from hardware.pattern_layout import GRID, LASER_LINES_NM, SimMode, rotator_state, slm_index
from settings_file import load_settings


class ChannelSpec(BaseModel):
    """One colour of the plan: laser line, its power and the camera exposure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    laser_nm: int = Field(gt=0, lt=2000)
    power_pct: float = Field(ge=0.0, le=100.0)
    exposure_ms: float = Field(gt=0.0, le=10_000.0)


class SequencePlan(BaseModel):
    """What one time point acquires: channels in order, each with every pattern of `mode`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[ChannelSpec, ...] = Field(min_length=1, max_length=8)
    mode: SimMode = "sim"

    @classmethod
    def from_toml(cls, path: str | Path) -> SequencePlan:
        """Load a plan from TOML (`mode = "sim"`, `[[channels]]` tables); errors name the field."""
        return load_settings(cls, path, "sequence plan", error=ConfigError)

    @property
    def n_orientations(self) -> int:
        return GRID[self.mode][0]

    @property
    def n_phases(self) -> int:
        return GRID[self.mode][1]

    @property
    def patterns_per_channel(self) -> int:
        return self.n_orientations * self.n_phases

    @property
    def n_frames(self) -> int:
        """Frames in one time point."""
        return len(self.channels) * self.patterns_per_channel

    def steps(self, lines_nm: Sequence[int] = LASER_LINES_NM) -> list[SequenceStep]:
        """Every frame of one time point, in acquisition order (SLM indices for a running
        order whose grating sets are for `lines_nm`, in that order)."""
        steps: list[SequenceStep] = []
        for c, channel in enumerate(self.channels):
            for o in range(self.n_orientations):
                for p in range(self.n_phases):
                    pattern = self.n_phases * o + p
                    steps.append(
                        SequenceStep(
                            channel=c,
                            laser_nm=channel.laser_nm,
                            power_pct=channel.power_pct,
                            exposure_ms=channel.exposure_ms,
                            orientation=o,
                            phase=p,
                            pattern=pattern,
                            slm_index=slm_index(channel.laser_nm, self.mode, pattern, lines_nm),
                            rotator_state=rotator_state(self.mode, o),
                        )
                    )
        return steps


@dataclass(frozen=True, slots=True)
class SequenceStep:
    """One frame position of a time point and the device states it needs."""

    channel: int
    laser_nm: int
    power_pct: float
    exposure_ms: float
    orientation: int
    phase: int
    pattern: int
    slm_index: int
    rotator_state: int
