"""Optional backend: the core of a running Micro-Manager Studio over pycromanager's bridge.

Install with `pip install livesim[mm]`. The Java core's methods arrive in snake_case
(`getProperty` -> `get_property`); vectors are Java `StrVector`s, images `TaggedImage`s with a
flat `pix` array and a `tags` dict. Tested against a faithful fake of that bridge only; it has
not been run against a live Studio here.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hardware.core_adapter import CoreCalls
from hardware.errors import BufferOverflow, CapabilityError

logger = logging.getLogger(__name__)

# The Java bridge gives no per-image callback: waiting for a frame is a bounded wait on this
# interval, up to the caller's deadline.
_BRIDGE_WAIT_S = 0.002


def _java_str_vector(values: Sequence[str]) -> Any:
    """A mmcorej.StrVector holding `values` (needs pycromanager)."""
    from pycromanager import JavaObject

    vector = JavaObject("mmcorej.StrVector")
    for value in values:
        vector.add(value)
    return vector


def connect_studio_core() -> Any:
    """The core of the running Micro-Manager Studio; CapabilityError without pycromanager."""
    try:
        from pycromanager import Core
    except ImportError as e:
        raise CapabilityError(
            "the Micro-Manager Studio backend needs pycromanager: pip install 'livesim[mm]'"
        ) from e
    return Core()


class MMCoreNames:
    """A pycromanager bridge core called by MMCore's own method names: pycromanager shows the
    Java methods in snake_case by its rule (`getXYStageDevice` -> `get_xy_stage_device`)."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge

    def __getattr__(self, name: str) -> Any:
        words = re.sub("([a-z0-9])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name))
        return getattr(self.bridge, words.lower())


class BridgeCoreBackend(CoreCalls):
    """`CoreBackend` over a pycromanager bridge core (Java CMMCore in snake_case): the calls
    every core shares come from `CoreCalls`; here what the Java types change."""

    def __init__(
        self, core: Any, str_vector: Callable[[Sequence[str]], Any] | None = None
    ) -> None:
        self.core = MMCoreNames(core)
        self._str_vector = str_vector or _java_str_vector

    def set_property(self, label: str, prop: str, value: str | float | int) -> None:
        self.core.setProperty(label, prop, str(value))

    def load_sequence(self, label: str, prop: str, values: Sequence[str]) -> None:
        self.core.loadPropertySequence(label, prop, self._str_vector(list(values)))

    def get_roi(self) -> tuple[int, int, int, int]:
        rect = self.core.getROI()  # java.awt.Rectangle
        return int(rect.x), int(rect.y), int(rect.width), int(rect.height)

    def start_camera_sequence(self, n_frames: int) -> None:
        self.core.startSequenceAcquisition(int(n_frames), 0.0, True)

    def set_buffer_mb(self, size_mb: int) -> None:
        if int(self.core.getCircularBufferMemoryFootprint()) < size_mb:
            self.core.setCircularBufferMemoryFootprint(int(size_mb))

    def next_frame(self, deadline: float) -> tuple[np.ndarray, dict[str, str]] | None:
        """The next TaggedImage as (uint16 (Y, X), tags), or None at `deadline` (monotonic)."""
        wake = threading.Event()
        while int(self.core.getRemainingImageCount()) == 0:
            if self.core.isBufferOverflowed():
                raise BufferOverflow("Studio camera: circular buffer overflowed "
                                     "(frames arrived faster than they were read)")
            if time.monotonic() >= deadline:
                return None
            wake.wait(_BRIDGE_WAIT_S)
        tagged = self.core.popNextTaggedImage()
        tags = {str(k): str(v) for k, v in dict(tagged.tags).items()}
        height, width = int(float(tags["Height"])), int(float(tags["Width"]))
        pix = np.asarray(tagged.pix)
        # Java has no unsigned short: 16-bit pixels may arrive as int16; same bits either way
        image = pix.view(np.uint16) if pix.dtype == np.int16 else pix.astype(np.uint16)
        return image.reshape(height, width), tags
