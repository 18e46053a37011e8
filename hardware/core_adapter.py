"""The one place that touches pymmcore-plus's experimental `UniMMCore` API.

Everything else (roles, rig, emulated devices) goes through `UniCoreBackend` and the device
base classes re-exported here, so an upstream change of the experimental API touches only
this module.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pymmcore_plus import DeviceType
from pymmcore_plus.experimental.unicore import (
    CameraDevice,
    Device,
    GenericDevice,
    HubDevice,
    ShutterDevice,
    StageDevice,
    UniMMCore,
    XYStageDevice,
    pymm_property,
)
from pymmcore_plus.experimental.unicore.core._sequence_buffer import SequenceBuffer

from hardware.errors import BufferOverflow, CapabilityError, ConfigError

_SIGNALS_BACKEND_VARIABLE = "PYMM_SIGNALS_BACKEND"  # pymmcore-plus: 'qt' | 'psygnal' | 'auto'

__all__ = [
    "CameraDevice",
    "CoreBackend",
    "CoreCalls",
    "Device",
    "GenericDevice",
    "HubDevice",
    "ShutterDevice",
    "StageDevice",
    "UniCoreBackend",
    "XYStageDevice",
    "pymm_property",
]

logger = logging.getLogger(__name__)

_LINE_ERROR = re.compile(r"at line (\d+): (.*?)\n(.*)", re.DOTALL)
# C++ cameras fill MMCore's own circular buffer, which offers no arrival callback; waiting on
# them is a bounded wait on this interval (Python cameras notify and never poll).
_CPP_CAMERA_WAIT_S = 0.001
_BUFFER_MB = 512
_OVERFLOW_CHECK_S = 0.1  # how often a wait for a frame looks at isBufferOverflowed()
_NO_ADAPTERS_DIR = Path(__file__).resolve().parent  # a folder without Micro-Manager adapters


class CoreBackend(Protocol):
    """What a Rig needs from a Micro-Manager core (UniMMCore here, or a Studio bridge)."""

    def device_labels(self) -> tuple[str, ...]:
        """Labels of every loaded device."""

    def camera_label(self) -> str:
        """Label of the core's current camera."""

    def has_property(self, label: str, prop: str) -> bool:
        """True if device `label` has property `prop`."""

    def get_property(self, label: str, prop: str) -> str:
        """Current value of a property, as Micro-Manager's string."""

    def set_property(self, label: str, prop: str, value: str | float | int) -> None:
        """Set a property (validated by the device)."""

    def allowed_values(self, label: str, prop: str) -> tuple[str, ...]:
        """Allowed values of a property (empty when it is free or has limits)."""

    def property_limits(self, label: str, prop: str) -> tuple[float, float] | None:
        """(low, high) limits of a numeric property, or None."""

    def sequence_max_length(self, label: str, prop: str) -> int:
        """0 if the property is not hardware-sequenceable, else its longest sequence."""

    def load_sequence(self, label: str, prop: str, values: Sequence[str]) -> None:
        """Send a hardware sequence of values to the device."""

    def start_sequence(self, label: str, prop: str) -> None:
        """Start the loaded sequence: the device steps on each trigger."""

    def stop_sequence(self, label: str, prop: str) -> None:
        """Stop the running sequence."""

    def get_exposure_ms(self) -> float:
        """Camera exposure in ms."""

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the camera exposure in ms."""

    def get_roi(self) -> tuple[int, int, int, int]:
        """Camera ROI (x, y, width, height) in sensor pixels."""

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        """Set the camera ROI in sensor pixels."""

    def clear_roi(self) -> None:
        """Back to the full sensor."""

    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the frames the camera delivers."""

    def pixel_size_um(self) -> float:
        """Pixel size from the .cfg's pixel-size configuration (0 if none)."""

    def start_camera_sequence(self, n_frames: int) -> None:
        """Arm the camera for `n_frames` frames (stop on buffer overflow)."""

    def stop_camera_sequence(self) -> None:
        """Stop the camera sequence if one runs."""

    def camera_running(self) -> bool:
        """True while the camera sequence runs."""

    def set_buffer_mb(self, size_mb: int) -> None:
        """Size the camera's circular buffer (MB)."""

    def pending_frames(self) -> int:
        """Frames waiting in the circular buffer."""

    def next_frame(self, deadline: float) -> tuple[np.ndarray, dict[str, str]] | None:
        """Next frame and its metadata, or None when `deadline` (monotonic s) passes;
        BufferOverflow (within `_OVERFLOW_CHECK_S`) if the circular buffer overflowed."""

    def set_shutter_open(self, label: str, is_open: bool) -> None:
        """Open or close shutter `label`."""

    def shutter_open(self, label: str) -> bool:
        """True if shutter `label` is open."""

    def stage_labels(self) -> tuple[str, str]:
        """The core's current XY stage and focus (Z) device labels ('' where none)."""

    def set_xy_position_um(self, x_um: float, y_um: float) -> None:
        """Start moving the XY stage to (x, y) micrometres."""

    def xy_position_um(self) -> tuple[float, float]:
        """Where the XY stage reports it is (micrometres)."""

    def set_z_position_um(self, z_um: float) -> None:
        """Start moving the focus drive to z micrometres."""

    def z_position_um(self) -> float:
        """Where the focus drive reports it is (micrometres)."""

    def wait_for_device(self, label: str) -> None:
        """Block until `label` is no longer busy (the core's own bounded wait: it raises after
        the core's timeout, 5 s by default)."""


class _NotifyingBuffer(SequenceBuffer):
    """The unicore sequence buffer plus a condition, so a reader waits instead of polling."""

    def __init__(self, size_mb: float) -> None:
        super().__init__(size_mb, overwrite_on_overflow=False)
        self.arrived = threading.Condition()

    def finalize_slot(self, metadata: Mapping[str, Any] | None = None) -> None:
        super().finalize_slot(metadata)
        with self.arrived:
            self.arrived.notify_all()

    def clear(self) -> None:
        super().clear()
        with self.arrived:
            self.arrived.notify_all()


@contextmanager
def _psygnal_core_events() -> Iterator[None]:
    """Make a core built here emit psygnal (thread-direct) events, even in a Qt process.

    pymmcore-plus picks Qt signals whenever a QApplication exists; the rig's waits run on
    plain threads with no Qt event loop, so queued Qt signals would never be delivered.
    """
    previous = os.environ.get(_SIGNALS_BACKEND_VARIABLE)
    os.environ[_SIGNALS_BACKEND_VARIABLE] = "psygnal"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_SIGNALS_BACKEND_VARIABLE, None)
        else:
            os.environ[_SIGNALS_BACKEND_VARIABLE] = previous


def strings(values: Any) -> tuple[str, ...]:
    """A Java StrVector (size()/get(i)) or a Python sequence, as a tuple of str."""
    if hasattr(values, "size") and hasattr(values, "get"):
        return tuple(str(values.get(i)) for i in range(int(values.size())))
    return tuple(str(v) for v in values)


class CoreCalls:
    """The `CoreBackend` calls that read the same on every Micro-Manager core: MMCore's own
    methods on ``core`` (a UniMMCore, or a Studio bridge core under MMCore's names)."""

    core: Any

    # -------------------------------------------------------------- devices and props
    def device_labels(self) -> tuple[str, ...]:
        return strings(self.core.getLoadedDevices())

    def camera_label(self) -> str:
        return str(self.core.getCameraDevice())

    def has_property(self, label: str, prop: str) -> bool:
        return bool(self.core.hasProperty(label, prop))

    def get_property(self, label: str, prop: str) -> str:
        return str(self.core.getProperty(label, prop))

    def allowed_values(self, label: str, prop: str) -> tuple[str, ...]:
        return strings(self.core.getAllowedPropertyValues(label, prop))

    def property_limits(self, label: str, prop: str) -> tuple[float, float] | None:
        if not self.core.hasPropertyLimits(label, prop):
            return None
        return (
            float(self.core.getPropertyLowerLimit(label, prop)),
            float(self.core.getPropertyUpperLimit(label, prop)),
        )

    def sequence_max_length(self, label: str, prop: str) -> int:
        if not self.core.isPropertySequenceable(label, prop):
            return 0
        return int(self.core.getPropertySequenceMaxLength(label, prop))

    def start_sequence(self, label: str, prop: str) -> None:
        self.core.startPropertySequence(label, prop)

    def stop_sequence(self, label: str, prop: str) -> None:
        self.core.stopPropertySequence(label, prop)

    # -------------------------------------------------------------- camera
    def get_exposure_ms(self) -> float:
        return float(self.core.getExposure())

    def set_exposure_ms(self, exposure_ms: float) -> None:
        self.core.setExposure(float(exposure_ms))

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        self.core.setROI(int(x), int(y), int(width), int(height))

    def clear_roi(self) -> None:
        self.core.clearROI()

    def image_shape(self) -> tuple[int, int]:
        return int(self.core.getImageHeight()), int(self.core.getImageWidth())

    def pixel_size_um(self) -> float:
        return float(self.core.getPixelSizeUm())

    def stop_camera_sequence(self) -> None:
        if self.core.isSequenceRunning():
            self.core.stopSequenceAcquisition()

    def camera_running(self) -> bool:
        return bool(self.core.isSequenceRunning())

    def pending_frames(self) -> int:
        return int(self.core.getRemainingImageCount())

    # -------------------------------------------------------------- shutter
    def set_shutter_open(self, label: str, is_open: bool) -> None:
        self.core.setShutterOpen(label, bool(is_open))

    def shutter_open(self, label: str) -> bool:
        return bool(self.core.getShutterOpen(label))

    # -------------------------------------------------------------- stages
    def stage_labels(self) -> tuple[str, str]:
        return str(self.core.getXYStageDevice()), str(self.core.getFocusDevice())

    def set_xy_position_um(self, x_um: float, y_um: float) -> None:
        self.core.setXYPosition(float(x_um), float(y_um))

    def xy_position_um(self) -> tuple[float, float]:
        return float(self.core.getXPosition()), float(self.core.getYPosition())

    def set_z_position_um(self, z_um: float) -> None:
        self.core.setPosition(float(z_um))

    def z_position_um(self) -> float:
        return float(self.core.getPosition())

    def wait_for_device(self, label: str) -> None:
        self.core.waitForDevice(label)


class UniCoreBackend(CoreCalls):
    """A `UniMMCore` (Python and C++ devices through one core) behind our small typed API."""

    def __init__(self, core: UniMMCore | None = None, *, find_adapters: bool = True) -> None:
        """Wrap `core`, or a new UniMMCore (find_adapters=False: Python devices only, no
        search for a Micro-Manager installation)."""
        if core is None:
            with _psygnal_core_events():
                core = UniMMCore() if find_adapters else UniMMCore(mm_path=str(_NO_ADAPTERS_DIR))
        self.core = core
        self._buffer = _NotifyingBuffer(_BUFFER_MB)
        # Upstream keeps the buffer in a private attribute; replacing it is the price of
        # being woken on arrival rather than polling.
        self.core._seq_buffer = self._buffer
        self.config_path: Path | None = None

    # -------------------------------------------------------------- configuration
    def load_config(self, path: str | Path) -> None:
        """Load a Micro-Manager .cfg; any failure becomes ConfigError naming the line."""
        cfg = Path(path)
        if not cfg.is_file():
            raise ConfigError(f"rig configuration {str(cfg)!r} does not exist")
        try:
            self.core.loadSystemConfiguration(str(cfg))
        except (RuntimeError, ValueError, ImportError, AttributeError, TypeError, KeyError) as e:
            raise _config_error(cfg, e) from e
        self.config_path = cfg
        for label in self.device_labels():
            if label in self.core._pydevices:
                state = self.core._pydevices[label]._initialized_
                if isinstance(state, BaseException):
                    raise ConfigError(
                        f"{cfg}: device {label!r} failed to initialise: {state}"
                    ) from state
        _connect_hub_peripherals(self.core)

    def python_device(self, label: str) -> Device:
        """The Python device object behind `label` (emulated devices), else CapabilityError."""
        if not self.core.isPyDevice(label):
            raise CapabilityError(f"device {label!r} is not a Python device")
        return self.core._pydevices[label]

    # -------------------------------------------------------------- what differs per core
    def set_property(self, label: str, prop: str, value: str | float | int) -> None:
        self.core.setProperty(label, prop, value)

    def load_sequence(self, label: str, prop: str, values: Sequence[str]) -> None:
        self.core.loadPropertySequence(label, prop, list(values))

    def get_roi(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.core.getROI()
        return int(x), int(y), int(w), int(h)

    def start_camera_sequence(self, n_frames: int) -> None:
        """Arm the camera for `n_frames`; frames then arrive as the camera produces them."""
        self._buffer.clear()
        self.core.startSequenceAcquisition(n_frames, 0.0, True)

    def set_buffer_mb(self, size_mb: int) -> None:
        """Size the circular buffer: ours for Python cameras (so arrivals still notify),
        MMCore's for C++ ones (250 MB by default, ~29 frames at 2048 x 2048)."""
        if size_mb <= 0:
            raise ValueError(f"buffer size must be > 0 MB, got {size_mb}")
        if self.core.isPyDevice(self.camera_label()):
            if int(self._buffer.size_mb) != size_mb:
                self._buffer = _NotifyingBuffer(size_mb)
                self.core._seq_buffer = self._buffer
        elif int(self.core.getCircularBufferMemoryFootprint()) < size_mb:
            self.core.setCircularBufferMemoryFootprint(size_mb)

    def buffer_mb(self) -> int:
        return int(self.core.getCircularBufferMemoryFootprint())

    def _raise_if_overflowed(self) -> None:
        if self.core.isBufferOverflowed():
            raise BufferOverflow(
                f"camera {self.camera_label()!r}: circular buffer overflowed "
                f"({self.buffer_mb()} MB): frames arrived faster than they were read")

    def next_frame(self, deadline: float) -> tuple[np.ndarray, dict[str, str]] | None:
        """The next frame and its metadata, or None if none arrives by `deadline` (monotonic)."""
        if self.core.isPyDevice(self.camera_label()):
            with self._buffer.arrived:
                while True:
                    item = self._buffer.pop_next()
                    if item is not None:
                        image, meta = item
                        return image, {str(k): str(v) for k, v in meta.items()}
                    self._raise_if_overflowed()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._buffer.arrived.wait(min(remaining, _OVERFLOW_CHECK_S))
        return self._next_cpp_frame(deadline)

    def _next_cpp_frame(self, deadline: float) -> tuple[np.ndarray, dict[str, str]] | None:
        import pymmcore

        wake = threading.Event()
        checked = time.monotonic()
        while self.core.getRemainingImageCount() == 0:
            if time.monotonic() - checked >= _OVERFLOW_CHECK_S:
                self._raise_if_overflowed()
                checked = time.monotonic()
            if time.monotonic() >= deadline:
                return None
            wake.wait(_CPP_CAMERA_WAIT_S)
        md = pymmcore.Metadata()
        image = self.core.popNextImageMD(md)
        meta = {key: md.GetSingleTag(key).GetValue() for key in md.GetKeys()}
        return np.asarray(image), meta

    def close(self) -> None:
        """Stop acquisition and unload the Python devices (C++ ones go with the core)."""
        self.stop_camera_sequence()
        # Not unloadAllDevices(): with Python devices loaded it makes pymmcore abort at
        # interpreter exit ("FATAL: exception not rethrown") about one run in three.
        for label in list(self.core._pydevices):
            self.core.unloadDevice(label)


def _config_error(cfg: Path, error: BaseException) -> ConfigError:
    """Turn upstream's loader error into one naming the file, line number and line text."""
    match = _LINE_ERROR.search(str(error))
    if match:
        line_no, reason = match.group(1), match.group(3).strip()
        text = match.group(2).strip().strip("'\"")
        return ConfigError(f"{cfg}: line {line_no}: {text}: {reason}")
    return ConfigError(f"{cfg}: {type(error).__name__}: {error}")


def _connect_hub_peripherals(core: UniMMCore) -> None:
    """Hand each Python hub its loaded peripherals (`Parent,<device>,<hub>` cfg lines)."""
    devices = core._pydevices
    for label in devices:
        hub = devices[label]
        connect = getattr(hub, "connect_peripheral", None)
        if hub.type() != DeviceType.Hub or connect is None:
            continue
        for peripheral in devices.get_loaded_peripherals(label):
            connect(devices[peripheral])
