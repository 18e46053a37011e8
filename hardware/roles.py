"""Device roles of a SIM rig: typed, validated access to the camera, AOTF, SLM, rotator, shutter.

Each public method validates (value, range, capability) and names the device, property and
value on failure before it acts through the core.
Which Micro-Manager device/property plays which role is a `RoleMap` (TOML-loadable).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hardware.core_adapter import CoreBackend
from hardware.errors import CapabilityError, ConfigError, InvalidSettingError
from hardware.pattern_layout import LASER_LINES_NM, slm_index, slm_n_patterns
from settings_file import load_settings, read_toml, validate_settings

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
Timing = Literal["daq-master", "camera-master"]


class RoleMap(BaseModel):
    """Device labels, property names and values that play each role (defaults: the emulator).

    Real adapters name things their own way (Hamamatsu DCAM: `TRIGGER SOURCE` = `EXTERNAL`;
    PVCAM: `TriggerMode` = `Edge Trigger`, frame counter `PVCAM-FrameNr` counting from 1);
    shipped profiles (`hardware/profiles/*.toml`, see `RoleMap.load`) hold those names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera: str = "Camera"
    camera_trigger_mode_property: str = "TriggerMode"
    camera_trigger_internal: str = "Internal"
    camera_trigger_external: str = "External"
    camera_trigger_activation_property: str | None = "TriggerActivation"
    camera_trigger_edge: str = "Edge"
    camera_trigger_level: str = "Level"
    # metadata key of the camera's own frame counter (None: the adapter has none) and the
    # value it gives the first frame of a sequence (None: any, only deltas are checked)
    camera_frame_counter_key: str | None = "FrameCounter"
    camera_frame_counter_base: int | None = 0
    camera_timestamp_key: str | None = None  # metadata key of the camera's timestamp (ms)
    camera_pixel_size_property: str | None = "PixelSizeNm"
    aotf: str = "AOTF"
    aotf_line_property: str = "Line"
    # value of the line property that selects each laser line (empty: the wavelength itself,
    # e.g. a TTL bit mask on a trigger controller: {561 = "2"})
    aotf_line_values: dict[int, str] = Field(default_factory=dict)
    # device holding each line's power (None: the aotf device); `{nm}`, `{n}` (1-based place
    # in laser_lines_nm) are filled in, e.g. "TS_DAC0{n}"
    aotf_power_device: str | None = None
    aotf_power_property: str = "Power-{nm}"
    aotf_power_full_scale: float = Field(default=100.0, gt=0.0)  # property value at 100 %
    aotf_blanking_property: str | None = "Blanking"
    # laser lines with a grating set in the SLM running order, in running-order order
    laser_lines_nm: tuple[int, ...] = Field(default=LASER_LINES_NM, min_length=1, max_length=8)
    slm: str = "SLM"
    slm_pattern_property: str = "PatternIndex"
    slm_position_property: str | None = "SequencePosition"
    rotator: str | None = "Rotator"
    rotator_state_property: str = "State"
    shutter: str | None = "Shutter"
    # who clocks a time point: a trigger controller firing pulses (daq-master) or the
    # camera's exposure output advancing the sequenced devices while it free-runs
    timing: Timing = "daq-master"
    trigger: str | None = "Emulator"
    trigger_fire_property: str | None = "FireTriggers"
    trigger_count_property: str | None = "TriggersFired"
    trigger_line_property: str | None = "TriggerLine"
    # daq-master: property setting the pulse period (ms); the rig sets it to the longest
    # exposure + device_settle_ms + a margin, so every device settles before the next exposure
    trigger_period_property: str | None = None
    # property setting the pulse width (ms): the devices step on the trailing edge, so the rig
    # makes it exposure + camera_readout_ms (a rolling shutter's rows all done)
    trigger_pulse_width_property: str | None = None
    device_settle_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    camera_readout_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_none(cls, data: object) -> object:
        """TOML has no null: "" for an optional name means "this rig has none"."""
        if isinstance(data, dict):
            return {k: (None if v == "" and k in _OPTIONAL_NAMES else v)
                    for k, v in data.items()}
        return data

    @field_validator("laser_lines_nm")
    @classmethod
    def _distinct_lines(cls, lines: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(lines)) != len(lines) or any(not 300 <= nm <= 1100 for nm in lines):
            raise ValueError(f"laser lines must be distinct wavelengths in nm, got {lines}")
        return lines

    @model_validator(mode="after")
    def _daq_master_has_trigger(self) -> RoleMap:
        if self.timing == "daq-master" and (self.trigger is None
                                             or self.trigger_fire_property is None):
            raise ValueError("timing 'daq-master' needs a trigger device and its "
                             "trigger_fire_property (or use timing = 'camera-master')")
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> RoleMap:
        """Load a role map; errors name the file, field and value."""
        return load_settings(cls, path, "role map", table="roles", error=ConfigError)

    @classmethod
    def load(cls, specs: str | Path | Sequence[str | Path]) -> RoleMap:
        """Merge shipped profiles (by name, e.g. "hamamatsu-dcam") and TOML role-map files,
        later ones overriding earlier ones; "a+b" names several in one string."""
        items: list[str | Path] = (
            [specs] if isinstance(specs, (str, Path)) else list(specs))
        parts: list[str | Path] = []
        for item in items:
            parts.extend(str(item).split("+") if isinstance(item, str) else [item])
        merged: dict[str, object] = {}
        for part in parts:
            merged.update(_role_table(part))
        return validate_settings(cls, merged, " + ".join(str(p) for p in parts) + " (role map)",
                                 error=ConfigError)


_OPTIONAL_NAMES = frozenset(
    name for name, field in RoleMap.model_fields.items()
    if field.annotation in (str | None, int | None))


def profile_names() -> tuple[str, ...]:
    """Names of the shipped role-map profiles (`hardware/profiles/<name>.toml`)."""
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))


def _role_table(spec: str | Path) -> dict[str, object]:
    """The `[roles]` table of a profile name or TOML file; ConfigError naming it if neither."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PROFILES_DIR / f"{spec}.toml"
        if not path.is_file():
            raise ConfigError(f"role map {str(spec)!r} is neither a file nor a shipped profile "
                              f"(profiles: {', '.join(profile_names())})")
    data = read_toml(path, "role map", ConfigError)
    table = data.get("roles", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [roles] must be a table")
    return dict(table)


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

    def _count(self, prop: str | None) -> int | None:
        """An integer readback ("3", "3.0"); None when the role map or the device has none."""
        if prop is None or not self.has(prop):
            return None
        return int(float(self.backend.get_property(self.label, prop)))

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


SequencedRole = _Role  # a role whose device properties may run hardware sequences


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
        self.backend.set_exposure_ms(exposure_ms)

    @property
    def binning(self) -> int:
        """Binning factor, whichever way the adapter spells it ("2", "2.0", "2x2")."""
        return _binning_factor(self.backend.get_property(self.label, "Binning"))

    def set_binning(self, binning: int) -> None:
        self._require("Binning", "binning")
        allowed = self.backend.allowed_values(self.label, "Binning")
        spelled = next((v for v in allowed if _binning_factor(v) == int(binning)), None)
        if allowed and spelled is None:
            raise InvalidSettingError(f"camera {self.label!r} property 'Binning': value "
                                      f"{binning!r} not in {allowed}")
        self._do_set("Binning", spelled or str(int(binning)))

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
            self.backend.set_roi(x, y, width, height)
        except (RuntimeError, ValueError) as e:
            raise InvalidSettingError(
                f"camera {self.label!r}: ROI {(x, y, width, height)}: {e}"
            ) from e

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
        wanted_mode = (self.roles.camera_trigger_external if mode is TriggerMode.EXTERNAL
                       else self.roles.camera_trigger_internal)
        modes = self.backend.allowed_values(self.label, mode_prop)
        value = match_allowed(wanted_mode, modes)
        if value is None:
            raise CapabilityError(f"camera {self.label!r} property {mode_prop!r} has no trigger "
                                  f"mode {wanted_mode!r} (allowed: {modes})")
        act_prop = self.roles.camera_trigger_activation_property
        wanted = (self.roles.camera_trigger_edge if activation is TriggerActivation.EDGE
                  else self.roles.camera_trigger_level)
        if mode is TriggerMode.EXTERNAL:
            if self.has(act_prop):
                assert act_prop is not None
                allowed = self.backend.allowed_values(self.label, act_prop)
                if allowed and match_allowed(wanted, allowed) is None:
                    raise CapabilityError(
                        f"camera {self.label!r} has no {wanted} trigger activation "
                        f"(supports {allowed})"
                    )
            elif activation is not TriggerActivation.EDGE:
                raise CapabilityError(
                    f"camera {self.label!r}: only edge triggering is known for this camera"
                )
        self._do_set(mode_prop, value)
        external = value.casefold() == self.roles.camera_trigger_external.casefold()
        if act_prop is not None and self.has(act_prop) and external:
            allowed = self.backend.allowed_values(self.label, act_prop)
            self._do_set(act_prop, match_allowed(wanted, allowed) or wanted)

    @property
    def trigger_mode(self) -> TriggerMode:
        value = self.backend.get_property(self.label, self.roles.camera_trigger_mode_property)
        external = value.casefold() == self.roles.camera_trigger_external.casefold()
        return TriggerMode.EXTERNAL if external else TriggerMode.INTERNAL


class Aotf(_Role):
    """AOTF / laser lines: selected line (sequenceable), power % per line, blanking."""

    kind = "AOTF"

    @property
    def line_property(self) -> str:
        return self.roles.aotf_line_property

    @property
    def lines_nm(self) -> tuple[int, ...]:
        """Laser lines this device can select (from the role map's line values if given)."""
        values = self.roles.aotf_line_values
        if values:
            return tuple(nm for nm, v in values.items() if self._value_ok(v))
        return tuple(int(float(v))
                     for v in self.backend.allowed_values(self.label, self.line_property))

    def _value_ok(self, value: str) -> bool:
        try:
            self._check_value(self.line_property, value)
        except InvalidSettingError:
            return False
        return True

    def line_value(self, laser_nm: int) -> str:
        """The line property's value that selects `laser_nm` (e.g. a TTL bit mask)."""
        self._check_line(laser_nm)
        return self.roles.aotf_line_values.get(laser_nm, str(laser_nm))

    @property
    def line_nm(self) -> int:
        value = self.backend.get_property(self.label, self.line_property)
        for nm, v in self.roles.aotf_line_values.items():
            if _same_value(v, value):
                return nm
        return int(float(value))

    def set_line(self, laser_nm: int) -> None:
        self._do_set(self.line_property, self.line_value(laser_nm))

    def power_target(self, laser_nm: int) -> tuple[str, str]:
        """(device, property) holding `laser_nm`'s power; `{nm}` and `{n}` (1-based place of
        the line in `laser_lines_nm`) in the role map's names are filled in."""
        lines = self.roles.laser_lines_nm
        n = lines.index(laser_nm) + 1 if laser_nm in lines else 0
        device = (self.roles.aotf_power_device or self.label).format(nm=laser_nm, n=n)
        return device, self.roles.aotf_power_property.format(nm=laser_nm, n=n)

    def _check_line(self, laser_nm: int) -> None:
        if laser_nm not in self.lines_nm:
            raise CapabilityError(
                f"AOTF {self.label!r} has no {laser_nm} nm line (lines: {self.lines_nm})"
            )

    def power_pct(self, laser_nm: int) -> float:
        self._check_line(laser_nm)
        device, prop = self.power_target(laser_nm)
        value = float(self.backend.get_property(device, prop))
        return value * 100.0 / self.roles.aotf_power_full_scale

    def set_power(self, laser_nm: int, power_pct: float) -> None:
        self._check_line(laser_nm)
        device, prop = self.power_target(laser_nm)
        if device not in self.backend.device_labels() or not self.backend.has_property(
                device, prop):
            raise CapabilityError(f"AOTF {self.label!r}: power device {device!r} has no "
                                  f"property {prop!r} ({laser_nm} nm line power)")
        if not 0.0 <= power_pct <= 100.0:
            raise InvalidSettingError(
                f"AOTF {self.label!r}: {laser_nm} nm power {power_pct}% not 0-100"
            )
        value = power_pct * self.roles.aotf_power_full_scale / 100.0
        limits = self.backend.property_limits(device, prop)
        if limits is not None and not limits[0] <= value <= limits[1]:
            raise InvalidSettingError(f"AOTF {self.label!r}: {device!r} property {prop!r}: "
                                      f"value {value!r} outside {limits}")
        self.backend.set_property(device, prop, float(value))

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
        n_patterns = slm_n_patterns(self.roles.laser_lines_nm)
        if not 0 <= index < n_patterns:
            raise InvalidSettingError(
                f"SLM {self.label!r}: pattern index {index} not in 0..{n_patterns - 1}"
            )
        self._check_value(self.pattern_property, index)
        self._do_set(self.pattern_property, index)

    def show_blank(self, laser_nm: int) -> None:
        """Show the blank (uniform, wide-field) image of `laser_nm`'s set, e.g. for flats.

        After a sequence the SLM keeps showing a grating (its running order wraps to the
        first one), as a real SLM does."""
        self.show(slm_index(laser_nm, "wf", 0, self.roles.laser_lines_nm))

    @property
    def sequence_position(self) -> int | None:
        """Steps the running sequence advanced since it started (None if not reported)."""
        return self._count(self.roles.slm_position_property)


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
        self.backend.set_shutter_open(self.label, bool(is_open))


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

    def set_period_ms(self, period_ms: float) -> None:
        """Set the pulse period where the role map names its property (else the device's)."""
        self._set_timing(self.roles.trigger_period_property, period_ms, "pulse period")

    def set_width_ms(self, width_ms: float) -> None:
        """Set the pulse width where the role map names its property (else the device's)."""
        self._set_timing(self.roles.trigger_pulse_width_property, width_ms, "pulse width")

    def _set_timing(self, prop: str | None, value_ms: float, why: str) -> None:
        if prop is None:
            return
        self._require(prop, why)
        self._check_value(prop, value_ms)
        self._do_set(prop, float(value_ms))

    def stop(self) -> None:
        """Stop the trigger line (pending pulses are dropped) if the device can."""
        prop = self.roles.trigger_line_property
        if self.has(prop):
            assert prop is not None
            self._do_set(prop, "Stopped")

    @property
    def triggers_fired(self) -> int | None:
        return self._count(self.roles.trigger_count_property)


def _binning_factor(value: str) -> int:
    """ "2", "2.0" and AndorSDK3's "2x2" -> 2."""
    text = value.strip().lower().split("x")[0]
    try:
        return int(float(text))
    except ValueError as exc:
        raise InvalidSettingError(f"binning value {value!r} is not understood") from exc


def _same_value(a: str, b: str) -> bool:
    """Adapter values compared tolerantly: case and surrounding blanks ignored, numbers as
    numbers ("1" == "1.0000")."""
    if a.strip().casefold() == b.strip().casefold():
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def match_allowed(wanted: str, allowed: Sequence[str]) -> str | None:
    """The adapter's own spelling of `wanted` among `allowed` (`wanted` if none are listed)."""
    if not allowed:
        return wanted
    for value in allowed:
        if _same_value(value, wanted):
            return value
    return None
