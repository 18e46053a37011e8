"""Shim devices that look like real Micro-Manager adapters, for testing role maps and timing.

A Hamamatsu-DCAM-style camera (`TRIGGER SOURCE` INTERNAL/EXTERNAL, `TRIGGER ACTIVE` EDGE/LEVEL,
no frame counter in the metadata), TriggerScope-style laser TTLs (`TS_TTL1-8` `State` bit mask)
and DACs (`TS_DACnn` `Volts`) with a short hardware-sequence limit, an SLM whose running order
steps on a TTL (no position readback), and a hub playing the timing: the camera's exposure
output (camera-master) or a pulse train from a trigger controller (daq-master), with pulse
period, device settle time and injectable missed/extra triggers.

Each frame encodes what the devices showed at its exposure (so a test can check every tag):
pixel value = 1000 * TTL state + SLM image, + `UNSETTLED_ADU` if a device had stepped less than
its settle time before the exposure started.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hardware.core_adapter import CameraDevice, GenericDevice, HubDevice
from sim_emulator.devices import attribute_property

logger = logging.getLogger(__name__)

TS_SEQUENCE_MAX = 50  # states per TriggerScope pin sequence assumed here (firmware-dependent)
SLM_SEQUENCE_MAX = 1024
UNSETTLED_ADU = 30_000
SHAPE = (8, 8)
_ARM_TIMEOUT_S = 30.0


class ShimTiming(HubDevice):
    """The rig's timing: steps every running sequence on each pulse's trailing edge.

    PulseTrain (daq-master): set n to emit n pulses, PulsePeriod-ms apart. MissTriggerAt /
    ExtraTriggerAt: the camera misses pulse k / an extra pulse follows pulse k (-1: none).
    """

    def __init__(self) -> None:
        super().__init__()
        self.peripherals: list[Any] = []
        self.pulses = 0  # pulses so far (not readable: real controllers report none)
        self.period_ms = 5.0
        self.width_ms = 0.5  # devices step on the trailing edge: inside a longer exposure
        self.miss_at = -1
        self.extra_at = -1
        # (pulse time, TTL state, SLM image, settled) latched at each pulse the camera sees
        self.camera_pulses: queue.Queue[tuple[float, int, int, bool]] = queue.Queue()
        self._train: threading.Thread | None = None
        self.register_property("PulseTrain", property_type=int, getter=lambda _d: 0,
                               setter=lambda _d, n: self._start_train(int(n)),
                               limits=(0, 1_000_000))
        attribute_property(self, "PulsePeriod-ms", "period_ms", float, limits=(0.1, 10_000.0))
        attribute_property(self, "PulseWidth-ms", "width_ms", float, limits=(0.01, 10_000.0))
        attribute_property(self, "MissTriggerAt", "miss_at", int, limits=(-1, 1_000_000))
        attribute_property(self, "ExtraTriggerAt", "extra_at", int, limits=(-1, 1_000_000))

    def get_installed_peripherals(self) -> Sequence[tuple[str, str]]:
        return (("ShimHamamatsuCamera", "DCAM-style camera"),
                ("ShimTriggerScopeTtl", "TriggerScope TTL bank"),
                ("ShimTriggerScopeDac", "TriggerScope DAC"),
                ("ShimSlm", "SLM stepping its running order on a TTL"))

    def connect_peripheral(self, device: object) -> None:
        self.peripherals.append(device)
        if hasattr(device, "timing"):
            device.timing = self

    def state(self) -> tuple[int, int, bool]:
        """(TTL state, SLM image, settled) the devices show now."""
        ttl = next((d.value for d in self.peripherals if isinstance(d, ShimTriggerScopeTtl)), 0)
        slm = next((d.value for d in self.peripherals if isinstance(d, ShimSlm)), 0)
        now = time.monotonic()
        settled = all(now - d.stepped_at >= d.settle_ms / 1000.0 for d in self.peripherals
                      if isinstance(d, _SequencedDevice))
        return int(ttl), int(slm), settled

    def stepped_between(self, start_s: float, end_s: float) -> bool:
        """True if a device stepped inside (start_s, end_s) (monotonic s)."""
        return any(start_s < d.stepped_at < end_s for d in self.peripherals
                   if isinstance(d, _SequencedDevice))

    def trailing_edge(self) -> None:
        """A pulse ended: every running sequence steps."""
        for device in self.peripherals:
            if isinstance(device, _SequencedDevice):
                device.step()

    def _start_train(self, n: int) -> None:
        if n <= 0:
            return
        if self._train is not None and self._train.is_alive():
            raise RuntimeError("a pulse train is still running")
        self._train = threading.Thread(target=self._run_train, args=(n,), daemon=True)
        self._train.start()

    def _run_train(self, n: int) -> None:
        for _ in range(n):
            self._pulse()
            if self.pulses - 1 == self.extra_at:
                logger.warning("shim: extra trigger after pulse %d (fault)", self.extra_at)
                time.sleep(self.period_ms / 1000.0)
                self._pulse()
            time.sleep(max(0.0, self.period_ms - self.width_ms) / 1000.0)

    def _pulse(self) -> None:
        k = self.pulses
        self.pulses += 1
        if k == self.miss_at:
            logger.warning("shim: the camera misses pulse %d (fault)", k)
        else:
            self.camera_pulses.put((time.monotonic(), *self.state()))
        time.sleep(self.width_ms / 1000.0)
        self.trailing_edge()  # the devices step at the pulse's end


class _SequencedDevice(GenericDevice):
    """A device with one integer property that can run a hardware sequence on the pulses."""

    PROPERTY = "State"
    LIMITS: tuple[float, float] = (0, 255)
    SEQUENCE_MAX = TS_SEQUENCE_MAX

    def __init__(self) -> None:
        super().__init__()
        self.timing: ShimTiming | None = None
        self.value = 0
        self.sequence: list[int] = []
        self.position = 0
        self.running = False
        self.stepped_at = 0.0
        self.settle_ms = 0.0
        self.register_property(
            self.PROPERTY, property_type=int, getter=lambda _d: self.value,
            setter=lambda _d, v: self._set(int(v)), limits=self.LIMITS,
            sequence_max_length=self.SEQUENCE_MAX,
            sequence_loader=lambda _d, values: self._load(values),
            sequence_starter=lambda _d: self._start(),
            sequence_stopper=lambda _d: setattr(self, "running", False))
        attribute_property(self, "Settle-ms", "settle_ms", float, limits=(0.0, 10_000.0))

    def _set(self, value: int) -> None:
        self.value = value
        self.stepped_at = time.monotonic()

    def _load(self, values: Sequence[Any]) -> None:
        if len(values) > self.SEQUENCE_MAX:
            raise ValueError(f"sequence of {len(values)} exceeds {self.SEQUENCE_MAX}")
        self.sequence = [int(float(v)) for v in values]

    def _start(self) -> None:
        if not self.sequence:
            raise RuntimeError("start of a sequence that was never loaded")
        self.position = 0
        self.running = True
        self._set(self.sequence[0])

    def step(self) -> None:
        if self.running:
            self.position += 1
            self._set(self.sequence[self.position % len(self.sequence)])


class ShimTriggerScopeTtl(_SequencedDevice):
    """TriggerScope TTL bank: `State` is the bit mask of its 8 outputs; `Blanking` On/Off."""

    def __init__(self) -> None:
        super().__init__()
        self.blanking = "Off"
        attribute_property(self, "Blanking", "blanking", str, allowed_values=("On", "Off"))


class ShimSlm(_SequencedDevice):
    """An SLM whose preloaded running order steps on a TTL: `Image` is the shown image."""

    PROPERTY = "Image"
    LIMITS = (0, 1023)
    SEQUENCE_MAX = SLM_SEQUENCE_MAX


class ShimTriggerScopeDac(GenericDevice):
    """TriggerScope DAC: `Volts` 0-10 V (a laser's analog power input)."""

    def __init__(self) -> None:
        super().__init__()
        self.volts = 0.0
        attribute_property(self, "Volts", "volts", float, limits=(0.0, 10.0))


class ShimHamamatsuCamera(CameraDevice):
    """DCAM-style camera: `TRIGGER SOURCE` / `TRIGGER ACTIVE`, no frame counter in metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.timing: ShimTiming | None = None
        self._exposure_ms = 2.0
        self._source = "INTERNAL"
        self._active = "EDGE"
        self._readout_ms = 0.0  # rolling shutter: last row starts this long after the first
        self.set_property_allowed_values("Binning", ("1",))
        self.set_property_limits("Exposure", (0.01, 10_000.0))
        attribute_property(self, "TRIGGER SOURCE", "_source", str,
                            allowed_values=("INTERNAL", "EXTERNAL", "SOFTWARE"))
        attribute_property(self, "TRIGGER ACTIVE", "_active", str,
                            allowed_values=("EDGE", "LEVEL", "SYNCREADOUT"))
        self.register_property("TIMING READOUT TIME", property_type=float,
                               getter=lambda _d: self._readout_ms / 1000.0,
                               setter=lambda _d, v: setattr(self, "_readout_ms",
                                                            float(v) * 1000.0),
                               limits=(0.0, 1.0))
        # shim-only stand-in for the .cfg's pixel-size configuration (UniMMCore did not match
        # a ConfigPixelSize preset on Python-device properties here)
        self.register_property("ShimPixelSizeNm", property_type=float,
                               getter=lambda _d: 65.0, is_read_only=True)

    def shape(self) -> tuple[int, int]:
        return SHAPE

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    def get_binning(self) -> int:
        return 1

    def set_binning(self, value: int) -> None:
        if int(value) != 1:
            raise ValueError(f"binning {value} not supported")

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], Any], np.ndarray]
    ) -> Iterator[Mapping]:
        timing = self.timing
        if timing is None:
            raise RuntimeError("camera is not connected to its timing hub")
        if self._source == "EXTERNAL":  # pulses left from an earlier burst are not ours
            while not timing.camera_pulses.empty():
                timing.camera_pulses.get_nowait()
        return self._frames(n if n is not None else 2**62, get_buffer, timing)

    def _frames(self, n: int, get_buffer: Callable[[Sequence[int], Any], np.ndarray],
                timing: ShimTiming) -> Iterator[Mapping]:
        for _ in range(n):
            if self._source == "EXTERNAL":
                try:
                    pulse_s, ttl, slm, settled = timing.camera_pulses.get(
                        timeout=_ARM_TIMEOUT_S)
                except queue.Empty:
                    return
                # every row must see one state: a step before the last row ends spoils it
                end_s = pulse_s + (self._exposure_ms + self._readout_ms) / 1000.0
                time.sleep(max(0.0, end_s - time.monotonic()))
                settled = settled and not timing.stepped_between(pulse_s, end_s)
            else:  # free-running: the exposure output is the pulse the devices step on
                ttl, slm, settled = timing.state()
                time.sleep(self._exposure_ms / 1000.0)
                timing.pulses += 1
                timing.trailing_edge()
            buffer = get_buffer(SHAPE, np.uint16)
            buffer[:] = 1000 * ttl + slm + (0 if settled else UNSETTLED_ADU)
            yield {"Exposure-ms": f"{self._exposure_ms:.4f}"}
