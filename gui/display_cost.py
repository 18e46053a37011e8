"""Where the window's CPU goes while it draws: thread CPU per stage (`livesim bench gui`).

Thread CPU (not wall time), so the figures hold on a loaded machine: each stage adds the GUI
thread's CPU seconds spent in it; painting is counted by the image items themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields


@dataclass
class DisplayCost:
    """Accumulated GUI-thread CPU seconds of the display tick's stages."""

    receive_s: float = 0.0  # newest message of each display topic: poll, recv, validate
    raw_set_s: float = 0.0  # raw view set_image: levels when due, decimation, saturation count
    sr_set_s: float = 0.0  # the same for the SR view
    full_set_s: float = 0.0  # a full raw set: photon count (1 Hz), hand-off to the pattern check
    tick_s: float = 0.0  # the whole tick: the stages above, IMC, status, captions

    def snapshot(self) -> DisplayCost:
        """A copy, to difference two moments."""
        return DisplayCost(**{f.name: getattr(self, f.name) for f in fields(self)})

    def minus(self, earlier: DisplayCost) -> DisplayCost:
        """The CPU spent since ``earlier``."""
        return DisplayCost(**{f.name: getattr(self, f.name) - getattr(earlier, f.name)
                              for f in fields(self)})


def thread_cpu_s() -> float:
    """CPU seconds of the calling thread."""
    return time.thread_time()
