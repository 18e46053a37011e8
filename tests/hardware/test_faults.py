"""Injected faults surface as specific exceptions, naming expected vs arrived, within timeout."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hardware.errors import AcquisitionTimeout, SequenceMismatch
from hardware.rig import Rig
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.devices_faults import FaultPlan
from sim_emulator.rig import emulator_hub, optical_bench

PLAN = SequencePlan(
    channels=(
        ChannelSpec(laser_nm=488, power_pct=60, exposure_ms=5),
        ChannelSpec(laser_nm=560, power_pct=60, exposure_ms=5),
    )
)
TIMEOUT_S = 0.6


def _run(rig: Rig) -> tuple[list[int], float]:
    """Sequences of the frames streamed before the failure, and the time it took."""
    seen: list[int] = []
    start = time.monotonic()
    try:
        for frame in rig.stream_time_point(PLAN, 0, timeout_s=TIMEOUT_S):
            seen.append(frame.tag.sequence)
    finally:
        elapsed = time.monotonic() - start
    return seen, elapsed


def test_dropped_frame_is_named_at_once(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(faults=FaultPlan(drop_frame_every=5))
    start = time.monotonic()
    dropped = r"expected camera frame 4 .*frame 5 arrived: 1 frame\(s\) dropped"
    with pytest.raises(SequenceMismatch, match=dropped):
        _run(rig)
    assert time.monotonic() - start < TIMEOUT_S  # detected from the frame counter, no wait
    log = optical_bench(rig).display_log
    assert [r.delivered for r in log[:5]] == [True, True, True, True, False]


def test_missed_trigger_names_triggers_and_frames(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(faults=FaultPlan(missed_trigger_at=3))
    start = time.monotonic()
    with pytest.raises(SequenceMismatch, match=r"18 triggers fired but only 17 of 18 frames"):
        _run(rig)
    assert time.monotonic() - start < TIMEOUT_S + 1.0
    missed = [r for r in optical_bench(rig).display_log if r.exposure is None]
    assert [r.trigger for r in missed] == [3]
    # the frame after the missed trigger shows the pattern of the next position
    delivered = [r for r in optical_bench(rig).display_log if r.delivered]
    assert delivered[3].pattern == 4


def test_camera_timeout_raises_within_timeout(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(faults=FaultPlan(camera_timeout_at=4))
    start = time.monotonic()
    with pytest.raises(AcquisitionTimeout, match=r"expected 18 frames within 0.6 s, 4 arrived"):
        _run(rig)
    elapsed = time.monotonic() - start
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 1.0


def test_pattern_out_of_sync_is_detected_at_end_of_time_point(
    make_emulator: Callable[..., Rig],
) -> None:
    rig = make_emulator(faults=FaultPlan(pattern_out_of_sync_at=2))
    with pytest.raises(SequenceMismatch, match=r"advanced 18 patterns, it reports 19"):
        _run(rig)
    shown = [r.pattern for r in optical_bench(rig).display_log]
    assert shown[:4] == [0, 1, 2, 4]  # the data really shows the skipped pattern


def test_saturating_burst_is_flagged_in_tags(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(faults=FaultPlan(saturating_burst_at=2, saturating_burst_frames=3))
    frames = rig.acquire_time_point(PLAN, 0, timeout_s=20.0)
    saturated = [f.tag.sequence for f in frames if f.tag.saturated_px > 0]
    assert saturated == [2, 3, 4]
    assert all(f.tag.saturated_px > 0.1 * f.image.size for f in frames[2:5])


def test_rig_recovers_after_a_fault(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(faults=FaultPlan(camera_timeout_at=3))
    with pytest.raises(AcquisitionTimeout):
        _run(rig)
    emulator_hub(rig).configure(optical_bench(rig).config, None)
    frames = rig.acquire_time_point(PLAN, 1, timeout_s=20.0)
    assert len(frames) == 18


def test_stream_names_the_time_point_where_sync_was_lost(
    make_emulator: Callable[..., Rig],
) -> None:
    rig = make_emulator(faults=FaultPlan(pattern_out_of_sync_at=22))
    seen: list[int] = []
    lost = r"time point 11: .*advanced 36 patterns, it reports 37"
    with pytest.raises(SequenceMismatch, match=lost):
        for frame in rig.stream(PLAN, [10, 11, 12, 13], timeout_s=5.0):
            seen.append(frame.tag.time_point)
    assert seen == [10] * 18 + [11] * 17  # the mislabelled time point fails at its end
    assert optical_bench(rig).triggers_fired == 36  # nothing fired for time points 12, 13


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_camera_error_is_reported_as_an_early_end(
    make_emulator: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_emulator()

    def broken_model(mode: str) -> None:
        raise RuntimeError("sensor overheated")

    monkeypatch.setattr(optical_bench(rig), "microscope", broken_model)
    with pytest.raises(AcquisitionTimeout, match=r"0 arrived .*ended its sequence early"):
        rig.acquire_time_point(PLAN, 0, timeout_s=TIMEOUT_S)


def test_snap_does_not_skip_a_dropped_frame(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(faults=FaultPlan(drop_frame_every=3))
    with pytest.raises(SequenceMismatch, match=r"snap: expected camera frame 2, frame 3"):
        rig.snap(5, timeout_s=10.0)
