"""The pycromanager (Micro-Manager Studio) backend against a faithful fake of the bridge core.

The fake speaks the Java CMMCore API as pycromanager presents it (snake_case names, StrVector
objects with size()/get(i), java.awt.Rectangle ROIs, TaggedImage with a flat `pix` array and a
`tags` dict) and is backed by a real UniMMCore running the emulator. No live Studio is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymmcore
import pytest

from hardware.bridge_backend import BridgeCoreBackend
from hardware.conformance import CHECKS
from hardware.errors import AcquisitionTimeout, CapabilityError
from hardware.rig import Rig
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.devices_faults import FaultPlan
from sim_emulator.rig import emulator_hub, optical_bench


class StrVector:
    """mmcorej.StrVector as the bridge shows it: size(), get(i), add(value)."""

    def __init__(self, values: Sequence[str] = ()) -> None:
        self._values = [str(v) for v in values]

    def size(self) -> int:
        return len(self._values)

    def get(self, i: int) -> str:
        return self._values[i]

    def add(self, value: str) -> None:
        self._values.append(str(value))


@dataclass
class Rectangle:
    """java.awt.Rectangle fields."""

    x: int
    y: int
    width: int
    height: int


@dataclass
class TaggedImage:
    """mmcorej.TaggedImage: flat pixels plus a JSON-like tag dict."""

    pix: np.ndarray
    tags: dict[str, Any]


class FakeStudioCore:
    """Java CMMCore methods, snake_case, on a real UniMMCore; Java-only argument types."""

    def __init__(self, core: Any, pix_dtype: type) -> None:
        self._core = core
        self._pix_dtype = pix_dtype

    def get_circular_buffer_memory_footprint(self) -> int:
        return int(self._core.getCircularBufferMemoryFootprint())

    def set_circular_buffer_memory_footprint(self, size_mb: int) -> None:
        self.footprint_set_mb = size_mb  # recorded; the wrapped core keeps its own buffer

    def is_buffer_overflowed(self) -> bool:
        return bool(self._core.isBufferOverflowed())

    def get_loaded_devices(self) -> StrVector:
        return StrVector(self._core.getLoadedDevices())

    def get_device_type(self, label: str) -> str:
        return str(self._core.getDeviceType(label))

    def get_camera_device(self) -> str:
        return str(self._core.getCameraDevice())

    def has_property(self, label: str, prop: str) -> bool:
        return bool(self._core.hasProperty(label, prop))

    def get_property(self, label: str, prop: str) -> str:
        return str(self._core.getProperty(label, prop))

    def set_property(self, label: str, prop: str, value: str) -> None:
        if not isinstance(value, str):  # our backend always sends the String overload
            raise TypeError(f"set_property expects a String value, got {type(value).__name__}")
        self._core.setProperty(label, prop, value)

    def get_allowed_property_values(self, label: str, prop: str) -> StrVector:
        return StrVector(self._core.getAllowedPropertyValues(label, prop))

    def has_property_limits(self, label: str, prop: str) -> bool:
        return bool(self._core.hasPropertyLimits(label, prop))

    def get_property_lower_limit(self, label: str, prop: str) -> float:
        return float(self._core.getPropertyLowerLimit(label, prop))

    def get_property_upper_limit(self, label: str, prop: str) -> float:
        return float(self._core.getPropertyUpperLimit(label, prop))

    def is_property_read_only(self, label: str, prop: str) -> bool:
        return bool(self._core.isPropertyReadOnly(label, prop))

    def is_property_sequenceable(self, label: str, prop: str) -> bool:
        return bool(self._core.isPropertySequenceable(label, prop))

    def get_property_sequence_max_length(self, label: str, prop: str) -> int:
        return int(self._core.getPropertySequenceMaxLength(label, prop))

    def load_property_sequence(self, label: str, prop: str, values: StrVector) -> None:
        if not isinstance(values, StrVector):
            raise TypeError("load_property_sequence expects a mmcorej.StrVector")
        self._core.loadPropertySequence(label, prop, [values.get(i) for i in range(values.size())])

    def start_property_sequence(self, label: str, prop: str) -> None:
        self._core.startPropertySequence(label, prop)

    def stop_property_sequence(self, label: str, prop: str) -> None:
        self._core.stopPropertySequence(label, prop)

    def get_exposure(self) -> float:
        return float(self._core.getExposure())

    def set_exposure(self, exposure_ms: float) -> None:
        self._core.setExposure(exposure_ms)

    def get_roi(self) -> Rectangle:
        return Rectangle(*self._core.getROI())

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        self._core.setROI(x, y, width, height)

    def clear_roi(self) -> None:
        self._core.clearROI()

    def get_image_height(self) -> int:
        return int(self._core.getImageHeight())

    def get_image_width(self) -> int:
        return int(self._core.getImageWidth())

    def get_pixel_size_um(self) -> float:
        return float(self._core.getPixelSizeUm())

    def start_sequence_acquisition(self, n: int, interval_ms: float, stop: bool) -> None:
        self._core.startSequenceAcquisition(n, interval_ms, stop)

    def stop_sequence_acquisition(self) -> None:
        self._core.stopSequenceAcquisition()

    def is_sequence_running(self) -> bool:
        return bool(self._core.isSequenceRunning())

    def get_remaining_image_count(self) -> int:
        return int(self._core.getRemainingImageCount())

    def pop_next_tagged_image(self) -> TaggedImage:
        md = pymmcore.Metadata()
        image = self._core.popNextImageMD(md)
        tags: dict[str, Any] = {key: md.GetSingleTag(key).GetValue() for key in md.GetKeys()}
        tags["Height"], tags["Width"] = image.shape  # JSON numbers in MM 2 tags
        return TaggedImage(image.ravel().view(self._pix_dtype).copy(), tags)

    def set_shutter_open(self, label: str, is_open: bool) -> None:
        self._core.setShutterOpen(label, is_open)

    def get_shutter_open(self, label: str) -> bool:
        return bool(self._core.getShutterOpen(label))


@pytest.fixture(params=[np.int16, np.uint16], ids=["pix-int16", "pix-uint16"])
def studio_rig(
    request: pytest.FixtureRequest, make_emulator: Callable[..., Rig]
) -> Iterator[tuple[Rig, Rig]]:
    """(rig over the fake bridge, the emulated rig behind it)."""
    emulated = make_emulator()
    fake = FakeStudioCore(emulated.backend.core, request.param)  # type: ignore[attr-defined]
    yield Rig(BridgeCoreBackend(fake, str_vector=StrVector)), emulated


def test_bridge_rig_passes_the_conformance_suite(studio_rig: tuple[Rig, Rig]) -> None:
    rig, _ = studio_rig
    for check in CHECKS:
        check.run(rig)


def test_bridge_rig_two_colour_time_point(studio_rig: tuple[Rig, Rig]) -> None:
    rig, emulated = studio_rig
    plan = SequencePlan(
        channels=(
            ChannelSpec(laser_nm=488, power_pct=90, exposure_ms=10),
            ChannelSpec(laser_nm=560, power_pct=90, exposure_ms=10),
        )
    )
    frames = rig.acquire_time_point(plan, 0, timeout_s=20.0)
    assert len(frames) == 18
    log = optical_bench(emulated).display_log
    assert [(f.tag.laser_nm, f.tag.pattern_index) for f in frames] == [
        (r.laser_nm, r.pattern) for r in log
    ]
    assert all(f.image.dtype == np.uint16 and f.image.shape == (64, 64) for f in frames)
    assert float(frames[0].image.mean()) > optical_bench(emulated).config.sensor.offset_adu + 20


def test_bridge_rig_camera_hang_times_out(make_emulator: Callable[..., Rig]) -> None:
    emulated = make_emulator(faults=FaultPlan(camera_timeout_at=2))
    fake = FakeStudioCore(emulated.backend.core, np.uint16)  # type: ignore[attr-defined]
    rig = Rig(BridgeCoreBackend(fake, str_vector=StrVector))
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=50, exposure_ms=5),))
    with pytest.raises(AcquisitionTimeout, match=r"expected 9 frames within 0\.5 s, 2 arrived"):
        rig.acquire_time_point(plan, 0, timeout_s=0.5)


def test_bridge_rig_is_not_an_emulator(studio_rig: tuple[Rig, Rig]) -> None:
    rig, _ = studio_rig
    with pytest.raises(CapabilityError, match="not the emulator"):
        emulator_hub(rig)
