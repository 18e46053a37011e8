"""The camera's circular buffer: sized from the plan; an overflow is named at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hardware.errors import BufferOverflow
from hardware.rig import Rig
from hardware.sequencing import ChannelSpec, SequencePlan

PLAN = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20, exposure_ms=1),
                              ChannelSpec(laser_nm=560, power_pct=20, exposure_ms=1)))


def test_buffer_is_sized_from_the_plan(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator(size_px=256)
    frame_mb = 256 * 256 * 2 / 2**20
    assert rig.size_buffer(2_000) >= frame_mb * 2_000
    assert rig.backend.buffer_mb() >= frame_mb * 2_000  # type: ignore[attr-defined]
    assert rig.size_buffer(10**7) == 4096  # capped: frames are read as they arrive


def test_an_overflow_is_reported_by_name_within_a_second(
        make_emulator: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_emulator(size_px=256)
    rig.backend.set_property(rig.camera.label, "RenderMode", "fast")
    # inject: a 1 MB buffer (8 frames of 128 kB) for an 18-frame time point, read slowly
    monkeypatch.setattr(rig, "size_buffer", lambda n: rig.backend.set_buffer_mb(1) or 1)
    stream = rig.stream(PLAN, [0], timeout_s=30.0)
    next(stream)
    time.sleep(1.0)  # the camera fills the buffer meanwhile
    resumed = time.monotonic()
    with pytest.raises(BufferOverflow, match=r"camera 'Camera': circular buffer overflowed"):
        for _ in stream:
            pass
    assert time.monotonic() - resumed < 1.0  # not the 30 s timeout
