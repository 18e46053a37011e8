"""Conformance checks per device role: the same checks run on the emulator and on a real rig.

Each check takes a `Rig`, exercises one behaviour of one role and raises `ConformanceFailure`
(or a RigError) when the device does not behave as the role promises. Used by
`tests/hardware/test_conformance.py` and by `livesim rig check --config X.cfg`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.errors import CapabilityError, InvalidSettingError, RigError
from hardware.pattern_layout import slm_n_patterns
from hardware.rig import Rig
from hardware.roles import TriggerActivation, TriggerMode, match_allowed
from hardware.sequencing import ChannelSpec, SequencePlan

_TIMEOUT_S = 20.0
_CHECK_POWER_PCT = 1.0  # the power check's setting: low, whatever line comes first


class ConformanceFailure(AssertionError):  # noqa: N818 (an assertion, read as "failure")
    """A device does not behave as its role promises."""


class NotApplicable(Exception):  # noqa: N818 (a verdict, not an error)
    """The rig has no device for this role (its role map says so): the check is skipped."""


@dataclass(frozen=True)
class Check:
    """One conformance check: the role it covers, its name, and the function."""

    role: str
    name: str
    run: Callable[[Rig], None]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceFailure(message)


def _expect_raises(error: type[Exception], action: Callable[[], object], what: str) -> None:
    try:
        action()
    except error:
        return
    raise ConformanceFailure(f"{what}: expected {error.__name__}, nothing raised")


# ------------------------------------------------------------------ camera
def camera_exposure(rig: Rig) -> None:
    before = rig.camera.exposure_ms
    try:
        rig.camera.set_exposure_ms(12.5)
        _expect(math.isclose(rig.camera.exposure_ms, 12.5, rel_tol=1e-3),
                f"exposure reads {rig.camera.exposure_ms} ms after setting 12.5 ms")
        _expect_raises(InvalidSettingError, lambda: rig.camera.set_exposure_ms(0.0),
                       "exposure 0 ms")
    finally:
        rig.camera.set_exposure_ms(before)


def camera_roi(rig: Rig) -> None:
    _, _, w, h = rig.camera.roi
    full = rig.camera.shape
    try:
        rig.camera.set_roi(0, 0, w // 2, h // 2)
        b = rig.camera.binning
        _expect(rig.camera.shape == (h // 2 // b, w // 2 // b),
                f"shape {rig.camera.shape} after ROI {(0, 0, w // 2, h // 2)}")
        frame = rig.snap(1, _TIMEOUT_S)[0]
        _expect(frame.shape == rig.camera.shape, f"ROI frame {frame.shape} != {rig.camera.shape}")
        _expect_raises(InvalidSettingError, lambda: rig.camera.set_roi(0, 0, 0, 4), "empty ROI")
    finally:
        rig.camera.clear_roi()
    _expect(rig.camera.shape == full, f"shape {rig.camera.shape} after clear_roi, was {full}")


def camera_binning(rig: Rig) -> None:
    allowed = rig.backend.allowed_values(rig.camera.label, "Binning")
    if "2" not in allowed:
        raise CapabilityError(f"camera {rig.camera.label!r} has no binning 2 ({allowed})")
    h, w = rig.camera.shape
    try:
        rig.camera.set_binning(2)
        _expect(rig.camera.shape == (h // 2, w // 2), f"binned shape {rig.camera.shape}")
    finally:
        rig.camera.set_binning(1)


def camera_trigger_modes(rig: Rig) -> None:
    rig.camera.set_trigger(TriggerMode.EXTERNAL, TriggerActivation.EDGE)
    _expect(rig.camera.trigger_mode is TriggerMode.EXTERNAL, "external trigger did not stick")
    rig.camera.set_trigger(TriggerMode.INTERNAL)
    _expect(rig.camera.trigger_mode is TriggerMode.INTERNAL, "internal trigger did not stick")


def camera_sequence(rig: Rig) -> None:
    frames = rig.snap(3, _TIMEOUT_S)
    _expect(len(frames) == 3, f"{len(frames)} frames of 3")
    for frame in frames:
        _expect(frame.dtype == np.uint16 and frame.shape == rig.camera.shape,
                f"frame {frame.dtype} {frame.shape}, expected uint16 {rig.camera.shape}")
    _expect(rig.camera.pixel_size_nm > 0, f"pixel size {rig.camera.pixel_size_nm} nm")


# ------------------------------------------------------------------ AOTF
def aotf_lines(rig: Rig) -> None:
    lines = rig.aotf.lines_nm
    wanted = rig.roles.laser_lines_nm
    _expect(bool(set(lines) & set(wanted)), f"AOTF lines {lines} miss {wanted}")
    for nm in lines:
        rig.aotf.set_line(nm)
        _expect(rig.aotf.line_nm == nm, f"line reads {rig.aotf.line_nm} after setting {nm}")
    _expect_raises(CapabilityError, lambda: rig.aotf.set_line(1234), "1234 nm line")
    _expect(rig.aotf.sequence_max_length(rig.aotf.line_property) >= 50,
            "AOTF line must be sequenceable for >= 50 steps (2 colours x 25 patterns)")


def aotf_power(rig: Rig) -> None:
    nm = rig.aotf.lines_nm[0]
    before = rig.aotf.power_pct(nm)
    try:
        rig.aotf.set_power(nm, _CHECK_POWER_PCT)
        _expect(math.isclose(rig.aotf.power_pct(nm), _CHECK_POWER_PCT, abs_tol=0.01),
                f"{nm} nm power reads {rig.aotf.power_pct(nm)} after {_CHECK_POWER_PCT}")
        _expect_raises(InvalidSettingError, lambda: rig.aotf.set_power(nm, 120.0), "120 % power")
        rig.aotf.set_power(nm, 0.0)  # blanking off lets the light through: dark first
        rig.aotf.set_blanking(False)
        _expect(not rig.aotf.blanking, "blanking still on after switching it off")
        rig.aotf.set_blanking(True)
        _expect(rig.aotf.blanking, "blanking off after switching it on")
    finally:
        rig.aotf.set_power(nm, before)


# ------------------------------------------------------------------ SLM
def slm_patterns(rig: Rig) -> None:
    n_patterns = slm_n_patterns(rig.roles.laser_lines_nm)
    for index in (0, 1, 10, n_patterns - 1):
        rig.slm.show(index)
        _expect(rig.slm.pattern_index == index, f"SLM shows {rig.slm.pattern_index}, not {index}")
    _expect_raises(InvalidSettingError, lambda: rig.slm.show(n_patterns), "index past end")
    _expect(rig.slm.sequence_max_length(rig.slm.pattern_property) >= 50,
            "SLM pattern index must be sequenceable for >= 50 steps")


# ------------------------------------------------------------------ rotator, shutter
def rotator_states(rig: Rig) -> None:
    if rig.rotator is None:
        raise NotApplicable("this rig has no polarization rotator in its role map")
    for state in (0, 1, 2, 3):
        rig.rotator.set_state(state)
        _expect(rig.rotator.state == state, f"rotator in {rig.rotator.state}, not {state}")
    _expect(rig.rotator.sequence_max_length(rig.rotator.state_property) >= 50,
            "rotator state must be sequenceable for >= 50 steps")


def shutter_open_close(rig: Rig) -> None:
    if rig.shutter is None:
        raise NotApplicable("this rig has no shutter in its role map")
    rig.shutter.set_open(True)
    _expect(rig.shutter.is_open, "shutter closed after opening")
    rig.shutter.set_open(False)
    _expect(not rig.shutter.is_open, "shutter open after closing")


# ------------------------------------------------------------------ whole sequence
def triggered_sim_sequence(rig: Rig) -> None:
    """Two time points as one armed stream; the frame order is checked by the hardware's own
    readbacks inside `Rig.stream` (camera frame counter, pulse count, SLM position)."""
    nm = rig.aotf.lines_nm[0]
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=nm, power_pct=_CHECK_POWER_PCT,
                                              exposure_ms=5),))
    frames = list(rig.stream(plan, [0, 1], _TIMEOUT_S))
    _expect(len(frames) == 2 * plan.n_frames, f"{len(frames)} frames of {2 * plan.n_frames}")
    sequences = [f.tag.sequence for f in frames]
    _expect(sequences == list(range(sequences[0], sequences[0] + len(frames))),
            f"sequence {sequences}")
    readbacks = [name for name, present in (
        ("camera frame counter", rig.roles.camera_frame_counter_key is not None),
        ("trigger count", rig.trigger is not None and rig.trigger.triggers_fired is not None),
        ("SLM position", rig.slm.sequence_position is not None)) if present]
    if not readbacks:
        raise NotApplicable("frames arrived, but no frame counter, trigger count or SLM "
                            "position can confirm their order on this rig")


CHECKS: tuple[Check, ...] = (
    Check("camera", "exposure", camera_exposure),
    Check("camera", "roi", camera_roi),
    Check("camera", "binning", camera_binning),
    Check("camera", "trigger modes", camera_trigger_modes),
    Check("camera", "sequence acquisition", camera_sequence),
    Check("aotf", "lines", aotf_lines),
    Check("aotf", "power and blanking", aotf_power),
    Check("slm", "patterns", slm_patterns),
    Check("rotator", "states", rotator_states),
    Check("shutter", "open/close", shutter_open_close),
    Check("rig", "triggered SIM sequence", triggered_sim_sequence),
)


# ------------------------------------------------------------------ dry run (reads only)
def dry_camera(rig: Rig) -> None:
    r, cam = rig.roles, rig.camera
    prop = cam._require(r.camera_trigger_mode_property, "trigger mode")
    allowed = rig.backend.allowed_values(cam.label, prop)
    for value in (r.camera_trigger_internal, r.camera_trigger_external):
        _expect(match_allowed(value, allowed) is not None,
                f"camera {cam.label!r} {prop!r}: no value {value!r} (allowed: {allowed})")
    act = r.camera_trigger_activation_property
    if act is not None:
        act_allowed = rig.backend.allowed_values(cam.label, cam._require(act, "activation"))
        _expect(match_allowed(r.camera_trigger_edge, act_allowed) is not None,
                f"camera {cam.label!r} {act!r}: no value {r.camera_trigger_edge!r} "
                f"(allowed: {act_allowed})")


def dry_lasers(rig: Rig) -> None:
    lines = rig.aotf.lines_nm
    for nm in rig.roles.laser_lines_nm:
        _expect(nm in lines, f"{nm} nm (laser_lines_nm) cannot be selected on "
                             f"{rig.aotf.label!r} (lines: {lines})")
        device, prop = rig.aotf.power_target(nm)
        _expect(device in rig.backend.device_labels()
                and rig.backend.has_property(device, prop),
                f"{nm} nm power: no property {prop!r} on device {device!r}")


def dry_sequences(rig: Rig) -> None:
    slm = rig.slm
    slm._require(slm.pattern_property, "pattern")
    n_patterns = slm_n_patterns(rig.roles.laser_lines_nm)
    limits = rig.backend.property_limits(slm.label, slm.pattern_property)
    _expect(limits is None or limits[1] >= n_patterns - 1,
            f"SLM {slm.label!r} {slm.pattern_property!r} limits {limits} do not reach the "
            f"running order's {n_patterns} images")
    for role, prop in ((slm, slm.pattern_property), (rig.aotf, rig.aotf.line_property)):
        _expect(role.sequence_max_length(prop) >= 9,
                f"{role.kind} {role.label!r} {prop!r} cannot run a 9-step sequence")
    if rig.roles.timing == "daq-master":
        _expect(rig.trigger is not None and rig.trigger.has(rig.roles.trigger_fire_property),
                f"daq-master: trigger device {rig.roles.trigger!r} has no "
                f"{rig.roles.trigger_fire_property!r}")


DRY_CHECKS: tuple[Check, ...] = (
    Check("camera", "trigger names (dry)", dry_camera),
    Check("aotf", "laser lines and power (dry)", dry_lasers),
    Check("rig", "sequences and timing (dry)", dry_sequences),
)

_WRITES = frozenset({
    "set_property", "load_sequence", "start_sequence", "stop_sequence", "set_exposure_ms",
    "set_roi", "clear_roi", "start_camera_sequence", "stop_camera_sequence", "set_buffer_mb",
    "set_shutter_open", "set_xy_position_um", "set_z_position_um"})


class ReadOnlyBackend:
    """A backend that reads through and refuses every write (a dry run moves nothing)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in _WRITES:
            def refuse(*args: object) -> None:
                self.refused.append(f"{name}{args}")
                raise RigError(f"dry run: refused {name}{args}")
            return refuse
        return getattr(self._backend, name)


def run_checks(rig: Rig, dry_run: bool = False) -> list[tuple[Check, str, str]]:
    """Run every check: (check, "ok" | "skip" | "FAIL", message). dry_run: only the reading
    checks, through a backend that refuses any write (no property set, no laser on)."""
    if dry_run:
        rig = Rig(ReadOnlyBackend(rig.backend), rig.roles)  # type: ignore[arg-type]
    results: list[tuple[Check, str, str]] = []
    for check in DRY_CHECKS if dry_run else CHECKS:
        try:
            check.run(rig)
        except NotApplicable as e:
            results.append((check, "skip", str(e)))
        except (ConformanceFailure, RigError, ValueError) as e:
            results.append((check, "FAIL", f"{type(e).__name__}: {e}"))
        else:
            results.append((check, "ok", ""))
    return results
