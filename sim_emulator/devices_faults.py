"""Faults the emulated rig can inject, so the hardware layer's error paths are exercised."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FaultPlan(BaseModel):
    """Which faults to inject; trigger/frame indices count from 0 over the whole run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drop_frame_every: int | None = Field(
        default=None, ge=2, description="camera exposes but never delivers every Nth frame"
    )
    missed_trigger_at: int | None = Field(
        default=None, ge=0, description="camera misses this trigger; SLM, AOTF, rotator advance"
    )
    camera_timeout_at: int | None = Field(
        default=None, ge=0, description="camera stops responding from this exposure on"
    )
    pattern_out_of_sync_at: int | None = Field(
        default=None, ge=0, description="SLM advances two patterns at this trigger instead of one"
    )
    saturating_burst_at: int | None = Field(
        default=None, ge=0, description="first exposure of a burst of saturated frames"
    )
    saturating_burst_frames: int = Field(default=3, ge=1, le=10_000)

    def drops(self, exposure: int) -> bool:
        """True when exposure number `exposure` (0-based) is captured but not delivered."""
        every = self.drop_frame_every
        return every is not None and (exposure + 1) % every == 0

    def saturates(self, exposure: int) -> bool:
        """True when exposure number `exposure` falls inside the saturating burst."""
        start = self.saturating_burst_at
        return start is not None and start <= exposure < start + self.saturating_burst_frames
