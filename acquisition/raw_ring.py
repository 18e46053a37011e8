"""The run's shared-memory ring: raw sets by reference for the workers on this host.

ZeroMQ still carries every raw-set message (header, order, back-pressure); for a worker this
process started, the payload stays in a ring of set-sized slots that both processes map, and the
header names where: ``info.ring_slot``, ``ring_offset`` (bytes into the slot) and
``ring_generation``. The engine groups camera frames straight into a slot (the one copy), the
recorder writes from it, the worker reads it; display images are copied from it.

Lifetime and safety:

- The ring is an anonymous memory file (``memfd_create``): it never has a name, so nothing is
  left in ``/dev/shm`` however the run ends; the kernel frees it when the last process that maps
  it or holds its descriptor exits. Its size is sealed (nobody can shrink it under a reader).
- It is private to the run: a worker gets a read-only descriptor by inheritance
  (``pass_fds``); no other process can open it. A read-only descriptor cannot be mapped
  writable, so a worker (killed, hung or buggy) can never corrupt the ring.
- A slot is handed out again only when nothing references its frames any more: no recorder
  queue entry, no set in flight to a worker (the session keeps the frames of every set it lent
  until the answer arrives or the worker is given up), no consumer.
- Each slot has a generation, bumped in the ring's header before the slot is written again; a
  worker checks it before and after reading (a message that outlived its slot is refused).
- Its memory is committed when the run starts, not by the frames: a thread populates the slots
  (``MADV_POPULATE_WRITE``, lowest first, data untouched) while the workers start, the run's
  first time point waits for it (:meth:`RawRing.wait_populated`), and a worker maps the ring
  with ``MAP_POPULATE``. A slot's first write otherwise cost a page fault per
  4 KiB in each process (measured 12 ms for a fresh 9 x 1024 x 1024 set against 3.3 ms for a
  reused one), which every set of a short or bursty run paid.

Where ``memfd_create`` does not exist (not Linux) there is no ring and payloads go inline.
Workers on other hosts always get payloads inline over TCP (+ CurveZMQ).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from acquisition.wire import Header, Kind, WireError

logger = logging.getLogger(__name__)

MAGIC = b"LSRING01"
_LAYOUT = struct.Struct("<8sQQQ")  # magic, n_slots, slot_bytes, data_offset
TABLE_OFFSET = 64  # the per-slot uint64 table (RingLayout)
PAGE_BYTES = mmap.PAGESIZE
MAX_SLOTS = 4096
_FREE_REFERENCES = 2  # a free slot's buffer: the ring's list and getrefcount's argument
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux >= 5.14
POPULATE_STEP_BYTES = 4 * 1024 * 1024  # per madvise call (each holds the GIL)


def ring_supported() -> bool:
    """True where the ring can be made (Linux: ``os.memfd_create``)."""
    return hasattr(os, "memfd_create") and sys.platform.startswith("linux")


def round_up(n: int, to: int) -> int:
    """``n`` rounded up to a multiple of ``to``."""
    return -(-n // to) * to


def sealed_memory_file(name: str, size: int) -> int:
    """An anonymous memory file (``memfd_create``, close-on-exec) of ``size`` bytes whose size
    is sealed (nobody can shrink it under a reader); its read-write descriptor."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except OSError:
        os.close(fd)
        raise
    return fd


def populate(mapped: mmap.mmap, size: int, stop: threading.Event,
             progress: Callable[[int], None] = lambda done: None) -> None:
    """Commit a shared mapping's memory and map it in this process (``MADV_POPULATE_WRITE``,
    contents untouched), lowest address first, until done or ``stop`` is set; ``progress``
    gets the bytes done so far. An older kernel: nothing (pages come with the first write)."""
    at = 0
    try:
        while at < size and not stop.is_set():
            step = min(POPULATE_STEP_BYTES, size - at)
            mapped.madvise(MADV_POPULATE_WRITE, at, step)
            at += step
            progress(at)
    except (OSError, ValueError) as exc:
        logger.debug("shared memory not populated (%s)", exc)


@dataclass(frozen=True)
class RingLayout:
    """Where a ring's parts lie: a header (magic, slot count, slot size, data offset), one
    uint64 per slot from byte 64 (a generation or a state), then page-aligned slots."""

    magic: bytes
    n_slots: int
    slot_bytes: int
    data_offset: int

    @classmethod
    def plan(cls, magic: bytes, n_slots: int, slot_bytes: int, max_slots: int) -> RingLayout:
        """The layout of ``n_slots`` slots of at least ``slot_bytes``; ValueError if out of
        range."""
        if not 1 <= n_slots <= max_slots:
            raise ValueError(f"n_slots={n_slots} must be in [1, {max_slots}]")
        if slot_bytes <= 0:
            raise ValueError(f"slot_bytes={slot_bytes} must be positive")
        return cls(magic, n_slots, round_up(slot_bytes, PAGE_BYTES),
                   round_up(TABLE_OFFSET + 8 * n_slots, PAGE_BYTES))

    @property
    def total_bytes(self) -> int:
        """The ring's size."""
        return self.data_offset + self.n_slots * self.slot_bytes

    def write(self, mapped: mmap.mmap) -> np.ndarray:
        """Write the header into a new ring; its per-slot table."""
        mapped[:_LAYOUT.size] = _LAYOUT.pack(self.magic, self.n_slots, self.slot_bytes,
                                             self.data_offset)
        return self.table(mapped)

    def table(self, mapped: mmap.mmap) -> np.ndarray:
        """The per-slot uint64 table of a mapped ring."""
        return np.ndarray((self.n_slots,), np.uint64, buffer=mapped, offset=TABLE_OFFSET)

    def reference(self, header: Header, kind: Kind, what: str) -> tuple[int, int, int, int]:
        """(slot, byte offset in the slot, generation, bytes) that ``header`` names in this
        ring; WireError (naming ``what``, e.g. "raw ring") when it is not a ``kind`` message,
        lacks a field, or reaches outside a slot."""
        if header.kind is not kind:
            raise WireError(f"a {header.kind} message cannot name a {what} slot")
        info = header.info
        slot, offset = info.get("ring_slot"), info.get("ring_offset")
        generation = info.get("ring_generation")
        if not (isinstance(slot, int) and isinstance(offset, int)
                and isinstance(generation, int)):
            raise WireError("ring reference lacks ring_slot / ring_offset / ring_generation")
        itemsize = np.dtype(header.dtype).itemsize
        nbytes = int(np.prod(header.shape)) * itemsize
        if not 0 <= slot < self.n_slots or offset < 0 or offset % itemsize or (
                offset + nbytes > self.slot_bytes):
            raise WireError(f"{what} reference slot {slot} offset {offset} ({nbytes} bytes) "
                            f"lies outside the ring ({self.n_slots} slots of "
                            f"{self.slot_bytes} bytes)")
        return slot, offset, generation, nbytes

    @classmethod
    def read(cls, mapped: mmap.mmap, magic: bytes, max_slots: int, what: str) -> RingLayout:
        """The layout a mapped ring's header gives; ValueError (naming ``what``) when it is
        not a ring of this ``magic`` or does not fit the mapping."""
        found, n_slots, slot_bytes, data_offset = _LAYOUT.unpack_from(mapped, 0)
        if found != magic or not 1 <= n_slots <= max_slots or slot_bytes <= 0 or (
                data_offset + n_slots * slot_bytes > len(mapped)
                or data_offset < TABLE_OFFSET + 8 * n_slots):
            raise ValueError(f"{what}: not a livesim ring of this kind ({found!r})")
        return cls(magic, n_slots, slot_bytes, data_offset)


def slot_arrays(mapped: mmap.mmap, n_slots: int, slot_bytes: int, data_offset: int
                ) -> list[np.ndarray]:
    """One uint8 array per slot: every view of a slot has it as its base, so its reference
    count says whether anything still uses the slot."""
    return [np.frombuffer(mapped, np.uint8, count=slot_bytes,
                          offset=data_offset + i * slot_bytes) for i in range(n_slots)]


class RawRing:
    """The acquisition side: makes the ring, hands out free slots, says where an array lies.

    ``take(shape)`` has the form of :class:`acquisition.engine.SetBufferPool`'s: a uint16
    array that nothing else references, in a ring slot when one is free and large enough, else
    from ``fallback`` (a heap buffer, sent inline).
    """

    def __init__(self, n_slots: int, slot_bytes: int, fallback: Any | None = None,
                 name: str = "livesim-raw-ring") -> None:
        if not ring_supported():
            raise OSError("shared-memory ring needs Linux memfd_create")
        layout = RingLayout.plan(MAGIC, n_slots, slot_bytes, MAX_SLOTS)
        self.n_slots, self.slot_bytes = n_slots, layout.slot_bytes
        self.data_offset, self.total_bytes = layout.data_offset, layout.total_bytes
        self.fallback = fallback
        self.lent_out = 0  # sets placed in the ring
        self.fallbacks = 0  # sets that found no free slot
        self._fd = sealed_memory_file(name, self.total_bytes)
        self.reader_fd = -1
        try:
            # a second, read-only open file description of the same memory, for the workers
            self.reader_fd = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY | os.O_CLOEXEC)
            self._map: mmap.mmap | None = mmap.mmap(self._fd, self.total_bytes)
        except OSError:
            self._close_fds()
            raise
        self._generations = layout.write(self._map)
        self._slots: list[np.ndarray] | None = slot_arrays(self._map, n_slots,
                                                           self.slot_bytes, self.data_offset)
        self._start = int(np.frombuffer(self._map, np.uint8, count=1).ctypes.data)
        self._closing = threading.Event()
        self.populated_bytes = 0  # slot memory committed so far by the populating thread
        self._populating = threading.Thread(target=self._populate, name="raw-ring-populate",
                                            daemon=True)
        self._populating.start()

    def _populate(self) -> None:
        """Commit the slots' memory and map it in this process, lowest slot first (the ones
        used first), without touching their contents: a slot may already hold frames."""
        if self._map is not None:
            populate(self._map, self.total_bytes, self._closing,
                     lambda done: setattr(self, "populated_bytes", done))

    def wait_populated(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the populating thread is done; True when every
        slot is committed (False: timed out, or the kernel cannot populate)."""
        self._populating.join(timeout_s)
        return self.populated_bytes >= self.total_bytes

    # --- the engine's pool interface ------------------------------------------------------

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint16 array of ``shape`` nobody references: a ring slot, else the fallback's."""
        nbytes = int(np.prod(shape)) * 2
        slots = self._slots
        if slots is not None and nbytes <= self.slot_bytes:
            # the lowest free slot: the few slots in flight are reused while their pages are
            # mapped (a slot's first write costs a page fault per 4 KiB in each process)
            for i in range(self.n_slots):
                if sys.getrefcount(slots[i]) <= _FREE_REFERENCES:
                    self._generations[i] += np.uint64(1)  # before the slot is written again
                    self.lent_out += 1
                    return slots[i][:nbytes].view(np.uint16).reshape(shape)
        self.fallbacks += 1
        if self.fallback is not None:
            return np.asarray(self.fallback.take(shape))
        return np.empty(shape, np.uint16)

    def locate(self, array: np.ndarray) -> tuple[int, int, int] | None:
        """(slot, byte offset in the slot, generation) of a C-contiguous array lying in one
        slot of this ring, else None (a fallback buffer: send it inline)."""
        if self._slots is None or not array.flags.c_contiguous:
            return None
        address = array.__array_interface__["data"][0] - self._start - self.data_offset
        if address < 0 or address >= self.n_slots * self.slot_bytes:
            return None
        slot, offset = divmod(address, self.slot_bytes)
        if offset + array.nbytes > self.slot_bytes:
            return None
        return int(slot), int(offset), int(self._generations[slot])

    def reference_info(self, array: np.ndarray) -> dict[str, int] | None:
        """The header ``info`` fields naming ``array`` in the ring (None: not in the ring)."""
        where = self.locate(array)
        if where is None:
            return None
        slot, offset, generation = where
        return {"ring_slot": slot, "ring_offset": offset, "ring_generation": generation}

    @property
    def slots_in_use(self) -> int:
        """Slots whose frames something still references."""
        if self._slots is None:
            return 0
        slots = self._slots
        return sum(1 for i in range(self.n_slots) if sys.getrefcount(slots[i]) > _FREE_REFERENCES)

    def close(self) -> None:
        """Unmap and close the ring's descriptors (the memory goes with the last holder).
        Arrays still viewing a slot keep the mapping alive until they are gone."""
        self._closing.set()
        if self._populating.is_alive():
            self._populating.join()
        self._slots = None
        self._generations = np.zeros(0, np.uint64)
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                logger.debug("raw ring: arrays still view it; unmapped when they are gone")
            self._map = None
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._fd, self.reader_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self.reader_fd = -1

    def __enter__(self) -> RawRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RingReader:
    """The worker side: maps the ring read-only from an inherited descriptor and resolves the
    raw-set headers that name a slot (:class:`acquisition.wire.PayloadRing`)."""

    def __init__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < PAGE_BYTES:
            raise ValueError(f"raw ring descriptor {fd}: {size} bytes is not a ring")
        # MAP_POPULATE: the pages are mapped now, at start-up, not by the first set in a slot
        self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                              prot=mmap.PROT_READ)
        layout = self._layout = RingLayout.read(self._map, MAGIC, MAX_SLOTS,
                                                f"raw ring descriptor {fd}")
        self.n_slots, self.slot_bytes = layout.n_slots, layout.slot_bytes
        self.data_offset = layout.data_offset
        self._generations = layout.table(self._map)
        self._data = np.frombuffer(self._map, np.uint8)

    def view(self, header: Header) -> np.ndarray:
        """The (read-only) array a header names in the ring; WireError if it cannot be."""
        slot, offset, generation, nbytes = self._layout.reference(header, Kind.RAW_SET,
                                                                  "raw ring")
        if not self.unchanged(header):
            raise WireError(f"ring slot {slot} was reused before it was read (generation "
                            f"{int(self._generations[slot])}, message {generation})")
        start = self.data_offset + slot * self.slot_bytes + offset
        return self._data[start:start + nbytes].view(header.dtype).reshape(header.shape)

    def unchanged(self, header: Header) -> bool:
        """True while the slot a header names still holds that message's set."""
        slot = header.info.get("ring_slot")
        if not isinstance(slot, int) or not 0 <= slot < self.n_slots:
            return False
        return int(self._generations[slot]) == header.info.get("ring_generation")

    def close(self) -> None:
        """Unmap (arrays still viewing it keep it mapped until they are gone)."""
        self._generations = np.zeros(0, np.uint64)
        self._data = np.zeros(0, np.uint8)
        with contextlib.suppress(BufferError):  # arrays still view it: unmapped with them
            self._map.close()


def is_reference(header: Header) -> bool:
    """True when a raw-set header names a ring slot instead of carrying its payload."""
    return "ring_slot" in header.info
