"""Camera throughput through the core: emulated raw frames/s, triggered and tagged."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.rig import emulated_rig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraThroughput:
    """Frames streamed through the core (each tagged) and how fast."""

    frames: int
    seconds: float
    size_px: int
    render_mode: str

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def megabytes_per_s(self) -> float:
        return self.frames_per_s * self.size_px * self.size_px * 2 / 1e6


def measure_camera_throughput(
    n_frames: int = 3000, size_px: int = 512, render_mode: str = "fast", timeout_s: float = 60.0
) -> CameraThroughput:
    """Stream `n_frames` linear-SIM frames (one triggered sequence per time point) as fast as
    the core path takes them: the emulated camera does not hold each readout until its
    exposure has ended (``HoldExposure`` No), so the figure is the path's ceiling, not
    1000 / exposure_ms."""
    from sim_emulator.microscope import EmulatorConfig

    config = EmulatorConfig(size_px=size_px)
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=50.0, exposure_ms=10.0),))
    with emulated_rig(config=config) as rig:
        rig.backend.set_property(rig.camera.label, "RenderMode", render_mode)
        rig.backend.set_property(rig.camera.label, "HoldExposure", "No")
        rig.acquire_time_point(plan, 0, timeout_s)  # warm-up: pre-renders the fast path
        n_time_points = max(1, n_frames // plan.n_frames)
        count = 0
        start = time.perf_counter()
        for _frame in rig.stream(plan, range(1, n_time_points + 1), timeout_s):
            count += 1
        seconds = time.perf_counter() - start
    result = CameraThroughput(count, seconds, size_px, render_mode)
    logger.info("camera: %d frames in %.2f s = %.0f frames/s", count, seconds,
                result.frames_per_s)
    return result
