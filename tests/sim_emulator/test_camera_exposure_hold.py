"""The emulated camera delivers frames no faster than its exposure time allows."""

from __future__ import annotations

import time

from sim_emulator.microscope import EmulatorConfig
from sim_emulator.rig import emulated_rig

EXPOSURE_MS = 25.0
N_FRAMES = 8


def _snap_seconds(hold: str) -> float:
    rig = emulated_rig(EmulatorConfig(size_px=(32, 32), seed=1))
    try:
        rig.backend.set_property(rig.camera.label, "HoldExposure", hold)
        rig.camera.set_exposure_ms(EXPOSURE_MS)
        rig.snap(1)  # warm-up: first-frame set-up is not what is measured
        start = time.monotonic()
        frames = rig.snap(N_FRAMES)
        elapsed = time.monotonic() - start
        assert len(frames) == N_FRAMES
        return elapsed
    finally:
        rig.close()


def test_frames_take_at_least_their_exposure_time() -> None:
    elapsed = _snap_seconds("Yes")
    assert elapsed >= N_FRAMES * EXPOSURE_MS / 1000.0  # <= 40 frames/s at 25 ms
    assert N_FRAMES / elapsed <= 1000.0 / EXPOSURE_MS
