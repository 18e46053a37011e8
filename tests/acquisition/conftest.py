"""Stand-ins for the acquisition tests: a deterministic frame source shaped like the rig."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from hardware.errors import AcquisitionTimeout, SequenceMismatch
from hardware.frames import FrameTag, TaggedFrame


def expected_frame(time_point: int, channel: int, pattern: int, shape: tuple[int, int]
                   ) -> np.ndarray:
    """The exact image the scripted source produces for (t, c, p): checkable after a round trip."""
    rng = np.random.default_rng([time_point, channel, pattern])
    return rng.integers(90, 4000, size=shape, dtype=np.uint16)


@dataclass
class ScriptedSource:
    """A frame source with the rig's streaming form; can drop frames or fail on cue."""

    channel_lasers: tuple[int, ...] = (488,)
    n_patterns: int = 9
    shape: tuple[int, int] = (16, 16)
    drop: set[tuple[int, int, int]] = field(default_factory=set)  # (t, c, p) never delivered
    fail_at: dict[int, int] = field(default_factory=dict)  # t -> frames delivered, then timeout
    sync_lost: bool = False  # the failure is a SequenceMismatch instead of a timeout
    frame_delay_s: float = 0.0
    sequence: int = 0

    def stream_time_point(self, plan: Any, time_point: int, timeout_s: float
                          ) -> Iterator[TaggedFrame]:
        delivered = 0
        for c, laser in enumerate(self.channel_lasers):
            for p in range(self.n_patterns):
                if time_point in self.fail_at and delivered >= self.fail_at[time_point]:
                    if self.sync_lost:
                        raise SequenceMismatch(f"time point {time_point}: scripted lost sync")
                    raise AcquisitionTimeout(f"time point {time_point}: scripted camera stall")
                seq = self.sequence
                self.sequence += 1
                if (time_point, c, p) in self.drop:
                    continue
                if self.frame_delay_s:
                    time.sleep(self.frame_delay_s)
                tag = FrameTag(time_point=time_point, channel=c, laser_nm=laser,
                               orientation=p // 3, phase=p % 3, pattern_index=p, sequence=seq,
                               timestamp_s=time.monotonic(), exposure_ms=10.0)
                delivered += 1
                yield TaggedFrame(expected_frame(time_point, c, p, self.shape), tag)

    def acquire_time_point(self, plan: Any, time_point: int, timeout_s: float
                           ) -> list[TaggedFrame]:
        return list(self.stream_time_point(plan, time_point, timeout_s))


@pytest.fixture
def source() -> ScriptedSource:
    return ScriptedSource()


@dataclass
class StreamingSource(ScriptedSource):
    """The rig's run-long form: devices armed once per stream, counted."""

    streams_opened: int = 0
    streams_closed: int = 0

    def stream(self, plan: Any, time_points: list[int], timeout_s: float
               ) -> Iterator[TaggedFrame]:
        self.streams_opened += 1
        try:
            for t in time_points:
                yield from self.stream_time_point(plan, t, timeout_s)
        finally:
            self.streams_closed += 1
