"""Events per second over a sliding window (camera frames/s, SR frames/s, display updates/s)."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateMeter:
    """Counts events with their times; ``rate_per_s`` is the count over the last window."""

    def __init__(self, window_s: float = 2.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, count: int = 1, now_s: float | None = None) -> None:
        """Record ``count`` events at ``now_s`` (monotonic seconds; now when None)."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._events.append((now, count))
            self._trim(now)

    def rate_per_s(self, now_s: float | None = None) -> float:
        """Events per second over the window ending at ``now_s``."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._trim(now)
            if len(self._events) < 2:
                return 0.0
            # the first event opens the interval: count the ones after it, up to now
            after_first = sum(n for _, n in self._events) - self._events[0][1]
            span = now - self._events[0][0]
        return after_first / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self.window_s:
            self._events.popleft()
