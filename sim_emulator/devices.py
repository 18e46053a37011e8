"""Emulated Micro-Manager devices (unicore Python devices) backed by the forward model.

Loaded from a .cfg through `#py pyDevice,<label>,sim_emulator.devices,<Class>` lines and tied
together by `EmulatorHub` (`#py Parent,<label>,<hub>`): the camera renders what the SLM,
AOTF, rotator and shutter show at each trigger, so a wrong order or a missed trigger is
visible in the data, and the hub's bench keeps the display log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hardware.core_adapter import (
    CameraDevice,
    GenericDevice,
    HubDevice,
    ShutterDevice,
    StageDevice,
    XYStageDevice,
)
from hardware.pattern_layout import LASER_LINES_NM, ROTATOR_N_STATES, SLM_N_PATTERNS
from sim_emulator.devices_faults import FaultPlan
from sim_emulator.optical_bench import DisplayRecord, OpticalBench, Shown

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sim_emulator.microscope import EmulatorConfig

MAX_SEQUENCE = 4096
PropertyValue = str | float  # a device property's value (int included)
_SATURATION_GAIN = 64  # a stray-light burst: 64x the signal on top of half full scale
_SATURATION_FLOOR_ADU = 32768
_ADU_MAX = 65535


class _BenchDevice:
    """Mixin: a device that belongs to an `EmulatorHub` and reads/writes its bench."""

    _bench_: OpticalBench | None = None

    def attach(self, bench: OpticalBench) -> None:
        """Join the hub's optical bench (called by the hub when the rig is loaded)."""
        self._bench_ = bench

    @property
    def bench(self) -> OpticalBench:
        if self._bench_ is None:
            raise RuntimeError(
                f"{type(self).__name__} is not attached to an EmulatorHub: add "
                "'#py Parent,<label>,<hub>' to the .cfg and load it through hardware.rig.Rig"
            )
        return self._bench_


def _register(
    device: Any,
    name: str,
    property_type: type,
    getter: Callable[[], Any],
    setter: Callable[[Any], None] | None = None,
    *,
    allowed: Sequence[PropertyValue] | None = None,
    limits: tuple[float, float] | None = None,
    sequencer: _Sequencer | None = None,
    sequence_key: str = "",
) -> None:
    """Register a device property backed by closures; a sequencer makes it sequenceable."""
    load = start = stop = None
    if sequencer is not None:

        def load(_dev: object, values: Sequence[PropertyValue]) -> None:
            sequencer.load(values)

        def start(_dev: object) -> None:
            sequencer.start()
            device.bench.register_sequence(sequence_key, sequencer.advance)

        def stop(_dev: object) -> None:
            device.bench.unregister_sequence(sequence_key)

    device.register_property(
        name,
        property_type=property_type,
        getter=lambda _dev: getter(),
        setter=None if setter is None else (lambda _dev, value: setter(value)),
        allowed_values=allowed,
        limits=limits,
        is_read_only=setter is None,
        sequence_max_length=MAX_SEQUENCE if sequencer is not None else 0,
        sequence_loader=load,
        sequence_starter=start,
        sequence_stopper=stop,
    )


def attribute_property(device: Any, name: str, attribute: str, kind: type, **options: Any
                       ) -> None:
    """Register property ``name`` that reads ``device.<attribute>`` and stores ``kind(value)``."""
    device.register_property(name, property_type=kind,
                             getter=lambda _d: getattr(device, attribute),
                             setter=lambda _d, v: setattr(device, attribute, kind(v)), **options)


class _Sequencer:
    """A hardware property sequence that steps on each trigger's trailing edge."""

    def __init__(self, apply: Callable[[PropertyValue], None]) -> None:
        self.values: list[PropertyValue] = []
        self.position = 0
        self._apply = apply

    def load(self, values: Sequence[PropertyValue]) -> None:
        if not values:
            raise ValueError("cannot load an empty sequence")
        self.values = list(values)

    def start(self) -> None:
        if not self.values:
            raise RuntimeError("start of a property sequence that was never loaded")
        self.position = 0
        self._apply(self.values[0])

    def advance(self, steps: int) -> None:
        self.position += steps
        self._apply(self.values[self.position % len(self.values)])


class EmulatorHub(HubDevice):
    """The emulated rig's controller: owns the optical bench and fires the trigger line."""

    def __init__(self) -> None:
        super().__init__()
        self.bench = OpticalBench()
        _register(self, "FireTriggers", int, lambda: 0, lambda n: self.bench.fire(int(n)),
                  limits=(0, 1_000_000))
        _register(self, "TriggerLine", str, lambda: "Running", self._set_line,
                  allowed=("Running", "Stopped"))
        _register(self, "TriggersFired", int, lambda: self.bench.triggers_fired)

    def _set_line(self, value: str) -> None:
        """Stopped drops pending pulses and releases a camera waiting for one."""
        if value == "Stopped":
            self.bench.disarm()

    def get_installed_peripherals(self) -> Sequence[tuple[str, str]]:
        return (
            ("EmulatedCamera", "sCMOS camera rendering the forward model"),
            ("EmulatedAotf", "AOTF with 405/488/560/640 nm lines"),
            ("EmulatedSlm", "ferroelectric SLM with per-colour SIM grating sets"),
            ("EmulatedRotator", "liquid-crystal polarization rotator"),
            ("EmulatedShutter", "excitation shutter"),
            ("EmulatedXYStage", "motorised XY stage (moves the emulated sample)"),
            ("EmulatedZStage", "focus drive (defocuses the emulated sample)"),
        )

    def connect_peripheral(self, device: object) -> None:
        """Attach a loaded peripheral to this hub's bench (called by the rig loader)."""
        if isinstance(device, _BenchDevice):
            device.attach(self.bench)
            if hasattr(device, "displayed"):
                self.bench.sources[type(device).__name__] = device

    def configure(self, config: EmulatorConfig | None, faults: FaultPlan | None) -> None:
        """Set the forward-model configuration and the fault plan."""
        self.bench.configure(config, faults)


class EmulatedCamera(_BenchDevice, CameraDevice):
    """16-bit sCMOS camera: internal or external (edge) trigger, ROI, binning, sequences."""

    def __init__(self) -> None:
        super().__init__()
        self._exposure_ms = 10.0
        self._binning = 1
        self._trigger_mode = "Internal"
        self._render_mode = "physics"
        # an externally triggered sCMOS waits for its next pulse as long as the rig needs
        # (time-lapse intervals); the rig's own deadlines detect failures much sooner
        self._trigger_timeout_ms = 3_600_000.0
        self._roi: tuple[int, int, int, int] | None = None
        # a real camera delivers a frame no sooner than its exposure time after the exposure
        # started: without this the emulator's frame rate (and every rate shown from it) is
        # the forward model's speed (175-640 frames/s at 10 ms), not the camera's
        self._hold_exposure = True
        self._exposure_seq = _Sequencer(self._apply_exposure)
        self.set_property_allowed_values("Binning", ("1", "2", "4"))
        self.set_property_limits("Exposure", (0.01, 10_000.0))
        self.set_property_sequence_max_length("Exposure", MAX_SEQUENCE)
        attribute_property(self, "TriggerMode", "_trigger_mode", str,
                           allowed_values=("Internal", "External"))
        # edge only: the camera's own exposure time per pulse (no level/bulb mode)
        _register(self, "TriggerActivation", str, lambda: "Edge", lambda _v: None,
                  allowed=("Edge",))
        attribute_property(self, "RenderMode", "_render_mode", str,
                           allowed_values=("physics", "fast", "replay"))
        attribute_property(self, "TriggerTimeout-ms", "_trigger_timeout_ms", float,
                           limits=(1.0, 86_400_000.0))
        _register(self, "PixelSizeNm", float, self._pixel_size_nm)
        _register(self, "HoldExposure", str, lambda: "Yes" if self._hold_exposure else "No",
                  self._set_hold_exposure, allowed=("Yes", "No"))

    def _set_hold_exposure(self, value: str) -> None:
        self._hold_exposure = str(value) == "Yes"

    def _pixel_size_nm(self) -> float:
        """Sample-plane pixel size after binning."""
        return float(self.bench.config.optics.pixel_size_nm) * self._binning

    # -- geometry
    def sensor_shape(self) -> tuple[int, int]:
        return self.bench.config.sensor_shape

    def shape(self) -> tuple[int, int]:
        _, _, w, h = self.get_roi()
        return h // self._binning, w // self._binning

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    def get_roi(self) -> tuple[int, int, int, int]:
        if self._roi is not None:
            return self._roi
        h, w = self.sensor_shape()
        return 0, 0, w, h

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        h, w = self.sensor_shape()
        if x < 0 or y < 0 or width <= 0 or height <= 0 or x + width > w or y + height > h:
            raise ValueError(f"ROI ({x}, {y}, {width}, {height}) outside the {w}x{h} sensor")
        self._roi = (x, y, width, height)

    def clear_roi(self) -> None:
        self._roi = None

    # -- standard properties (found by name by the CameraDevice base class)
    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    def _apply_exposure(self, value: PropertyValue) -> None:
        self._exposure_ms = float(value)

    def load_exposure_sequence(self, sequence: Sequence[float]) -> None:
        self._exposure_seq.load([float(v) for v in sequence])

    def start_exposure_sequence(self) -> None:
        self._exposure_seq.start()
        self.bench.register_sequence("camera-exposure", self._exposure_seq.advance)

    def stop_exposure_sequence(self) -> None:
        self.bench.unregister_sequence("camera-exposure")

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        self._binning = int(value)

    # -- acquisition
    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], Any], np.ndarray]
    ) -> Iterator[Mapping]:
        """Arm now (this trigger-line generation), then expose one frame per pulse."""
        return self._frames(n, get_buffer, self.bench.generation)

    def _frames(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
        generation: int,
    ) -> Iterator[Mapping]:
        bench = self.bench
        external = self._trigger_mode == "External"
        timeout_s = self._trigger_timeout_ms / 1000.0
        faults = bench.faults
        limit = n if n is not None else 2**62
        delivered = 0
        counter = 0
        while delivered < limit:
            trigger = -1
            if external:
                at = faults.camera_timeout_at
                if at is not None and bench.exposures >= at:
                    logger.warning("emulated camera hangs at exposure %d (fault)", at)
                    bench.wait_disarm(generation, timeout_s)
                    return
                got = bench.wait_trigger(generation, timeout_s)
                if got is None:
                    return
                trigger = got
                if faults.missed_trigger_at == trigger:
                    bench.snapshot(trigger, None, False, self._exposure_ms)
                    bench.trailing_edge(trigger)
                    continue
            exposure_start_s = time.monotonic()
            exposure = bench.exposures
            bench.exposures += 1
            dropped = faults.drops(exposure)
            record = bench.snapshot(trigger, exposure, not dropped, self._exposure_ms)
            # the exposure output: the pulse (external) or the free-running camera's own
            # exposure (camera-master) steps every running sequence at its end
            bench.trailing_edge(trigger)
            frame_number = counter
            counter += 1
            if dropped:
                continue
            frame = self._render(record, faults.saturates(exposure))
            if self._hold_exposure:  # read out no sooner than the exposure ends
                wait_s = exposure_start_s + record.exposure_ms / 1000.0 - time.monotonic()
                if wait_s > 0.0:
                    time.sleep(wait_s)
            buffer = get_buffer(frame.shape, np.uint16)
            buffer[:] = frame
            delivered += 1
            yield {
                "FrameCounter": str(frame_number),
                "Exposure-ms": f"{record.exposure_ms:.4f}",
                "TriggerMode": self._trigger_mode,
            }

    def _render_physics(self, record: DisplayRecord, power: float) -> np.ndarray:
        """Full forward model; a rotator off the grating's orientation lowers the fringe
        contrast (pattern blended with uniform light of the same mean)."""
        microscope = self.bench.microscope(record.mode)
        contrast = self.bench.polarization_contrast(record)
        stage = self._stage_um()
        if contrast > 1.0 - 1e-6:
            return microscope.render_frame(
                record.time_s, record.pattern, record.laser_nm, power, record.exposure_ms, stage
            )
        patterned, uniform = microscope.expected_photons(
            record.time_s, [record.pattern, None], record.laser_nm, power, record.exposure_ms,
            stage,
        )
        photons = contrast * patterned + (1.0 - contrast) * uniform
        return microscope.sensor.expose(photons, record.exposure_ms, microscope.noise)

    def _stage_um(self) -> tuple[float, float, float]:
        """Where the emulated stages hold the sample (x, y, z in µm; 0 without stages)."""
        shown: Shown = {}
        for name in ("EmulatedXYStage", "EmulatedZStage"):
            source = self.bench.sources.get(name)
            if source is not None:
                shown.update(source.displayed())
        return (float(shown.get("stage_x_um", 0.0)), float(shown.get("stage_y_um", 0.0)),
                float(shown.get("stage_z_um", 0.0)))

    def _render(self, record: DisplayRecord, saturate: bool) -> np.ndarray:
        """The camera image of what the light path showed for `record`."""
        power = record.power_pct if record.shutter_open else 0.0
        if self._render_mode == "replay":
            image = self.bench.replay_frame(record.mode, record.pattern, record.laser_nm, power,
                                            record.exposure_ms, record.time_s)
        elif self._render_mode == "fast":
            source = self.bench.fast_source(record.mode)
            image = source.frame(record.time_s, record.pattern, record.laser_nm, power,
                                 record.exposure_ms)
        else:
            image = self._render_physics(record, power)
        if saturate:
            image = np.minimum(
                image.astype(np.uint32) * _SATURATION_GAIN + _SATURATION_FLOOR_ADU, _ADU_MAX
            )
        x, y, w, h = self.get_roi()
        image = image[y : y + h, x : x + w]
        b = self._binning
        if b > 1:
            hb, wb = h // b, w // b
            summed = image[: hb * b, : wb * b].reshape(hb, b, wb, b).sum(axis=(1, 3))
            image = np.minimum(summed, _ADU_MAX)
        return np.ascontiguousarray(image, dtype=np.uint16)


class EmulatedAotf(_BenchDevice, GenericDevice):
    """AOTF: selects one laser line (sequenceable), per-line power %, blanking."""

    def __init__(self) -> None:
        super().__init__()
        self._line_nm = LASER_LINES_NM[1]
        self._power_pct = dict.fromkeys(LASER_LINES_NM, 0.0)
        self._blanking = "On"  # On: light only while the camera exposes
        self._line_seq = _Sequencer(self._set_line)
        _register(self, "Line", str, lambda: str(self._line_nm), self._set_line,
                  allowed=tuple(str(nm) for nm in LASER_LINES_NM),
                  sequencer=self._line_seq, sequence_key="aotf")
        for nm in LASER_LINES_NM:
            _register(self, f"Power-{nm}", float, self._power_getter(nm), self._power_setter(nm),
                      limits=(0.0, 100.0))
        attribute_property(self, "Blanking", "_blanking", str, allowed_values=("On", "Off"))

    def _power_getter(self, nm: int) -> Callable[[], float]:
        return lambda: self._power_pct[nm]

    def _power_setter(self, nm: int) -> Callable[[PropertyValue], None]:
        def set_power(value: PropertyValue) -> None:
            self._power_pct[nm] = float(value)

        return set_power

    def _set_line(self, value: PropertyValue) -> None:
        self._line_nm = int(value)

    def displayed(self) -> Shown:
        return {"laser_nm": self._line_nm, "power_pct": self._power_pct[self._line_nm]}


class EmulatedSlm(_BenchDevice, GenericDevice):
    """Ferroelectric SLM: running order of grating sets per colour; sequenceable index.

    PatternIndex: per line (405/488/560/640) blank, 9 linear-SIM, 25 nonlinear-SIM gratings
    (hardware.pattern_layout). SequencePosition: steps advanced since the sequence started.
    """

    def __init__(self) -> None:
        super().__init__()
        self._index = 0
        self._index_seq = _Sequencer(self._set_index)
        _register(self, "PatternIndex", int, lambda: self._index, self._set_index,
                  limits=(0, SLM_N_PATTERNS - 1), sequencer=self._index_seq, sequence_key="slm")
        _register(self, "SequencePosition", int, lambda: self._index_seq.position)

    def _set_index(self, value: PropertyValue) -> None:
        self._index = int(value)

    def displayed(self) -> Shown:
        return {"pattern_index": self._index}


class EmulatedRotator(_BenchDevice, GenericDevice):
    """Liquid-crystal polarization rotator: state 0 wide-field, 1+o SIM, 4+o nonlinear SIM."""

    def __init__(self) -> None:
        super().__init__()
        self._state = 0
        self._state_seq = _Sequencer(self._set_state)
        _register(self, "State", int, lambda: self._state, self._set_state,
                  limits=(0, ROTATOR_N_STATES - 1), sequencer=self._state_seq,
                  sequence_key="rotator")

    def _set_state(self, value: PropertyValue) -> None:
        self._state = int(value)

    def displayed(self) -> Shown:
        return {"rotator_state": self._state}


class EmulatedShutter(_BenchDevice, ShutterDevice):
    """Excitation shutter in front of the AOTF."""

    def __init__(self) -> None:
        super().__init__()
        self._open = False

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)

    def displayed(self) -> Shown:
        return {"shutter_open": self._open}


STAGE_XY_LIMIT_UM = 50_000.0  # travel of the emulated XY stage, either way from the origin
STAGE_Z_LIMIT_UM = 200.0  # travel of the emulated focus drive


class EmulatedXYStage(_BenchDevice, XYStageDevice):
    """Motorised XY stage: moving it moves the emulated sample in the image (physics render).

    Moves are immediate (never busy); positions outside the travel raise."""

    def __init__(self) -> None:
        super().__init__()
        self._x_um = 0.0
        self._y_um = 0.0

    def set_position_um(self, x: float, y: float) -> None:
        for axis, value in (("x", x), ("y", y)):
            if not abs(float(value)) <= STAGE_XY_LIMIT_UM:
                raise ValueError(f"XY stage: {axis}={value} µm is outside the travel "
                                 f"(±{STAGE_XY_LIMIT_UM:g} µm)")
        self._x_um, self._y_um = float(x), float(y)

    def get_position_um(self) -> tuple[float, float]:
        return self._x_um, self._y_um

    def set_origin_x(self) -> None:
        self._x_um = 0.0

    def set_origin_y(self) -> None:
        self._y_um = 0.0

    def home(self) -> None:
        self._x_um = self._y_um = 0.0

    def stop(self) -> None:
        """Moves are immediate: nothing to stop."""

    def busy(self) -> bool:
        return False

    def displayed(self) -> Shown:
        return {"stage_x_um": self._x_um, "stage_y_um": self._y_um}


class EmulatedZStage(_BenchDevice, StageDevice):
    """Focus drive: the emulated sample is in focus at z = 0; elsewhere it is defocused."""

    def __init__(self) -> None:
        super().__init__()
        self._z_um = 0.0

    def set_position_um(self, val: float) -> None:
        if not abs(float(val)) <= STAGE_Z_LIMIT_UM:
            raise ValueError(f"Z stage: z={val} µm is outside the travel "
                             f"(±{STAGE_Z_LIMIT_UM:g} µm)")
        self._z_um = float(val)

    def get_position_um(self) -> float:
        return self._z_um

    def set_origin(self) -> None:
        self._z_um = 0.0

    def home(self) -> None:
        self._z_um = 0.0

    def stop(self) -> None:
        """Moves are immediate: nothing to stop."""

    def busy(self) -> bool:
        return False

    def displayed(self) -> Shown:
        return {"stage_z_um": self._z_um}
