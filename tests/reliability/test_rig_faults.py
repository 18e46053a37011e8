"""Emulated rig faults through the whole recording path (rig -> engine -> session -> HDF5).

Each fault is injected by the emulator's FaultPlan into a real pymmcore-plus core; the run file
is then checked against the emulator's ground truth of what the SLM showed for every frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.session import RunSession, RunSummary, SessionOptions
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.devices_faults import FaultPlan
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.rig import emulated_rig

from .conftest import image_key

TIME_POINTS = 6
EXPOSURE_MS = 2.0
OPTIONS = SessionOptions(fsync=False, acquire_timeout_s=1.0, display=False)

# (fault, time point it hits, words the recorded cause must contain)
FAULTS = {
    "dropped_frame": (FaultPlan(drop_frame_every=31), 3, "dropped"),  # exposure 30
    "missed_trigger": (FaultPlan(missed_trigger_at=12), 1, "missed"),
    "pattern_out_of_sync": (FaultPlan(pattern_out_of_sync_at=12), 1, "out of sync"),
    "camera_timeout": (FaultPlan(camera_timeout_at=20), 2, "stopped responding"),
}


def record_run(tmp_path: Path, faults: FaultPlan) -> tuple[RunSummary, float, Path]:
    """Six time points of 32 px linear SIM on the emulated rig, no SR; (summary, s, file)."""
    channel = {"laser_nm": 488, "power_pct": 20.0, "exposure_ms": EXPOSURE_MS}
    protocol = Protocol.parse_checked({
        "channels": [{**channel, "reconstruction": "none"}], "timepoints": TIME_POINTS,
        "output": str(tmp_path / "fault.h5")})
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20.0,
                                              exposure_ms=EXPOSURE_MS),))
    rig = emulated_rig(EmulatorConfig(size_px=32, seed=1), faults=faults)
    rig.backend.set_property(rig.camera.label, "RenderMode", "fast")
    session = RunSession(rig, plan, protocol, (32, 32), float(rig.camera.pixel_size_nm),
                         options=OPTIONS)
    start = time.monotonic()
    try:
        summary = session.run()
    finally:
        rig.close()
    return summary, time.monotonic() - start, protocol.output


@dataclass
class FaultRun:
    """One recorded run with a fault: its summary, duration and what the file holds."""

    summary: RunSummary
    seconds: float
    raw: np.ndarray  # (T, 9, Y, X) channel 0
    sequence: np.ndarray  # (T, 9)
    events: list[tuple[str, int, str]]


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory, shown: dict[str, Any]
              ) -> Callable[[str], FaultRun]:
    """Record each fault's run once per module (the tests read the same file)."""
    done: dict[str, FaultRun] = {}

    def get(name: str) -> FaultRun:
        if name not in done:
            summary, seconds, path = record_run(tmp_path_factory.mktemp(name), FAULTS[name][0])
            done[name] = FaultRun(summary, seconds, *stored_frames(path))
        return done[name]

    return get


def stored_frames(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int, str]]]:
    """(raw (T, 9, Y, X), sequence (T, 9), events) of channel 0."""
    with h5py.File(path, "r") as h5:
        events = [(e["kind"].decode(), int(e["time_point"]), e["detail"].decode())
                  for e in h5[run_file.EVENTS][()]]
        return h5["raw"][:, 0], h5["timestamps/sequence"][:, 0], events


def mislabelled(raw: np.ndarray, sequence: np.ndarray, shown: dict[str, Any]
                ) -> list[tuple[int, int, Any]]:
    """(time point, tagged pattern, displayed pattern) of every stored frame whose tag is wrong."""
    wrong = []
    for t in range(raw.shape[0]):
        for p in range(raw.shape[1]):
            if sequence[t, p] < 0:
                continue  # the file says no frame is here
            record = shown.get(image_key(raw[t, p]))
            if record is None or record.pattern != p or record.laser_nm != 488:
                wrong.append((t, p, None if record is None else record.pattern))
    return wrong


@pytest.mark.parametrize("name", ["dropped_frame", "camera_timeout", "missed_trigger",
                                  "pattern_out_of_sync"])
def test_no_stored_frame_is_mislabelled(fault_run: Callable[[str], FaultRun],
                                        shown: dict[str, Any], name: str) -> None:
    run = fault_run(name)
    raw, sequence = run.raw, run.sequence
    assert (sequence >= 0).sum() > 9  # frames were stored, and each is checked
    assert mislabelled(raw, sequence, shown) == []


@pytest.mark.parametrize("name", ["dropped_frame", "missed_trigger", "pattern_out_of_sync"])
def test_transient_fault_is_detected_in_time_and_the_run_resynchronises(
        fault_run: Callable[[str], FaultRun], shown: dict[str, Any], name: str) -> None:
    hit = FAULTS[name][1]
    run = fault_run(name)
    summary, seconds = run.summary, run.seconds
    assert summary.error == "" and summary.engine.time_points == TIME_POINTS
    assert any(f.startswith(f"time point {hit}:") for f in summary.engine.failures)
    # one failed time point costs at most the configured timeout
    assert seconds < 2.1 + 8.0  # acquire timeout 2.05 s (3 x 9 x 2 ms + 2 s) + setup
    raw, sequence, events = run.raw, run.sequence, run.events
    assert (sequence[hit] < 0).any(), "the faulty time point claims a complete set"
    assert any(t == hit for _, t, _ in events), "nothing in /events for the faulty time point"
    for t in range(hit + 1, TIME_POINTS):  # re-armed: later time points complete and right
        assert (sequence[t] >= 0).all()
        assert all(shown[image_key(raw[t, p])].pattern == p for p in range(9))
    assert np.all(np.diff(sequence[sequence >= 0]) > 0)  # run-wide numbering never repeats


def test_hung_camera_stops_the_run_with_a_clear_error(fault_run: Callable[[str], FaultRun]
                                                      ) -> None:
    _, hit, words = FAULTS["camera_timeout"]
    run = fault_run("camera_timeout")
    summary, seconds = run.summary, run.seconds
    assert "3 time points failed in a row" in summary.error and words in summary.error
    assert seconds < 3 * 2.1 + 8.0  # three timeouts, then stop: no endless waiting
    sequence, events = run.sequence, run.events
    assert (sequence[:hit] >= 0).all()  # everything before the hang is kept
    run_end = [d for k, _, d in events if k == "run_end"]
    assert run_end and "failed in a row" in run_end[0]


@pytest.mark.parametrize("name", list(FAULTS))
def test_rig_error_cause_is_written_to_events(fault_run: Callable[[str], FaultRun], name: str
                                              ) -> None:
    _, hit, words = FAULTS[name]
    causes = [d for k, t, d in fault_run(name).events if k == "rig_error" and t == hit]
    assert causes and words in causes[0]
