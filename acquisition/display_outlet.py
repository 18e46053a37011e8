"""The display stream of a run or live view: what a window draws, at most so many images/s.

One outlet per acquisition process (shared by its threads): the display channel's raw frame or
wide-field mean under 'raw', its full set under 'set' (pattern check, photon count), SR images
under 'sr' and IMC-SR splits under 'imc'; under 'qc' every channel's trust records and the
method each SR image was made with when it changes (a Wiener fallback with its reason). The
rate limit lives here and only here. The stream is lossy by design (ZeroMQ PUB; image topics
conflated, 'qc' not); the run file never depends on it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from acquisition import run_file
from acquisition.engine import TimePoint
from acquisition.transport import DisplaySink
from acquisition.wire import Kind, Message, header_for

RAW_VIEWS = ("frame", "wide-field")
# per topic: above a window's 30 updates/s target with room for what it loses while the CPU is
# saturated (~12 % on 2 cores beside the flat-out pipeline: 32/s gave 28 drawn), below a 60 Hz
# monitor; each publish copies the image once (~0.4 ms per 1024^2 SR) and a viewer's ZMQ I/O
# another, so every image above what the eye needs costs CPU
DISPLAY_MAX_HZ = 36.0
SET_MAX_HZ = 2.0  # full raw sets for the pattern check (<= 1/10 s of CPU) and photon count (1 Hz)
_ACQUIRED_KEPT = 256  # time points whose acquisition time is kept for the SR latency readout
QC_REPEAT_S = 1.0  # a fallback state is repeated under 'qc' this often (a window attached later)


def is_fallback(model_name: str, flags: list[str] | tuple[str, ...]) -> str:
    """The reason when a result was made by Wiener SIM in place of a network (`--model auto`'s
    domain guard or photon-count choice), '' otherwise."""
    for flag in flags:
        text = str(flag)
        if text.startswith(f"{run_file.AUTO_FLAG_PREFIX}{model_name}:") and model_name == "wiener":
            return text.split(":", 2)[2].strip()
    return ""


class RateLimit:
    """At most ``max_hz`` events per second on average, with one period of credit.

    A schedule, not a minimum gap: a 36 Hz source passes 30/s through a 30 Hz limit (a "skip
    anything closer than 1/30 s" rule passes 18/s).
    """

    def __init__(self, max_hz: float) -> None:
        if not max_hz > 0:
            raise ValueError(f"max_hz must be positive, got {max_hz}")
        self.period_s = 1.0 / max_hz
        self._due_s = -1e9

    def ready(self, now_s: float) -> bool:
        """True (and the event counted) when an event may go out at ``now_s``."""
        if now_s < self._due_s:
            return False
        self._due_s = max(self._due_s, now_s - self.period_s) + self.period_s
        return True


def wide_field_uint16(frames: np.ndarray) -> np.ndarray:
    """The rounded mean of a (P, Y, X) uint16 set as uint16 (display: 2 bytes a pixel)."""
    total = np.add.reduce(frames, axis=0, dtype=np.uint32)
    n = np.uint32(frames.shape[0])
    total += n // np.uint32(2)
    total //= n
    return total.astype(np.uint16)


class DisplayOutlet:
    """The acquisition process's display PUB, shared by threads (a ZMQ socket is not).

    What the window draws, no more: under 'raw' one 2-D image of the display channel per time
    point (pattern 0, or the wide-field mean when ``raw_view`` is "wide-field"), at most
    ``max_hz``; under 'set' the full (P, Y, X) set at most SET_MAX_HZ; the display channel's SR
    images under 'sr' (at most ``max_hz``, uint16 as stored with ``sr_scale``) and IMC splits
    under 'imc'. Each image's info carries ``acquired_s`` (wall time its raw set was acquired).
    """

    def __init__(self, publisher: DisplaySink, max_hz: float = DISPLAY_MAX_HZ,
                 set_max_hz: float = SET_MAX_HZ) -> None:
        self.publisher = publisher
        # a publisher that knows its viewers (DisplayPublisher): nothing is packed for nobody
        self._has_viewers: Callable[[], bool] = getattr(publisher, "has_viewers", lambda: True)
        self.display_channel = 0
        self.raw_view = "frame"
        self.run_id = uuid.uuid4().hex
        self._raw_limit = RateLimit(max_hz)
        self._set_limit = RateLimit(set_max_hz)
        self._sr_limit = RateLimit(max_hz)
        self._acquired_s: dict[int, float] = {}
        self._sequence = 0
        self._lock = threading.Lock()
        self._fallback: dict[int, bool] = {}  # per channel: the last result was a fallback
        self._qc_sent_s: dict[int, float] = {}

    def set_raw_view(self, view: str) -> None:
        """Publish pattern 0 ("frame") or the wide-field mean ("wide-field") under 'raw'."""
        if view not in RAW_VIEWS:
            raise ValueError(f"raw_view must be one of {RAW_VIEWS}, got {view!r}")
        self.raw_view = view

    def acquired_s(self, time_point: int) -> float | None:
        """Wall time at which ``time_point`` was offered (None once forgotten)."""
        return self._acquired_s.get(time_point)

    def offer_raw(self, point: TimePoint, acquired_s: float) -> None:
        """Publish this time point's display-channel image (and set) unless one went out
        too recently."""
        self._acquired_s[point.index] = acquired_s
        self._acquired_s.pop(point.index - _ACQUIRED_KEPT, None)
        with self._lock:
            if not self._has_viewers():
                return
        now = time.monotonic()
        for raw in point.sets:
            if raw.channel != self.display_channel:
                continue
            send_raw = self._raw_limit.ready(now)
            send_set = raw.frames.ndim == 3 and self._set_limit.ready(now)
            fields = {"time_point": point.index, "channel": raw.channel,
                      "laser_nm": raw.laser_nm, "exposure_ms": raw.exposure_ms,
                      "info": {"acquired_s": acquired_s}}
            if send_raw:
                wide = self.raw_view == "wide-field" and raw.frames.ndim == 3
                image = (wide_field_uint16(raw.frames) if wide
                         else raw.frames[0] if raw.frames.ndim == 3 else raw.frames)
                self._send("raw", Kind.WIDEFIELD if wide else Kind.RAW_SET, image, fields)
            if send_set:
                self._send("set", Kind.RAW_SET, raw.frames, fields)
            return

    def offer_result(self, message: Message) -> None:
        """Publish a worker's SR image (display channel, at most ``max_hz``) or IMC split."""
        head = message.header
        if head.kind is Kind.SR_RESULT:
            self._offer_qc(message)
            topic = "sr"
            if head.channel != self.display_channel:
                return
        elif head.kind is Kind.IMC_RESULT:
            topic = "imc"
        else:
            return
        with self._lock:
            if not self._has_viewers():
                return
            if topic == "sr" and not self._sr_limit.ready(time.monotonic()):
                return
            info: dict[str, Any] = {
                "photon_count_e": float(head.info.get("photon_count_e", float("nan"))),
                "model_name": str(head.info.get("model_name", "")),
                "acquired_s": self._acquired_s.get(head.time_point, 0.0)}
            if message.array.dtype == np.uint16:  # as the run stores it: value = stored x scale
                info["sr_scale"] = float(head.info.get("sr_scale", run_file.SR_SCALE))
            header = header_for(head.kind, self.run_id, head.sequence, message.array,
                                time_point=head.time_point, channel=head.channel, info=info)
            self.publisher.publish(topic, header, message.array)

    def _offer_qc(self, message: Message) -> None:
        """Under 'qc', for every channel: each SR result that carries a trust record (its block
        map as the payload, float32 (my, mx)); a result made by Wiener SIM in place of the
        network (with its ``auto:`` reason flag) when the channel was not in fallback, and again
        every QC_REPEAT_S while it stays so; the first result after a fallback ends."""
        head = message.header
        trust = head.info.get("trust")
        method = str(head.info.get("model_name", ""))
        flags = [str(f) for f in head.info.get("flags") or ()
                 if str(f).startswith(run_file.AUTO_FLAG_PREFIX)]
        fallback = bool(is_fallback(method, flags))
        was_fallback = self._fallback.get(head.channel, False)
        now = time.monotonic()
        repeat = now - self._qc_sent_s.get(head.channel, -1e9) >= QC_REPEAT_S
        if trust is None and fallback == was_fallback and not (fallback and repeat):
            return
        self._fallback[head.channel] = fallback
        self._qc_sent_s[head.channel] = now
        info: dict[str, Any] = {
            "photon_count_e": float(head.info.get("photon_count_e", float("nan"))),
            "model_name": method, "flags": flags,
            "acquired_s": self._acquired_s.get(head.time_point, 0.0)}
        array = np.full((1, 1), np.nan, np.float32)
        if trust is not None:
            info["trust"] = trust
            array = np.asarray(trust["raw_chi2_map"], dtype=np.float32)
        with self._lock:
            header = header_for(Kind.SR_RESULT, self.run_id, head.sequence, array,
                                time_point=head.time_point, channel=head.channel,
                                laser_nm=head.laser_nm, info=info)
            self.publisher.publish("qc", header, array)

    def _send(self, topic: str, kind: Kind, array: np.ndarray, fields: dict[str, Any]) -> None:
        with self._lock:
            self._sequence += 1
            header = header_for(kind, self.run_id, self._sequence, array, **fields)
            self.publisher.publish(topic, header, array)

    def close(self) -> None:
        """Close the PUB socket."""
        with self._lock:
            self.publisher.close()
