"""The workers' result rings: SR images by reference, slot states, refusals, the worker loop
(a run through both rings: test_raw_ring)."""

from __future__ import annotations

import mmap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from acquisition.raw_ring import MADV_POPULATE_WRITE, RawRing, RingReader, ring_supported
from acquisition.result_ring import BUSY, FREE, HELD, ResultRing, ResultRings, ResultSlots
from acquisition.wire import Header, Kind, WireError, decode, header_for
from inference.reconstruction import WideFieldReconstructor
from inference.worker import encode_sr

from .test_raw_ring import ring_resident_bytes, send_set, worker_loop

pytestmark = pytest.mark.skipif(not ring_supported(), reason="needs Linux memfd_create")


def place(slots: ResultSlots, image: np.ndarray, sequence: int = 1) -> Header | None:
    """What the worker does: the image into a free slot, a header naming it (None: inline)."""
    target = slots.begin(image.shape, image.dtype)
    if target is None:
        return None
    target[:] = image
    return header_for(Kind.SR_RESULT, "run", sequence, target, worker_id="w",
                      info=slots.finish())


def states(ring: ResultRing) -> list[int]:
    return [int(s) for s in ring._states]


def test_an_image_is_read_in_place_and_its_slot_freed_once_nothing_uses_it() -> None:
    with ResultRing(2, 32 * 32 * 2) as ring:
        slots = ResultSlots(ring.writer_fd)
        first = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
        header = place(slots, first)
        assert header is not None and header.info["ring_slot"] == 0
        assert states(ring)[0] == header.info["ring_generation"] >= 2
        image = decode([header.pack(), b""], ring).array
        np.testing.assert_array_equal(image, first)
        assert not image.flags.writeable and states(ring) == [HELD, FREE]
        # held: the worker takes the other slot, and then has none (the image goes inline)
        second = place(slots, first + 1, 2)
        assert second is not None and second.info["ring_slot"] == 1
        assert place(slots, first, 3) is None and slots.inline == 1
        np.testing.assert_array_equal(image, first)  # never written while held
        view = image[4:8]  # any view keeps the slot held
        del image
        assert ring.release_unused() == 0
        del view
        assert ring.release_unused() == 1 and states(ring)[0] == FREE
        third = place(slots, first + 2, 4)
        assert third is not None and third.info["ring_slot"] == 0
        slots.close()


def test_stale_repeated_and_bad_references_are_refused_with_a_reason() -> None:
    with ResultRing(2, 16 * 16 * 2) as ring:
        slots = ResultSlots(ring.writer_fd)
        image = np.ones((16, 16), np.uint16)
        header = place(slots, image)
        assert header is not None
        info = header.info

        def refused(changed: dict[str, object], kind: Kind = Kind.SR_RESULT,
                    shape: tuple[int, ...] = (16, 16)) -> str:
            bad = replace(header, kind=kind, shape=shape, info={**info, **changed})
            with pytest.raises(WireError) as caught:
                ring.view(bad)
            return str(caught.value)

        assert "cannot name a result ring slot" in refused({}, kind=Kind.RAW_SET)
        assert "outside the ring" in refused({"ring_slot": 2})
        no_room = ring.slot_bytes - 2  # the image would run past the slot
        assert "outside the ring" in refused({"ring_offset": no_room})
        assert "outside the ring" in refused({}, shape=(64, 64))
        assert "outside the ring" in refused({"ring_generation": info["ring_generation"] + 1})
        assert "not the message's" in refused({"ring_generation": info["ring_generation"] + 2})
        assert "lacks" in refused({"ring_slot": None})
        taken = ring.view(header)
        assert "taken already" in refused({})  # the same message twice
        assert ring.refused == 8 and ring.received == 1
        del taken
        # a slot written again after its message was sent: the old message is stale
        ring.release_unused()
        again = place(slots, image * 2, 2)
        assert again is not None and again.info["ring_slot"] == info["ring_slot"]
        assert "not the message's" in refused({})
        # a raw ring reader refuses an SR reference, and a payload beside a reference
        with RawRing(1, 4096) as raw:
            reader = RingReader(raw.reader_fd)
            with pytest.raises(WireError, match="cannot name a raw ring slot"):
                reader.view(again)
            reader.close()
        with pytest.raises(WireError, match="empty payload"):
            decode([again.pack(), image], ring)
        slots.close()


def test_a_restarted_worker_frees_what_its_predecessor_left_but_not_held_slots() -> None:
    with ResultRing(4, 8 * 8 * 2) as ring:
        dead = ResultSlots(ring.writer_fd)
        image = np.full((8, 8), 7, np.uint16)
        held_header = place(dead, image)
        assert held_header is not None
        held = ring.view(held_header)  # slot 0: the acquisition records it
        sent = place(dead, image, 2)  # slot 1: sent, never received
        assert sent is not None and dead.begin((8, 8), np.uint16) is not None  # slot 2: busy
        assert states(ring)[:3] == [HELD, sent.info["ring_generation"], BUSY]
        dead.close()
        successor = ResultSlots(ring.writer_fd)
        assert states(ring) == [HELD, FREE, FREE, FREE]
        with pytest.raises(WireError, match="not the message's"):
            ring.view(sent)  # the predecessor's message no longer names its image
        assert {place(successor, image + i, 3 + i).info["ring_slot"]  # type: ignore[union-attr]
                for i in range(3)} == {1, 2, 3}
        np.testing.assert_array_equal(held, image)
        successor.close()


def test_a_ring_reference_from_a_worker_without_a_ring_is_refused() -> None:
    with ResultRing(1, 4096) as ring:
        rings = ResultRings([ring], lambda worker_id: 0 if worker_id == "w" else None)
        slots = ResultSlots(ring.writer_fd)
        header = place(slots, np.zeros((8, 8), np.uint16))
        assert header is not None
        with pytest.raises(WireError, match="has no result ring"):
            rings.view(replace(header, worker_id="stale"))
        assert rings.view(header).shape == (8, 8) and rings.received == 1
        slots.close()


def test_the_worker_loop_places_exactly_its_encoded_images_in_the_ring(tmp_path: Path) -> None:
    """The real worker loop with a raw ring and a result ring: each SR image received by
    reference is the uint16 encoding of the wide-field mean of the frames put in the ring."""
    with RawRing(4, 9 * 16 * 16 * 2) as ring, ResultRing(3, 16 * 16 * 2) as result_ring:
        rings = ResultRings([result_ring], lambda worker_id: 0)
        sets, images, used = [], {}, []
        with worker_loop(tmp_path, ring, rings, result_ring_fd=result_ring.writer_fd,
                         sr_encoding="uint16") as (sender, results, state):
            for t in range(5):
                sets.append(np.array(send_set(sender, ring, t)))
                deadline = time.monotonic() + 30
                while t not in images and time.monotonic() < deadline:
                    message = results.receive(200)
                    if message is not None and message.header.kind is Kind.SR_RESULT:
                        used.append(message.header.info["ring_slot"])
                        images[t] = np.array(message.array)
                        del message
        assert sorted(images) == list(range(5)) and state.failed == 0
        # a slot is freed as the next result arrives: two of the three slots take turns
        assert result_ring.received == 5 and used == [0, 1, 0, 1, 0]
        for t, frames in enumerate(sets):
            expected, _ = encode_sr(WideFieldReconstructor().reconstruct(frames).image, "uint16")
            np.testing.assert_array_equal(images[t], expected)


def test_the_ring_is_committed_before_the_worker_writes_and_the_worker_maps_it_all() -> None:
    probe = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        probe.madvise(MADV_POPULATE_WRITE, 0, mmap.PAGESIZE)
    except OSError:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE")
    finally:
        probe.close()
    with ResultRing(8, 256 * 256 * 2) as ring:
        assert ring.wait_populated(30.0)
        assert ring_resident_bytes("livesim-result-ring") >= ring.total_bytes
        before = ring_resident_bytes("livesim-result-ring")
        slots = ResultSlots(ring.writer_fd)  # a second mapping, every page mapped at once
        assert ring_resident_bytes("livesim-result-ring") >= before + ring.total_bytes
        slots.close()
    started = ResultRing(64, 16 * 1024 * 1024)  # closed while it populates: it stops, no hang
    started.close()
    assert not started._populating.is_alive() and started.populated_bytes < started.total_bytes
