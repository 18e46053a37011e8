"""The rig: one Micro-Manager core, its device roles, and hardware-sequenced SIM time points.

A real rig loads Micro-Manager C++ adapters from its .cfg; the emulator's .cfg loads Python
devices (`sim_emulator.rig`). Same code path for both; nothing here imports the emulator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardware.core_adapter import CoreBackend, UniCoreBackend
from hardware.errors import (
    AcquisitionTimeout,
    CapabilityError,
    ConfigError,
    RigError,
    SequenceMismatch,
)
from hardware.frames import FrameTag, TaggedFrame
from hardware.roles import (
    Aotf,
    Camera,
    RoleMap,
    Rotator,
    SequencedRole,
    Shutter,
    Slm,
    TriggerActivation,
    TriggerMode,
    TriggerSource,
)
from hardware.sequencing import SequencePlan, SequenceStep

logger = logging.getLogger(__name__)

_ADU_MAX = 65535
_MIN_BUFFER_MB = 64
_MAX_BUFFER_MB = 4096  # frames are read as they arrive: more only hides a stalled reader
_BUFFER_MARGIN = 1.5
_PULSE_MARGIN_MS = 1.0


class Rig:
    """A SIM rig on a Micro-Manager core: roles plus triggered, tagged acquisition."""

    def __init__(self, backend: CoreBackend, roles: RoleMap | None = None) -> None:
        self.backend = backend
        self.roles = roles or RoleMap()
        r = self.roles
        self.camera = Camera(backend, r.camera, r)
        self.aotf = Aotf(backend, r.aotf, r)
        self.slm = Slm(backend, r.slm, r)
        self.rotator = Rotator(backend, r.rotator, r) if r.rotator else None
        self.shutter = Shutter(backend, r.shutter, r) if r.shutter else None
        self.trigger = TriggerSource(backend, r.trigger, r) if r.trigger else None
        self._sequence = 0
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, path: str | Path, roles: RoleMap | None = None, *, find_adapters: bool = True
    ) -> Rig:
        """Load a Micro-Manager .cfg (C++ adapters and/or `#py` Python devices).

        find_adapters=False skips the search for a Micro-Manager installation (Python-only
        configurations such as the emulator).
        """
        backend = UniCoreBackend(find_adapters=find_adapters)
        backend.load_config(path)
        return cls(backend, roles)

    @classmethod
    def from_studio(cls, core: Any = None, roles: RoleMap | None = None) -> Rig:
        """Wrap the core of a running Micro-Manager Studio (pycromanager bridge, livesim[mm]).

        `core` is a pycromanager `Core()`; None connects to the running Studio. Not tested
        against a live Studio here (see docs/hardware.md).
        """
        from hardware.bridge_backend import BridgeCoreBackend, connect_studio_core

        return cls(BridgeCoreBackend(core if core is not None else connect_studio_core()), roles)

    def close(self) -> None:
        """Stop acquisition and release the devices."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ acquisition
    def snap(self, n_frames: int = 1, timeout_s: float = 10.0, *, shutter_open: bool = True
             ) -> list[np.ndarray]:
        """`n_frames` free-running (internal trigger) frames with the current device settings.

        shutter_open=False keeps the excitation shutter closed (dark frames).

        For calibration (dark/flat series) and previews; raises AcquisitionTimeout naming how
        many frames arrived if the camera stalls, SequenceMismatch if it dropped one.
        """
        if n_frames < 1 or timeout_s <= 0:
            raise ValueError(f"n_frames={n_frames} must be >= 1, timeout_s={timeout_s} > 0")
        self.camera.set_trigger(TriggerMode.INTERNAL)
        if self.shutter is not None:
            self.shutter.set_open(shutter_open)
        frames: list[np.ndarray] = []
        counter = _FrameCounter(self.roles, self.camera.label)
        try:
            self.size_buffer(n_frames)
            self.backend.start_camera_sequence(n_frames)
            deadline = time.monotonic() + timeout_s
            while len(frames) < n_frames:
                item = self.backend.next_frame(deadline)
                if item is None:
                    raise AcquisitionTimeout(
                        f"snap: expected {n_frames} frames within {timeout_s} s, "
                        f"{len(frames)} arrived from camera {self.camera.label!r}"
                    )
                image, meta = item
                counter.check(meta, -1, None)
                frames.append(image)
        finally:
            self.backend.stop_camera_sequence()
            if self.shutter is not None:
                self.shutter.set_open(False)
        return frames

    def move_stage(self, x_um: float | None = None, y_um: float | None = None,
                   z_um: float | None = None, tolerance_um: float = 0.1
                   ) -> tuple[float, float, float]:
        """Move the XY stage and/or focus drive, wait for them, return where they report.

        CapabilityError when the rig has no such stage; RigError when a stage refuses the
        target or settles farther than ``tolerance_um`` from it (the core's own bounded wait).
        """
        xy_label, z_label = self.backend.stage_labels()
        wants_xy = x_um is not None or y_um is not None
        if wants_xy and not xy_label:
            raise CapabilityError("this rig has no XY stage (set Core,XYStage in its .cfg)")
        if z_um is not None and not z_label:
            raise CapabilityError("this rig has no focus drive (set Core,Focus in its .cfg)")
        try:
            if wants_xy:
                x_now, y_now = self.backend.xy_position_um()
                target_xy = (x_now if x_um is None else x_um, y_now if y_um is None else y_um)
                self.backend.set_xy_position_um(*target_xy)
            if z_um is not None:
                self.backend.set_z_position_um(z_um)
            for label, moved in ((xy_label, wants_xy), (z_label, z_um is not None)):
                if moved:
                    self.backend.wait_for_device(label)
            x, y = self.backend.xy_position_um() if xy_label else (float("nan"),) * 2
            z = self.backend.z_position_um() if z_label else float("nan")
        except CapabilityError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:  # the adapter refused or timed out
            raise RigError(f"stage move to x={x_um}, y={y_um}, z={z_um} µm failed: "
                           f"{exc}") from exc
        for axis, target, got in (("x", x_um, x), ("y", y_um, y), ("z", z_um, z)):
            if target is not None and not abs(got - target) <= tolerance_um:
                raise RigError(f"stage {axis} settled at {got:.3f} µm, target {target:.3f} µm "
                               f"(tolerance {tolerance_um} µm)")
        return x, y, z

    def check_plan(self, plan: SequencePlan) -> None:
        """Raise CapabilityError if this rig cannot run `plan` as one triggered sequence."""
        n = plan.n_frames
        for channel in plan.channels:
            if channel.laser_nm not in self.aotf.lines_nm:
                raise CapabilityError(
                    f"plan asks for {channel.laser_nm} nm; AOTF {self.aotf.label!r} has "
                    f"{self.aotf.lines_nm}"
                )
            if channel.laser_nm not in self.roles.laser_lines_nm:
                raise CapabilityError(
                    f"plan asks for {channel.laser_nm} nm; the SLM running order has grating "
                    f"sets for {self.roles.laser_lines_nm} only (role map laser_lines_nm)"
                )
        powers: dict[int, set[float]] = {}
        for channel in plan.channels:
            powers.setdefault(channel.laser_nm, set()).add(channel.power_pct)
        for nm, values in powers.items():
            if len(values) > 1:
                raise CapabilityError(
                    f"plan sets {nm} nm to several powers {sorted(values)}; line power is not "
                    "sequenced on this rig"
                )
        self.slm._require_sequence(self.slm.pattern_property, n)
        if len({c.laser_nm for c in plan.channels}) > 1:
            self.aotf._require_sequence(self.aotf.line_property, n)
        if self.rotator is not None and plan.mode != "wf":
            self.rotator._require_sequence(self.rotator.state_property, n)
        if len({c.exposure_ms for c in plan.channels}) > 1:
            self.camera._require_sequence("Exposure", n)

    def _arm(
        self, plan: SequencePlan, steps: list[SequenceStep],
        started: list[tuple[SequencedRole, str]],
    ) -> None:
        """Load and start the device sequences, appending each (role, property) to `started`
        as it starts (so the caller can stop exactly those, even after a failure)."""
        for channel in plan.channels:
            self.aotf.set_power(channel.laser_nm, channel.power_pct)
        sequences: list[tuple[SequencedRole, str, list[str]]] = [
            (self.slm, self.slm.pattern_property, [str(s.slm_index) for s in steps]),
        ]
        lines = [str(s.laser_nm) for s in steps]
        if len(set(lines)) > 1:
            sequences.append((self.aotf, self.aotf.line_property,
                              [self.aotf.line_value(s.laser_nm) for s in steps]))
        else:
            self.aotf.set_line(steps[0].laser_nm)
        if self.rotator is not None and plan.mode != "wf":
            sequences.append(
                (self.rotator, self.rotator.state_property, [str(s.rotator_state) for s in steps])
            )
        elif self.rotator is not None:
            self.rotator.set_state(steps[0].rotator_state)
        exposures = [s.exposure_ms for s in steps]
        if len(set(exposures)) > 1:
            sequences.append((self.camera, "Exposure", [str(e) for e in exposures]))
        else:
            self.camera.set_exposure_ms(exposures[0])
        for role, prop, values in sequences:
            role.load_sequence(prop, values)
        for role, prop, _ in sequences:
            role.start_sequence(prop)
            started.append((role, prop))
        if self.roles.timing == "daq-master" and self.trigger is not None:
            self.trigger.set_width_ms(self.pulse_width_ms(plan))
            self.trigger.set_period_ms(self.pulse_period_ms(plan))
        if self.roles.timing == "camera-master":
            # the camera free-runs; its exposure output steps the sequenced devices
            self.camera.set_trigger(TriggerMode.INTERNAL)
        else:
            self.camera.set_trigger(TriggerMode.EXTERNAL, TriggerActivation.EDGE)
        if self.shutter is not None:
            self.shutter.set_open(True)
        time.sleep(self.roles.device_settle_ms / 1000.0)  # the devices' first states settle

    def pulse_width_ms(self, plan: SequencePlan) -> float:
        """daq-master pulse width: the devices step on its trailing edge, after the longest
        exposure and (rolling shutter) the readout of every row."""
        return max(c.exposure_ms for c in plan.channels) + self.roles.camera_readout_ms

    def pulse_period_ms(self, plan: SequencePlan) -> float:
        """daq-master pulse period: pulse width, then the devices' settle time."""
        return self.pulse_width_ms(plan) + self.roles.device_settle_ms + _PULSE_MARGIN_MS

    def size_buffer(self, n_frames: int) -> int:
        """Make the camera's circular buffer hold `n_frames` frames of the current size (with
        margin), so a plan's time point never overflows it while it is read; returns MB."""
        height, width = self.camera.shape
        frame_mb = height * width * 2 / 2**20
        size_mb = min(_MAX_BUFFER_MB,
                      max(_MIN_BUFFER_MB, int(frame_mb * n_frames * _BUFFER_MARGIN) + 1))
        self.backend.set_buffer_mb(size_mb)
        return size_mb

    def stream_time_point(
        self, plan: SequencePlan, time_point: int, timeout_s: float = 10.0
    ) -> Iterator[TaggedFrame]:
        """Acquire one time point as one triggered sequence, yielding frames as they arrive.

        Raises AcquisitionTimeout if frames stop arriving within `timeout_s` (for the whole
        time point), SequenceMismatch when the camera's frame counter skips (dropped frame),
        the camera missed triggers, or the SLM ends at a different running-order position.
        """
        return self.stream(plan, [time_point], timeout_s)

    def acquire_time_point(
        self, plan: SequencePlan, time_point: int, timeout_s: float = 10.0
    ) -> list[TaggedFrame]:
        """All frames of one time point (see `stream_time_point`)."""
        return list(self.stream_time_point(plan, time_point, timeout_s))

    def stream(
        self, plan: SequencePlan, time_points: Sequence[int], timeout_s: float = 10.0
    ) -> Iterator[TaggedFrame]:
        """Frames of many time points: devices armed once, one burst per time point.

        daq-master: the SLM/AOTF/rotator sequences cycle, the camera stays armed for all
        frames, and each time point's `plan.n_frames` pulses go out when the consumer asks for
        its first frame (so the consumer paces the time points). camera-master: the camera
        free-runs `plan.n_frames` exposures per time point, its exposure output stepping the
        devices. Every time point is checked as in `stream_time_point`; `timeout_s` applies
        per time point. A time point whose frames cannot all be shown to carry the right
        pattern raises SequenceMismatch (its frames must not be kept).
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not time_points:
            return
        self.check_plan(plan)
        steps = plan.steps(self.roles.laser_lines_nm)
        n = len(steps)
        camera_master = self.roles.timing == "camera-master"
        started: list[tuple[SequencedRole, str]] = []
        try:
            self._arm(plan, steps, started)
            # the reader drains each burst before the next is fired: room for two bursts
            self.size_buffer(n * min(2, len(time_points)))
            counter = _FrameCounter(self.roles, self.camera.label)
            if not camera_master:
                self.backend.start_camera_sequence(n * len(time_points))
            # with no pulse count to read, an extra pulse shows only as an extra frame: wait
            # two pulse periods after a burst's last frame for it before the next burst
            blind = not camera_master and (self.trigger is None
                                           or self.trigger.triggers_fired is None)
            quiet_s = 2 * self.pulse_period_ms(plan) / 1000.0 if blind else 0.0
            last_frame_s = time.monotonic()
            for k, time_point in enumerate(time_points):
                if k > 0 and quiet_s > 0:
                    time.sleep(max(0.0, last_frame_s + quiet_s - time.monotonic()))
                if self.backend.pending_frames():
                    raise SequenceMismatch(
                        f"time point {time_point}: {self.backend.pending_frames()} frame(s) "
                        "arrived after the previous time point ended (an extra trigger?): "
                        "the patterns are out of step with the frames")
                fired_before = self.trigger.triggers_fired if self.trigger else None
                if camera_master:
                    counter.restart()
                    self.backend.start_camera_sequence(n)
                else:
                    assert self.trigger is not None
                    self.trigger.fire(n)
                deadline = time.monotonic() + timeout_s
                for i, step in enumerate(steps):
                    item = self.backend.next_frame(deadline)
                    if item is None:
                        raise self._missing_frames(time_point, n, i, timeout_s, fired_before)
                    image, meta = item
                    counter.check(meta, time_point, step)
                    last_frame_s = time.monotonic()
                    if i == n - 1:
                        self._check_triggers(time_point, n, fired_before)
                        # the SLM stepped on the last pulse, before this frame was read out: a
                        # wrong position now means this time point's tags are wrong
                        self._check_slm_position(time_point, n * (k + 1))
                    yield TaggedFrame(image, self._tag(step, time_point, image,
                                                       counter.timestamp_s(meta)))
                if camera_master:
                    self.backend.stop_camera_sequence()
        finally:
            self._disarm(started)

    def _check_triggers(self, time_point: int, n: int, fired_before: int | None) -> None:
        """SequenceMismatch when a readable trigger count says more pulses went out than n."""
        fired = self.trigger.triggers_fired if self.trigger else None
        if fired is not None and fired_before is not None and fired - fired_before > n:
            raise SequenceMismatch(
                f"time point {time_point}: {fired - fired_before} triggers went out for {n} "
                "frames: the devices stepped past the frames")

    def _tag(self, step: SequenceStep, time_point: int, image: np.ndarray,
             camera_time_s: float | None = None) -> FrameTag:
        tag = FrameTag(
            time_point=time_point,
            channel=step.channel,
            laser_nm=step.laser_nm,
            orientation=step.orientation,
            phase=step.phase,
            pattern_index=step.pattern,
            sequence=self._sequence,
            timestamp_s=(time.monotonic() - self._t0 if camera_time_s is None
                         else camera_time_s),
            exposure_ms=step.exposure_ms,
            saturated_px=_saturated_px(image),
        )
        self._sequence += 1
        if tag.saturated_px:
            logger.warning("frame %d (t=%d): %d saturated pixels", tag.sequence, time_point,
                           tag.saturated_px)
        return tag

    def _missing_frames(
        self, time_point: int, n: int, arrived: int, timeout_s: float, fired_before: int | None
    ) -> Exception:
        """The error for a time point whose frames stopped short.

        The frames that did arrive are trusted (AcquisitionTimeout) only when the rig can show
        that every one of them matches a pulse the devices stepped on: a readable trigger count
        equal to the frames that arrived (daq-master: the pulses stopped, not the camera), or
        a hardware frame counter on a free-running camera (camera-master). Otherwise a trigger
        the camera missed cannot be told from one that never went out, and the frames after it
        would carry the next pattern's label: SequenceMismatch (none of them is kept).
        """
        fired = self.trigger.triggers_fired if self.trigger else None
        if self.roles.timing == "camera-master":
            verified = self.roles.camera_frame_counter_key is not None
        else:
            verified = fired is not None and fired_before is not None and (
                fired - fired_before == arrived)
        state = (
            "stopped responding"
            if self.backend.camera_running()
            else "ended its sequence early; see the log for the camera's error"
        )
        if not verified and arrived > 0:  # with no frame, no label can be wrong
            if fired is not None and fired_before is not None:
                return SequenceMismatch(
                    f"time point {time_point}: {fired - fired_before} triggers fired but only "
                    f"{arrived} of {n} frames arrived within {timeout_s} s: the camera missed "
                    f"{fired - fired_before - arrived} trigger(s)")
            return SequenceMismatch(
                f"time point {time_point}: only {arrived} of {n} frames arrived within "
                f"{timeout_s} s (camera {self.camera.label!r} {state}) and no trigger count "
                "or frame counter shows which pulses the camera saw: the frames' pattern "
                "labels cannot be verified")
        return AcquisitionTimeout(
            f"time point {time_point}: expected {n} frames within {timeout_s} s, {arrived} "
            f"arrived (camera {self.camera.label!r} {state})"
        )

    def _check_slm_position(self, time_point: int, n: int) -> None:
        position = self.slm.sequence_position
        if position is not None and position != n:
            raise SequenceMismatch(
                f"time point {time_point}: SLM {self.slm.label!r} should have advanced {n} "
                f"patterns, it reports {position}: patterns out of sync with the camera"
            )

    def _disarm(self, started: list[tuple[SequencedRole, str]]) -> None:
        if self.trigger is not None:
            self.trigger.stop()
        self.backend.stop_camera_sequence()
        for role, prop in started:
            role.stop_sequence(prop)
        if self.shutter is not None:
            self.shutter.set_open(False)


def _saturated_px(image: np.ndarray) -> int:
    """Pixels at full scale (the max first: counting only pays when something saturates)."""
    if image.size == 0 or int(image.max()) < _ADU_MAX:
        return 0
    return int(np.count_nonzero(image == _ADU_MAX))


class _FrameCounter:
    """Checks the camera's own frame counter: present when the role map names it, starting at
    its base (or anywhere when the base is None) and advancing by one per frame."""

    def __init__(self, roles: RoleMap, camera: str) -> None:
        self.key = roles.camera_frame_counter_key
        self.base = roles.camera_frame_counter_base
        self.timestamp_key = roles.camera_timestamp_key
        self.camera = camera
        self.restart()

    def restart(self) -> None:
        """A new camera sequence: counting starts again."""
        self.first: int | None = None
        self.index = 0

    def check(self, meta: dict[str, str], time_point: int, step: SequenceStep | None) -> None:
        index, self.index = self.index, self.index + 1
        if self.key is None:
            return
        if self.key not in meta:
            raise ConfigError(
                f"camera {self.camera!r}: frame metadata has no frame counter "
                f"{self.key!r} (role map camera_frame_counter_key; keys: {sorted(meta)})")
        try:
            value = int(float(meta[self.key]))
        except ValueError as exc:
            raise ConfigError(f"camera {self.camera!r}: frame counter {self.key!r} = "
                              f"{meta[self.key]!r} is not a number") from exc
        if self.first is None:
            self.first = value if self.base is None else self.base
        expected = self.first + index
        if value != expected:
            where = "snap" if step is None else f"time point {time_point}"
            which = "" if step is None else f" (channel {step.channel}, pattern {step.pattern})"
            raise SequenceMismatch(
                f"{where}: expected camera frame {expected}{which}, frame {value} arrived: "
                f"{value - expected} frame(s) dropped by the camera")

    def timestamp_s(self, meta: dict[str, str]) -> float | None:
        """The camera's own timestamp of a frame in s (None when the role map names none)."""
        if self.timestamp_key is None:
            return None
        if self.timestamp_key not in meta:
            raise ConfigError(f"camera {self.camera!r}: frame metadata has no timestamp "
                              f"{self.timestamp_key!r} (role map camera_timestamp_key)")
        return float(meta[self.timestamp_key]) / 1000.0
