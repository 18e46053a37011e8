"""Device roles of a SIM rig: typed, validated access to the camera, AOTF, SLM, rotator, shutter.

Template methods: each public method validates (value, range, capability) and names the
device, property and value on failure; the `_do_x` method then acts through the core.
Which Micro-Manager device/property plays which role is a `RoleMap` (TOML-loadable).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from hardware.core_adapter import CoreBackend
from hardware.errors import CapabilityError, ConfigError, InvalidSettingError
from hardware.pattern_layout import SLM_N_PATTERNS, slm_index
from settings_file import load_settings


class RoleMap(BaseModel):
    """Device labels and property names that play each role (defaults: the emulator .cfg)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera: str = "Camera"
    camera_trigger_mode_property: str = "TriggerMode"
    camera_trigger_internal: str = "Internal"
    camera_trigger_external: str = "External"
    camera_trigger_activation_property: str | None = "TriggerActivation"
    camera_frame_counter_key: str | None = "FrameCounter"
    camera_pixel_size_property: str | None = "PixelSizeNm"
    aotf: str = "AOTF"
    aotf_line_property: str = "Line"
    aotf_power_property: str = "Power-{nm}"
    aotf_blanking_property: str | None = "Blanking"
    slm: str = "SLM"
    slm_pattern_property: str = "PatternIndex"
    slm_position_property: str | None = "SequencePosition"
    rotator: str | None = "Rotator"
    rotator_state_property: str = "State"
    shutter: str | None = "Shutter"
    trigger: str = "Emulator"
    trigger_fire_property: str = "FireTriggers"
    trigger_count_property: str | None = "TriggersFired"
    trigger_line_property: str | None = "TriggerLine"

    @classmethod
    def from_toml(cls, path: str | Path) -> RoleMap:
        """Load a role map; errors name the file, field and value."""
        return load_settings(cls, path, "role map", table="roles", error=ConfigError)


class TriggerMode(StrEnum):
    """Who starts an exposure: the camera's own clock or a pulse on its trigger input."""

    INTERNAL = "internal"
    EXTERNAL = "external"


class TriggerActivation(StrEnum):
    """How a pulse exposes: edge (camera's exposure time) or level (pulse width, bulb)."""

    EDGE = "Edge"
    LEVEL = "Level"


class _Role:
    """One device of the rig seen through the core, with property checks naming the device."""

    kind = "device"

    def __init__(self, backend: CoreBackend, label: str, roles: RoleMap) -> None:
        self.backend = backend
        self.label = label
        self.roles = roles
        if label not in backend.device_labels():
            raise ConfigError(
                f"{self.kind} device {label!r} is not loaded (loaded: {backend.device_labels()})"
            )

    def has(self, prop: str | None) -> bool:
        return prop is not None and self.backend.has_property(self.label, prop)

    def _require(self, prop: str | None, why: str) -> str:
        if prop is None or not self.backend.has_property(self.label, prop):
            raise CapabilityError(f"{self.kind} {self.label!r} has no property {prop!r} ({why})")
        return prop

    def _check_value(self, prop: str, value: str | float) -> None:
        allowed = self.backend.allowed_values(self.label, prop)
        if allowed and str(value) not in allowed:
            raise InvalidSettingError(
                f"{self.kind} {self.label!r} property {prop!r}: value {value!r} not in {allowed}"
            )
        limits = self.backend.property_limits(self.label, prop)
        if limits is not None and not limits[0] <= float(value) <= limits[1]:
            raise InvalidSettingError(
                f"{self.kind} {self.label!r} property {prop!r}: value {value!r} outside {limits}"
            )

    def _do_set(self, prop: str, value: str | float | int) -> None:
        """Act: write one (already validated) property value to the device."""
        self.backend.set_property(self.label, prop, value)

    def sequence_max_length(self, prop: str) -> int:
        """0 if `prop` cannot be hardware-sequenced, else the longest sequence it accepts."""
        return self.backend.sequence_max_length(self.label, prop)

    def _require_sequence(self, prop: str, length: int) -> None:
        max_len = self.sequence_max_length(prop)
        if max_len == 0:
            raise CapabilityError(
                f"{self.kind} {self.label!r} property {prop!r} is not sequenceable"
            )
        if length > max_len:
            raise CapabilityError(
                f"{self.kind} {self.label!r} property {prop!r}: sequence of {length} exceeds "
                f"the device's maximum {max_len}"
            )

    def load_sequence(self, prop: str, values: list[str]) -> None:
        """Load a hardware sequence after checking capability, length and every value."""
        self._require_sequence(prop, len(values))
        for v in set(values):
            self._check_value(prop, v)
        self.backend.load_sequence(self.label, prop, values)

    def start_sequence(self, prop: str) -> None:
        self.backend.start_sequence(self.label, prop)

    def stop_sequence(self, prop: str) -> None:
        self.backend.stop_sequence(self.label, prop)


class Camera(_Role):
    """The camera: exposure, ROI, binning, trigger mode x activation, pixel size."""

    kind = "camera"

    @property
    def exposure_ms(self) -> float:
        return self.backend.get_exposure_ms()

    def set_exposure_ms(self, exposure_ms: float) -> None:
        if not exposure_ms > 0:
            raise InvalidSettingError(
                f"camera {self.label!r}: exposure {exposure_ms} ms must be > 0"
            )
        self._check_value("Exposure", exposure_ms)
        self._do_set_exposure_ms(exposure_ms)

    def _do_set_exposure_ms(self, exposure_ms: float) -> None:
        self.backend.set_exposure_ms(exposure_ms)

    @property
    def binning(self) -> int:
        return int(float(self.backend.get_property(self.label, "Binning")))

    def set_binning(self, binning: int) -> None:
        self._require("Binning", "binning")
        self._check_value("Binning", binning)
        self._do_set("Binning", str(int(binning)))

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) in sensor pixels."""
        return self.backend.get_roi()

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        if min(x, y) < 0 or min(width, height) <= 0:
            raise InvalidSettingError(
                f"camera {self.label!r}: ROI {(x, y, width, height)} is empty"
            )
        try:
            self._do_set_roi(x, y, width, height)
        except (RuntimeError, ValueError) as e:
            raise InvalidSettingError(
                f"camera {self.label!r}: ROI {(x, y, width, height)}: {e}"
            ) from e

    def _do_set_roi(self, x: int, y: int, width: int, height: int) -> None:
        self.backend.set_roi(x, y, width, height)

    def clear_roi(self) -> None:
        self.backend.clear_roi()

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the frames the camera delivers now."""
        return self.backend.image_shape()

    @property
    def pixel_size_nm(self) -> float:
        """Sample-plane pixel size (after binning), from the camera or the core's pixel config."""
        prop = self.roles.camera_pixel_size_property
        if self.has(prop):
            assert prop is not None
            return float(self.backend.get_property(self.label, prop))
        size_um = self.backend.pixel_size_um()
        if size_um <= 0:
            raise CapabilityError(f"camera {self.label!r}: no pixel size configured in the .cfg")
        return size_um * 1000.0

    def set_trigger(
        self, mode: TriggerMode, activation: TriggerActivation = TriggerActivation.EDGE
    ) -> None:
        """Choose trigger mode x activation; CapabilityError if the camera lacks the pair."""
        mode_prop = self._require(self.roles.camera_trigger_mode_property, "trigger mode")
        value = (
            self.roles.camera_trigger_external
            if mode is TriggerMode.EXTERNAL
            else self.roles.camera_trigger_internal
        )
        if value not in self.backend.allowed_values(self.label, mode_prop):
            raise CapabilityError(f"camera {self.label!r} has no trigger mode {value!r}")
        act_prop = self.roles.camera_trigger_activation_property
        if mode is TriggerMode.EXTERNAL:
            if self.has(act_prop):
                assert act_prop is not None
                allowed = self.backend.allowed_values(self.label, act_prop)
                if allowed and activation.value not in allowed:
                    raise CapabilityError(
                        f"camera {self.label!r} has no {activation.value} trigger activation "
                        f"(supports {allowed})"
                    )
            elif activation is not TriggerActivation.EDGE:
                raise CapabilityError(
                    f"camera {self.label!r}: only edge triggering is known for this camera"
                )
        self._do_set_trigger(mode_prop, value, act_prop, activation)

    def _do_set_trigger(
        self, mode_prop: str, value: str, act_prop: str | None, activation: TriggerActivation
    ) -> None:
        self._do_set(mode_prop, value)
        external = value == self.roles.camera_trigger_external
        if act_prop is not None and self.has(act_prop) and external:
            self._do_set(act_prop, activation.value)

    @property
    def trigger_mode(self) -> TriggerMode:
        value = self.backend.get_property(self.label, self.roles.camera_trigger_mode_property)
        external = value == self.roles.camera_trigger_external
        return TriggerMode.EXTERNAL if external else TriggerMode.INTERNAL

    @property
    def exposure_sequence_max_length(self) -> int:
        return self.sequence_max_length("Exposure")


class Aotf(_Role):
    """AOTF / laser lines: selected line (sequenceable), power % per line, blanking."""

    kind = "AOTF"

    @property
    def line_property(self) -> str:
        return self.roles.aotf_line_property

    @property
    def lines_nm(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.backend.allowed_values(self.label, self.line_property))

    @property
    def line_nm(self) -> int:
        return int(float(self.backend.get_property(self.label, self.line_property)))

    def set_line(self, laser_nm: int) -> None:
        self._check_line(laser_nm)
        self._do_set(self.line_property, str(laser_nm))

    def _check_line(self, laser_nm: int) -> None:
        if laser_nm not in self.lines_nm:
            raise CapabilityError(
                f"AOTF {self.label!r} has no {laser_nm} nm line (lines: {self.lines_nm})"
            )

    def power_pct(self, laser_nm: int) -> float:
        self._check_line(laser_nm)
        prop = self.roles.aotf_power_property.format(nm=laser_nm)
        return float(self.backend.get_property(self.label, prop))

    def set_power(self, laser_nm: int, power_pct: float) -> None:
        self._check_line(laser_nm)
        prop = self._require(self.roles.aotf_power_property.format(nm=laser_nm), "line power")
        if not 0.0 <= power_pct <= 100.0:
            raise InvalidSettingError(
                f"AOTF {self.label!r}: {laser_nm} nm power {power_pct}% not 0-100"
            )
        self._check_value(prop, power_pct)
        self._do_set(prop, float(power_pct))

    @property
    def blanking(self) -> bool:
        prop = self._require(self.roles.aotf_blanking_property, "blanking")
        return self.backend.get_property(self.label, prop) == "On"

    def set_blanking(self, on: bool) -> None:
        prop = self._require(self.roles.aotf_blanking_property, "blanking")
        self._do_set(prop, "On" if on else "Off")


class Slm(_Role):
    """SLM: the running-order pattern index (sequenceable, advances on each trigger)."""

    kind = "SLM"

    @property
    def pattern_property(self) -> str:
        return self.roles.slm_pattern_property

    @property
    def pattern_index(self) -> int:
        return int(float(self.backend.get_property(self.label, self.pattern_property)))

    def show(self, index: int) -> None:
        if not 0 <= index < SLM_N_PATTERNS:
            raise InvalidSettingError(
                f"SLM {self.label!r}: pattern index {index} not in 0..{SLM_N_PATTERNS - 1}"
            )
        self._check_value(self.pattern_property, index)
        self._do_set(self.pattern_property, index)

    def show_blank(self, laser_nm: int) -> None:
        """Show the blank (uniform, wide-field) image of `laser_nm`'s set, e.g. for flats.

        After a sequence the SLM keeps showing a grating (its running order wraps to the
        first one), as a real SLM does."""
        self.show(slm_index(laser_nm, "wf", 0))

    @property
    def sequence_position(self) -> int | None:
        """Steps the running sequence advanced since it started (None if not reported)."""
        prop = self.roles.slm_position_property
        if not self.has(prop):
            return None
        assert prop is not None
        return int(float(self.backend.get_property(self.label, prop)))


class Rotator(_Role):
    """Liquid-crystal polarization rotator: one state per SIM orientation (sequenceable)."""

    kind = "rotator"

    @property
    def state_property(self) -> str:
        return self.roles.rotator_state_property

    @property
    def state(self) -> int:
        return int(float(self.backend.get_property(self.label, self.state_property)))

    def set_state(self, state: int) -> None:
        self._check_value(self.state_property, state)
        self._do_set(self.state_property, int(state))


class Shutter(_Role):
    """Excitation shutter."""

    kind = "shutter"

    @property
    def is_open(self) -> bool:
        return self.backend.shutter_open(self.label)

    def set_open(self, is_open: bool) -> None:
        self._do_set_open(bool(is_open))

    def _do_set_open(self, is_open: bool) -> None:
        self.backend.set_shutter_open(self.label, is_open)


class TriggerSource(_Role):
    """The device that pulses the trigger line (a controller, DAQ or the SLM's output)."""

    kind = "trigger source"

    def fire(self, n_triggers: int) -> None:
        """Emit `n_triggers` pulses (each released when the camera is ready)."""
        if n_triggers < 1:
            raise InvalidSettingError(
                f"trigger source {self.label!r}: cannot fire {n_triggers} pulses"
            )
        prop = self._require(self.roles.trigger_fire_property, "firing pulses")
        self._do_set(prop, n_triggers)

    def stop(self) -> None:
        """Stop the trigger line (pending pulses are dropped) if the device can."""
        prop = self.roles.trigger_line_property
        if self.has(prop):
            assert prop is not None
            self._do_set(prop, "Stopped")

    @property
    def triggers_fired(self) -> int | None:
        prop = self.roles.trigger_count_property
        if not self.has(prop):
            return None
        assert prop is not None
        return int(float(self.backend.get_property(self.label, prop)))
