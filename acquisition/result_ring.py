"""A worker's result ring: SR images by reference from a worker on this host.

The reverse of :mod:`acquisition.raw_ring`. ZeroMQ still carries every SR message (header,
order); for a worker this process started, the image itself is written into a slot of a
shared-memory ring that belongs to that worker, and the header names where
(``info.ring_slot``, ``ring_offset``, ``ring_generation``) over an empty payload frame. The
acquisition records and shows the image from the slot, and frees the slot once nothing
references it any more. At 512 px an SR image over ZeroMQ cost ~0.9 ms of CPU a set in the two
processes' I/O threads, plus the page faults of a fresh receive buffer per message.

Each slot has a state word in the ring's header:

- ``FREE`` (0): the worker may write it. None free (or none large enough): the image goes
  inline, as from a remote worker.
- ``BUSY`` (1): the worker is writing it.
- an even stamp >= 2: written; the message with that ``ring_generation`` names it.
- ``HELD`` (3): the acquisition took it (stamp checked) and uses the image; it sets the slot
  free when nothing references the image any more (checked as each result arrives).

Lifetime and safety:

- One ring per local worker, an anonymous memory file (``memfd_create``): nothing is left in
  ``/dev/shm`` however the run ends; the size is sealed. The worker inherits a read-write
  descriptor (``pass_fds``); no other process can open it.
- A worker writes only free slots, so an image the acquisition holds is never written again
  while it is recorded. A message naming a slot that no longer holds its stamp is refused.
- A restarted worker frees every slot its predecessor left (busy or written, never received);
  the slots the acquisition holds stay held. Messages of the predecessor are refused (its id
  is stale), so their slots are never read.
- Raw frames, which cannot be taken again, stay in the raw ring that workers map read-only;
  a worker writes only its own results here, which it could have sent wrong inline as well.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from acquisition.raw_ring import (
    PAGE_BYTES,
    RingLayout,
    populate,
    sealed_memory_file,
    slot_arrays,
)
from acquisition.wire import Header, Kind, WireError

logger = logging.getLogger(__name__)

MAGIC = b"LSRSLT01"
MAX_SLOTS = 64
FREE = 0
BUSY = 1
HELD = 3
_FREE_REFERENCES = 2  # a slot's array nobody views: the ring's list and getrefcount's argument


class ResultRing:
    """The acquisition side of one worker's ring: makes it, resolves the SR messages that name
    a slot (:class:`acquisition.wire.PayloadRing` for SR results), frees slots no longer used."""

    def __init__(self, n_slots: int, slot_bytes: int, name: str = "livesim-result-ring"
                 ) -> None:
        layout = self._layout = RingLayout.plan(MAGIC, n_slots, slot_bytes, MAX_SLOTS)
        self.n_slots, self.slot_bytes = n_slots, layout.slot_bytes
        self.data_offset, self.total_bytes = layout.data_offset, layout.total_bytes
        self.received = 0  # images taken from the ring
        self.refused = 0  # references refused (bad reference, stale stamp)
        self.writer_fd = sealed_memory_file(name, self.total_bytes)
        try:
            self._map: mmap.mmap | None = mmap.mmap(self.writer_fd, self.total_bytes)
        except OSError:
            self._close_fd()
            raise
        self._states = layout.write(self._map)
        self._slots = slot_arrays(self._map, n_slots, self.slot_bytes, self.data_offset)
        self._held = [False] * n_slots
        # committed while the worker starts (it maps them with MAP_POPULATE; the run's first
        # time point waits for it): a slot's first image otherwise cost a page fault per 4 KiB
        # in each process, in every short run
        self._closing = threading.Event()
        self.populated_bytes = 0  # committed so far by the populating thread
        self._populating = threading.Thread(
            target=populate, args=(self._map, self.total_bytes, self._closing,
                                   lambda done: setattr(self, "populated_bytes", done)),
            name="result-ring-populate", daemon=True)
        self._populating.start()

    def wait_populated(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the ring's memory is committed; True when it
        all is (False: timed out, or the kernel cannot populate)."""
        self._populating.join(timeout_s)
        return self.populated_bytes >= self.total_bytes

    def view(self, header: Header) -> np.ndarray:
        """The (read-only) SR image a header names, its slot now held until the image is no
        longer referenced; WireError when the reference is not valid or the slot does not
        hold the message's stamp (written again, or already taken)."""
        self.release_unused()
        try:
            slot, image = self._resolve(header)
        except WireError:
            self.refused += 1
            raise
        self._states[slot] = HELD
        self._held[slot] = True
        self.received += 1
        image.flags.writeable = False
        return image

    def _resolve(self, header: Header) -> tuple[int, np.ndarray]:
        if self._map is None:
            raise WireError("the result ring is closed")
        slot, offset, stamp, nbytes = self._layout.reference(header, Kind.SR_RESULT,
                                                             "result ring")
        if stamp < 2 or stamp % 2:
            raise WireError(f"result ring reference stamp {stamp} lies outside the ring's "
                            "stamps (even, from 2)")
        held = int(self._states[slot])
        if self._held[slot] or held != stamp:
            raise WireError(f"result ring slot {slot} holds stamp {held}, not the message's "
                            f"{stamp} (written again, or taken already)")
        image = self._slots[slot][offset:offset + nbytes]
        return slot, image.view(header.dtype).reshape(header.shape)

    def release_unused(self) -> int:
        """Free the held slots whose images nothing references any more; how many."""
        freed = 0
        slots, held = self._slots, self._held
        for i in range(self.n_slots):
            if held[i] and sys.getrefcount(slots[i]) <= _FREE_REFERENCES:
                held[i] = False
                self._states[i] = FREE
                freed += 1
        return freed

    def close(self) -> None:
        """Unmap and close the descriptor (the memory goes with the last holder; images
        still viewing it keep it mapped until they are gone)."""
        self._closing.set()
        self._populating.join()
        self._slots = []
        self._held = []
        self._states = np.zeros(0, np.uint64)
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        self._close_fd()

    def _close_fd(self) -> None:
        if self.writer_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.writer_fd)
        self.writer_fd = -1

    def __enter__(self) -> ResultRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResultSlots:
    """The worker side: maps its ring from an inherited descriptor and places SR images in
    free slots. At start it frees every slot not held by the acquisition (a restarted
    worker's predecessor is dead)."""

    def __init__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < PAGE_BYTES:
            raise ValueError(f"result ring descriptor {fd}: {size} bytes is not a ring")
        # MAP_POPULATE: mapped now (the acquisition commits the pages), not by the images
        self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        try:
            layout = RingLayout.read(self._map, MAGIC, MAX_SLOTS,
                                     f"result ring descriptor {fd}")
        except ValueError:
            self._map.close()
            raise
        self.n_slots, self.slot_bytes = layout.n_slots, layout.slot_bytes
        self.data_offset = layout.data_offset
        self._states = layout.table(self._map)
        self._states[self._states != HELD] = FREE
        self._data = np.frombuffer(self._map, np.uint8)
        self._next_stamp = 2 * (secrets.randbits(60) + 1)  # never equal to a predecessor's
        self._open: int | None = None  # the slot begun, not yet finished
        self.inline = 0  # images that found no free slot large enough

    def begin(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type[np.generic]
              ) -> np.ndarray | None:
        """A writable array of ``shape`` in a free slot (marked busy), or None: no free slot
        is large enough (send inline). Write the image into it, then :meth:`finish`."""
        if self._open is not None:
            raise RuntimeError("the result slot begun before was not finished")
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes <= self.slot_bytes:
            free = np.flatnonzero(self._states == FREE)
            if free.size:
                slot = int(free[0])
                self._states[slot] = BUSY
                start = self.data_offset + slot * self.slot_bytes
                self._open = slot
                return self._data[start:start + nbytes].view(dtype).reshape(shape)
        self.inline += 1
        return None

    def finish(self) -> dict[str, int]:
        """Stamp the slot begun (its image is written) and return the header ``info`` fields
        naming it."""
        slot = self._open
        if slot is None:
            raise RuntimeError("no result slot was begun")
        self._open = None
        stamp = self._next_stamp
        self._next_stamp += 2
        self._states[slot] = stamp  # after the image: the acquisition checks this stamp
        return {"ring_slot": slot, "ring_offset": 0, "ring_generation": stamp}

    def release(self, fields: dict[str, int]) -> None:
        """Free a finished slot whose message was never sent (``fields``: what
        :meth:`finish` returned)."""
        slot = fields["ring_slot"]
        if 0 <= slot < self.n_slots and int(self._states[slot]) == fields["ring_generation"]:
            self._states[slot] = FREE

    def abandon(self) -> None:
        """Free the slot begun without sending it (encoding failed)."""
        if self._open is not None:
            self._states[self._open] = FREE
            self._open = None

    def close(self) -> None:
        """Unmap (arrays still viewing it keep it mapped until they are gone)."""
        self._states = np.zeros(0, np.uint64)
        self._data = np.zeros(0, np.uint8)
        with contextlib.suppress(BufferError):
            self._map.close()


class ResultRings:
    """The local workers' result rings, one per worker slot, found by the id of the worker
    that sent a message (:class:`acquisition.wire.PayloadRing` for the results socket)."""

    def __init__(self, rings: Sequence[ResultRing], slot_of: Callable[[str], int | None]
                 ) -> None:
        """``slot_of``: the worker slot of a worker id (None: not a worker of this run)."""
        self.rings = list(rings)
        self._slot_of = slot_of

    def view(self, header: Header) -> np.ndarray:
        """The SR image a header names in its worker's ring (see :meth:`ResultRing.view`)."""
        slot = self._slot_of(header.worker_id)
        if slot is None or not 0 <= slot < len(self.rings):
            raise WireError(f"a result ring reference from worker {header.worker_id[:16]!r}, "
                            "which has no result ring in this run")
        return self.rings[slot].view(header)

    def wait_populated(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s`` in all) until every ring's memory is committed."""
        end = time.monotonic() + timeout_s
        return all([ring.wait_populated(max(0.0, end - time.monotonic()))
                    for ring in self.rings])

    @property
    def received(self) -> int:
        """SR images received by reference, all rings."""
        return sum(ring.received for ring in self.rings)

    def close(self) -> None:
        """Close every ring."""
        for ring in self.rings:
            ring.close()
