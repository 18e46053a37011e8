"""Optional backend: the core of a running Micro-Manager Studio over pycromanager's bridge.

Install with `pip install livesim[mm]`. The Java core's methods arrive in snake_case
(`getProperty` -> `get_property`); vectors are Java `StrVector`s, images `TaggedImage`s with a
flat `pix` array and a `tags` dict. Tested against a faithful fake of that bridge only; it has
not been run against a live Studio here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hardware.errors import BufferOverflow, CapabilityError

logger = logging.getLogger(__name__)

# The Java bridge gives no per-image callback: waiting for a frame is a bounded wait on this
# interval, up to the caller's deadline.
_BRIDGE_WAIT_S = 0.002


def _strings(vector: Any) -> tuple[str, ...]:
    """A Java StrVector (size()/get(i)) or a Python sequence, as a tuple of str."""
    if hasattr(vector, "size") and hasattr(vector, "get"):
        return tuple(str(vector.get(i)) for i in range(int(vector.size())))
    return tuple(str(v) for v in vector)


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


class BridgeCoreBackend:
    """`CoreBackend` over a pycromanager bridge core (Java CMMCore in snake_case)."""

    def __init__(
        self, core: Any, str_vector: Callable[[Sequence[str]], Any] | None = None
    ) -> None:
        self.core = core
        self._str_vector = str_vector or _java_str_vector

    def device_labels(self) -> tuple[str, ...]:
        return _strings(self.core.get_loaded_devices())

    def camera_label(self) -> str:
        return str(self.core.get_camera_device())

    def has_property(self, label: str, prop: str) -> bool:
        return bool(self.core.has_property(label, prop))

    def get_property(self, label: str, prop: str) -> str:
        return str(self.core.get_property(label, prop))

    def set_property(self, label: str, prop: str, value: str | float | int) -> None:
        self.core.set_property(label, prop, str(value))

    def allowed_values(self, label: str, prop: str) -> tuple[str, ...]:
        return _strings(self.core.get_allowed_property_values(label, prop))

    def property_limits(self, label: str, prop: str) -> tuple[float, float] | None:
        if not self.core.has_property_limits(label, prop):
            return None
        return (
            float(self.core.get_property_lower_limit(label, prop)),
            float(self.core.get_property_upper_limit(label, prop)),
        )

    def sequence_max_length(self, label: str, prop: str) -> int:
        if not self.core.is_property_sequenceable(label, prop):
            return 0
        return int(self.core.get_property_sequence_max_length(label, prop))

    def load_sequence(self, label: str, prop: str, values: Sequence[str]) -> None:
        self.core.load_property_sequence(label, prop, self._str_vector(list(values)))

    def start_sequence(self, label: str, prop: str) -> None:
        self.core.start_property_sequence(label, prop)

    def stop_sequence(self, label: str, prop: str) -> None:
        self.core.stop_property_sequence(label, prop)

    def get_exposure_ms(self) -> float:
        return float(self.core.get_exposure())

    def set_exposure_ms(self, exposure_ms: float) -> None:
        self.core.set_exposure(float(exposure_ms))

    def get_roi(self) -> tuple[int, int, int, int]:
        rect = self.core.get_roi()  # java.awt.Rectangle
        return int(rect.x), int(rect.y), int(rect.width), int(rect.height)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        self.core.set_roi(int(x), int(y), int(width), int(height))

    def stage_labels(self) -> tuple[str, str]:
        return str(self.core.get_xy_stage_device()), str(self.core.get_focus_device())

    def set_xy_position_um(self, x_um: float, y_um: float) -> None:
        self.core.set_xy_position(float(x_um), float(y_um))

    def xy_position_um(self) -> tuple[float, float]:
        return float(self.core.get_x_position()), float(self.core.get_y_position())

    def set_z_position_um(self, z_um: float) -> None:
        self.core.set_position(float(z_um))

    def z_position_um(self) -> float:
        return float(self.core.get_position())

    def wait_for_device(self, label: str) -> None:
        self.core.wait_for_device(label)

    def clear_roi(self) -> None:
        self.core.clear_roi()

    def image_shape(self) -> tuple[int, int]:
        return int(self.core.get_image_height()), int(self.core.get_image_width())

    def pixel_size_um(self) -> float:
        return float(self.core.get_pixel_size_um())

    def start_camera_sequence(self, n_frames: int) -> None:
        self.core.start_sequence_acquisition(int(n_frames), 0.0, True)

    def stop_camera_sequence(self) -> None:
        if self.core.is_sequence_running():
            self.core.stop_sequence_acquisition()

    def camera_running(self) -> bool:
        return bool(self.core.is_sequence_running())

    def set_buffer_mb(self, size_mb: int) -> None:
        if int(self.core.get_circular_buffer_memory_footprint()) < size_mb:
            self.core.set_circular_buffer_memory_footprint(int(size_mb))

    def pending_frames(self) -> int:
        return int(self.core.get_remaining_image_count())

    def next_frame(self, deadline: float) -> tuple[np.ndarray, dict[str, str]] | None:
        """The next TaggedImage as (uint16 (Y, X), tags), or None at `deadline` (monotonic)."""
        wake = threading.Event()
        while int(self.core.get_remaining_image_count()) == 0:
            if self.core.is_buffer_overflowed():
                raise BufferOverflow("Studio camera: circular buffer overflowed "
                                     "(frames arrived faster than they were read)")
            if time.monotonic() >= deadline:
                return None
            wake.wait(_BRIDGE_WAIT_S)
        tagged = self.core.pop_next_tagged_image()
        tags = {str(k): str(v) for k, v in dict(tagged.tags).items()}
        height, width = int(float(tags["Height"])), int(float(tags["Width"]))
        pix = np.asarray(tagged.pix)
        # Java has no unsigned short: 16-bit pixels may arrive as int16; same bits either way
        image = pix.view(np.uint16) if pix.dtype == np.int16 else pix.astype(np.uint16)
        return image.reshape(height, width), tags

    def set_shutter_open(self, label: str, is_open: bool) -> None:
        self.core.set_shutter_open(label, bool(is_open))

    def shutter_open(self, label: str) -> bool:
        return bool(self.core.get_shutter_open(label))
