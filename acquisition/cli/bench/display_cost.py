"""Where the window's CPU goes while it draws (`livesim bench gui`): GUI-thread CPU per stage.

Thread CPU (not wall time), so the figures hold on a loaded machine. `StageClock` is the timer
the bench installs on the window's stage hook (`gui.display_stages`); the window itself
measures nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class DisplayCost:
    """Accumulated GUI-thread CPU seconds of the window's display stages."""

    receive_s: float = 0.0  # newest message of each display topic: poll, recv, validate
    raw_set_s: float = 0.0  # raw view set_image: levels when due, decimation, saturation count
    sr_set_s: float = 0.0  # the same for the SR view
    full_set_s: float = 0.0  # a full raw set: photon count (1 Hz), hand-off to the pattern check
    tick_s: float = 0.0  # the whole tick: the stages above, IMC, status, captions
    raw_paint_s: float = 0.0  # painting the raw image: colouring + Qt drawing it
    sr_paint_s: float = 0.0
    view_paint_s: float = 0.0  # the views' paint events, the images' paint included

    def minus(self, earlier: DisplayCost) -> DisplayCost:
        """The CPU spent since ``earlier``."""
        return DisplayCost(**{f.name: getattr(self, f.name) - getattr(earlier, f.name)
                              for f in fields(self)})


class StageClock:
    """GUI-thread CPU per display stage; a stage running inside itself counts once, a stage
    with no `DisplayCost` field (another panel's paint) is not counted."""

    def __init__(self) -> None:
        self.cost = DisplayCost()
        self._depth: Counter[str] = Counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time one run of stage ``name``."""
        field_name = f"{name}_s"
        if not hasattr(self.cost, field_name):
            yield
            return
        outermost = self._depth[name] == 0
        self._depth[name] += 1
        start = time.thread_time()
        try:
            yield
        finally:
            self._depth[name] -= 1
            if outermost:
                spent = time.thread_time() - start
                self.cost = replace(self.cost,
                                    **{field_name: getattr(self.cost, field_name) + spent})
