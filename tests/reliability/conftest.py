"""Shared pieces of the reliability suite: the emulator's ground truth of what was displayed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest


def image_key(image: np.ndarray) -> str:
    """A content hash of one camera frame (fresh noise makes every emulated frame unique)."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def shown() -> Iterator[dict[str, Any]]:
    """Map frame hash -> the emulator's DisplayRecord for every frame the camera rendered.

    The emulated camera renders what the SLM/AOTF show at its trigger; recording the record
    beside each rendered image lets a test check a stored frame's tag against what was shown.
    """
    from sim_emulator.devices import EmulatedCamera

    log: dict[str, Any] = {}
    original = EmulatedCamera._render

    def render(self: EmulatedCamera, record: Any, saturate: bool) -> np.ndarray:
        image = original(self, record, saturate)
        log[image_key(image)] = record
        return image

    mp = pytest.MonkeyPatch()
    mp.setattr(EmulatedCamera, "_render", render)
    try:
        yield log
    finally:
        mp.undo()
