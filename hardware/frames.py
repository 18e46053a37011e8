"""Frame metadata produced by the rig: every raw frame carries where it sits in the plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class FrameTag:
    """Where one raw frame sits: time point, channel, SIM pattern, and its run-wide sequence."""

    time_point: int
    channel: int
    laser_nm: int
    orientation: int
    phase: int
    pattern_index: int
    sequence: int
    timestamp_s: float
    exposure_ms: float
    saturated_px: int = 0


@dataclass(frozen=True, slots=True)
class TaggedFrame:
    """One raw camera frame (uint16, (Y, X)) and its tag."""

    image: np.ndarray
    tag: FrameTag
