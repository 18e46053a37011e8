"""Results recorded in time-point order although several workers return them out of order.

A result (time point, channel) is held until every raw set sent before it has been answered or
given up (skipped, its worker died); then it is released together with every held result
behind it, in (time point, channel) order. What is held is bounded by the sets in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Key = tuple[int, int]  # (time point, channel)


class InOrderRelease(Generic[Item]):
    """Holds out-of-order results; releases them in key order once nothing earlier is owed."""

    def __init__(self) -> None:
        self._held: dict[Key, Item] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: Key, item: Item) -> None:
        """Keep ``item`` until nothing sent before ``key`` is outstanding."""
        with self._lock:
            self._held[key] = item

    def release(self, outstanding: Iterable[Key]) -> list[tuple[Key, Item]]:
        """The held results whose key is below every outstanding one, in key order."""
        first_owed = min(outstanding, default=None)
        with self._lock:
            ready = sorted(k for k in self._held if first_owed is None or k < first_owed)
            return [(k, self._held.pop(k)) for k in ready]

    def release_all(self) -> list[tuple[Key, Item]]:
        """Everything held, in key order (the end of the run)."""
        return self.release(())
