"""The optical bench the emulated devices share: trigger line, display log, forward model.

One `OpticalBench` per emulated rig (owned by its hub device, never global). The trigger
controller fires pulses; on each pulse the camera exposes what the SLM, AOTF, rotator and
shutter show *at that moment*, then every running property sequence advances one step (the
pulse's trailing edge), as on a rig whose devices are wired to one trigger line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hardware.pattern_layout import LASER_LINES_NM, PatternMode, decode_slm_index
from sim_emulator.devices_faults import FaultPlan

if TYPE_CHECKING:
    from sim_emulator.fast_path import FastFrameSource
    from sim_emulator.microscope import EmulatorConfig, Microscope

logger = logging.getLogger(__name__)

DISPLAY_LOG_MAX = 200_000  # records kept; older ones are dropped in long runs
REPLAY_BANK = 8  # frames per setting in the replay render mode
_REPLAY_SETTINGS = 64  # settings kept before the replay banks are rebuilt

# what a device shows now, by name: numbers (int and bool included) and names
Shown = dict[str, float | str]


class DisplaySource(Protocol):
    """A device whose current output the camera sees (SLM, AOTF, rotator, shutter)."""

    def displayed(self) -> Shown: ...


@dataclass(frozen=True, slots=True)
class DisplayRecord:
    """What the light path showed for one camera trigger (the emulator's ground truth)."""

    trigger: int
    exposure: int | None  # camera exposure number, None if the camera missed the trigger
    delivered: bool
    pattern_index: int
    grating_nm: int
    mode: PatternMode
    pattern: int | None
    laser_nm: int
    power_pct: float
    rotator_state: int
    shutter_open: bool
    exposure_ms: float
    time_s: float


class OpticalBench:
    """Shared state of one emulated rig: forward model, faults, trigger line and display log."""

    def __init__(self) -> None:
        self._config: EmulatorConfig | None = None
        self._microscopes: dict[str, Microscope] = {}
        self._fast_sources: dict[str, FastFrameSource] = {}
        self._replay: dict[tuple[Any, ...], list[np.ndarray]] = {}
        self._replay_count = 0
        self.faults = FaultPlan()
        self._line = threading.Condition()
        self._pending = 0
        self._generation = 0
        self.triggers_fired = 0
        self.exposures = 0
        self._advancers: dict[str, Callable[[int], None]] = {}
        self.sources: dict[str, DisplaySource] = {}
        self.display_log: list[DisplayRecord] = []
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------ configuration
    def configure(self, config: EmulatorConfig | None, faults: FaultPlan | None) -> None:
        """Set the forward model (None = defaults) and the faults to inject; clears the log."""
        if config is not None and (config.sensor.roi is not None or config.sensor.binning != 1):
            raise ValueError(
                f"emulator sensor roi={config.sensor.roi}, binning={config.sensor.binning}: "
                "set ROI and binning on the camera device, keep the sensor model full-frame"
            )
        self._config = config
        self._microscopes.clear()
        self._fast_sources.clear()
        self._replay.clear()
        self.faults = faults or FaultPlan()
        self.display_log.clear()
        self.triggers_fired = 0
        self.exposures = 0

    @property
    def config(self) -> EmulatorConfig:
        """The emulator configuration (built with defaults on first use)."""
        if self._config is None:
            from sim_emulator.microscope import EmulatorConfig

            self._config = EmulatorConfig()
        return self._config

    def microscope(self, mode: PatternMode) -> Microscope:
        """The forward model for SLM gratings of `mode` (blank frames use the 'sim' one)."""
        key = "sim" if mode == "blank" else mode
        if key not in self._microscopes:
            from sim_emulator.microscope import Microscope

            self._microscopes[key] = Microscope(self._config_for(key))
        return self._microscopes[key]

    def fast_source(self, mode: PatternMode) -> FastFrameSource:
        """The pre-rendered frame source for throughput runs (FastFrameSource)."""
        key = "sim" if mode == "blank" else mode
        if key not in self._fast_sources:
            from sim_emulator.fast_path import FastFrameSource

            self._fast_sources[key] = FastFrameSource(self.microscope(key))
        return self._fast_sources[key]

    def replay_frame(
        self, mode: PatternMode, pattern: int | None, laser_nm: int, power_pct: float,
        exposure_ms: float, time_s: float,
    ) -> np.ndarray:
        """A frame from a small bank of fast-path frames per setting, cycled (noise repeats
        every REPLAY_BANK frames of one pattern): transport throughput only, not for data."""
        key = (mode, pattern, laser_nm, power_pct, exposure_ms)
        bank = self._replay.get(key)
        if bank is None:
            if len(self._replay) > _REPLAY_SETTINGS:
                self._replay.clear()
            source = self.fast_source(mode)
            bank = [
                source.frame(time_s + i * 0.25, pattern, laser_nm, power_pct, exposure_ms)
                for i in range(REPLAY_BANK)
            ]
            self._replay[key] = bank
        self._replay_count += 1
        return bank[self._replay_count % REPLAY_BANK]

    def rotator_angle_rad(self, state: int) -> float:
        """Polarization angle of rotator `state`: matched to that state's SIM orientation
        (0: wide-field, 1+o: linear SIM, 4+o: nonlinear SIM)."""
        if state <= 0:
            return 0.0
        if state < 4:
            return float(self.microscope("sim").patterns.angles_rad()[state - 1])
        return float(self.microscope("nlsim").patterns.angles_rad()[state - 4])

    def polarization_contrast(self, record: DisplayRecord) -> float:
        """Fringe contrast left when the rotator's polarization is off the grating's
        orientation by d: cos^2 d (the s-polarized share of the two interfering beams)."""
        if record.pattern is None or record.mode == "blank":
            return 1.0
        patterns = self.microscope(record.mode).patterns
        orientation, _ = patterns.orientation_phase(record.pattern)
        delta = float(patterns.angles_rad()[orientation]) - self.rotator_angle_rad(
            record.rotator_state
        )
        return float(np.cos(delta) ** 2)

    def _config_for(self, mode: str) -> EmulatorConfig:
        config = self.config
        if config.patterns.mode == mode:
            return config
        patterns = type(config.patterns).model_validate(
            {**config.patterns.model_dump(), "mode": mode, "n_orientations": None, "n_phases": None}
        )
        return type(config).model_validate({**config.model_dump(), "patterns": patterns})

    def clock_s(self) -> float:
        """Seconds since the bench was built (the sample's clock)."""
        return time.perf_counter() - self._t0

    # ------------------------------------------------------------ trigger line
    def register_sequence(self, key: str, advance: Callable[[int], None]) -> None:
        """A started property sequence: `advance(steps)` runs on each trigger's trailing edge."""
        with self._line:
            self._advancers[key] = advance

    def unregister_sequence(self, key: str) -> None:
        with self._line:
            self._advancers.pop(key, None)

    @property
    def generation(self) -> int:
        """Bumped by every `disarm`: a camera armed in an older generation stops waiting."""
        return self._generation

    def fire(self, n_triggers: int) -> None:
        """Queue `n_triggers` pulses; each is released when the camera is ready for it."""
        if n_triggers < 0:
            raise ValueError(f"cannot fire {n_triggers} triggers")
        with self._line:
            self._pending += n_triggers
            self._line.notify_all()

    def disarm(self) -> None:
        """Stop the trigger line: pending pulses are dropped, a waiting camera returns at once."""
        with self._line:
            self._generation += 1
            self._pending = 0
            self._line.notify_all()

    def wait_trigger(self, generation: int, timeout_s: float) -> int | None:
        """Block until a pulse arrives; its run-wide index, or None (disarmed or timed out)."""
        deadline = time.monotonic() + timeout_s
        with self._line:
            while self._pending == 0:
                remaining = deadline - time.monotonic()
                if self._generation != generation or remaining <= 0:
                    return None
                self._line.wait(remaining)
            self._pending -= 1
            index = self.triggers_fired
            self.triggers_fired += 1
            return index

    def wait_disarm(self, generation: int, timeout_s: float) -> None:
        """Block (a hung camera) until the line is disarmed or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        with self._line:
            while self._generation == generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._line.wait(remaining)

    def trailing_edge(self, trigger: int) -> None:
        """Advance every running sequence after pulse `trigger` (the SLM twice when out of sync)."""
        with self._line:
            advancers = list(self._advancers.items())
        for key, advance in advancers:
            steps = 2 if key == "slm" and self.faults.pattern_out_of_sync_at == trigger else 1
            advance(steps)

    def snapshot(
        self, trigger: int, exposure: int | None, delivered: bool, exposure_ms: float
    ) -> DisplayRecord:
        """Record (in the display log) and return what the light path shows right now."""
        shown: Shown = {}
        for source in self.sources.values():
            shown.update(source.displayed())
        index = int(shown.get("pattern_index", 0))
        grating_nm, mode, pattern = decode_slm_index(index)
        line = int(shown.get("laser_nm", LASER_LINES_NM[1]))
        record = DisplayRecord(
            trigger=trigger,
            exposure=exposure,
            delivered=delivered,
            pattern_index=index,
            grating_nm=grating_nm,
            mode=mode,
            pattern=pattern,
            laser_nm=line,
            power_pct=float(shown.get("power_pct", 0.0)),
            rotator_state=int(shown.get("rotator_state", 0)),
            shutter_open=bool(shown.get("shutter_open", True)),
            exposure_ms=exposure_ms,
            time_s=self.clock_s(),
        )
        self.display_log.append(record)
        if len(self.display_log) > DISPLAY_LOG_MAX:
            # long runs: keep the newest records (each carries its run-wide trigger index)
            del self.display_log[: len(self.display_log) - DISPLAY_LOG_MAX // 2]
        return record
