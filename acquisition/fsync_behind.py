"""fsync of a run file on its own thread, one step behind the writer.

After each flushed time point the writer asks for an fsync and goes on; requests that arrive
while one fsync runs are coalesced into the next, so the disk overlaps the next time point.
Used by the RunRecorder and by the pipeline benchmark's bare h5py limit (same durability).
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)


class FsyncBehind:
    """Coalesced fsync of ``fd`` after each requested time point, on a daemon thread.

    ``durable_time_point``: every time point up to it has been fsynced (-1: none yet).
    ``error``: the OSError that stopped the thread, if an fsync failed.
    """

    def __init__(self, fd: int, name: str) -> None:
        self.durable_time_point = -1
        self.error: OSError | None = None
        self._fd = fd
        self._name = name
        self._wanted = threading.Condition()
        self._requested = -1  # newest flushed time point waiting for fsync
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="run-fsync", daemon=True)
        self._thread.start()

    def request(self, time_point: int) -> None:
        """Ask for an fsync covering ``time_point`` (returns at once)."""
        with self._wanted:
            self._requested = max(self._requested, time_point)
            self._wanted.notify()

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish the pending fsync and stop the thread."""
        with self._wanted:
            self._stop = True
            self._wanted.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._wanted:
                while self._requested <= self.durable_time_point and not self._stop:
                    self._wanted.wait(1.0)
                if self._requested <= self.durable_time_point:
                    return
                target = self._requested
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self.error = exc
                logger.error("fsync of %s failed: %s", self._name, exc)
                return
            self.durable_time_point = target
