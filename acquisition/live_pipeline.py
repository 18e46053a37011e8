"""Live view without recording: the engine's live mode -> supervised worker -> display stream.

Built from acquisition's public parts (AcquisitionEngine live mode, WorkerSupervisor,
RawSetSender, MessageReceiver, DisplayPublisher). Nothing is written to disk. The raw path never
waits on the worker: a set the worker cannot take right now is skipped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from acquisition.engine import AcquisitionEngine, Gap, TimePoint
from acquisition.protocol import Protocol
from acquisition.rate_meter import RateMeter
from acquisition.session import SessionOptions
from acquisition.supervisor import WorkerCommand, WorkerSupervisor
from acquisition.transport import DisplayPublisher, Endpoints, MessageReceiver, RawSetSender
from acquisition.transport import open_socket as open_zmq_socket
from acquisition.wire import Kind, Message, header_for
from calibration.photon_calibration import PhotonCalibration

logger = logging.getLogger(__name__)

EventSink = Callable[[str, str], None]  # (level, text)


def plan_for(protocol: Protocol) -> Any:
    """The hardware sequence plan of a protocol (channels x patterns of its mode)."""
    from hardware.sequencing import ChannelSpec, SequencePlan

    return SequencePlan(
        channels=tuple(ChannelSpec(laser_nm=c.laser_nm, power_pct=c.power_pct,
                                   exposure_ms=c.exposure_ms) for c in protocol.channels),
        mode=protocol.mode)


@dataclass
class LiveCounters:
    """What the status panel shows about the live loop."""

    time_point: int = -1
    raw_frames: int = 0
    sr_frames: int = 0
    sr_skips: int = 0
    lost_frames: int = 0
    rig_errors: int = 0
    latency_ms: float = float("nan")
    camera: RateMeter = field(default_factory=RateMeter)
    sr: RateMeter = field(default_factory=RateMeter)


RAW_VIEWS = ("frame", "wide-field")
DISPLAY_MAX_HZ = SessionOptions().display_max_hz  # raw and SR images per second, as recording
SET_MAX_HZ = 2.0  # full raw sets for the pattern check (<= 1/10 s of CPU) and photon count (1 Hz)


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
    ``max_hz``; under 'set' the full (P, Y, X) set at most SET_MAX_HZ (pattern check, photon
    count); SR images under 'sr' (at most ``max_hz``) and IMC splits under 'imc'.
    """

    def __init__(self, publisher: DisplayPublisher, max_hz: float = DISPLAY_MAX_HZ,
                 set_max_hz: float = SET_MAX_HZ) -> None:
        self.publisher = publisher
        self.display_channel = 0
        self.raw_view = "frame"
        self.run_id = uuid.uuid4().hex
        self._raw_limit = RateLimit(max_hz)
        self._set_limit = RateLimit(set_max_hz)
        self._sr_limit = RateLimit(max_hz)
        self._sequence = 0
        self._lock = threading.Lock()

    def set_raw_view(self, view: str) -> None:
        """Publish pattern 0 ("frame") or the wide-field mean ("wide-field") under 'raw'."""
        if view not in RAW_VIEWS:
            raise ValueError(f"raw_view must be one of {RAW_VIEWS}, got {view!r}")
        self.raw_view = view

    def offer_raw(self, point: TimePoint, acquired_s: float) -> None:
        """Publish this time point's display-channel image (and set) unless one went out
        too recently."""
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

    def _send(self, topic: str, kind: Kind, array: np.ndarray, fields: dict[str, Any]) -> None:
        with self._lock:
            self._sequence += 1
            header = header_for(kind, self.run_id, self._sequence, array, **fields)
            self.publisher.publish(topic, header, array)

    def publish(self, topic: str, header: Any, array: np.ndarray) -> None:
        """Publish an SR image (at most ``max_hz``) or an IMC split (any thread)."""
        with self._lock:
            if topic == "sr" and not self._sr_limit.ready(time.monotonic()):
                return
            self.publisher.publish(topic, header, array)

    def close(self) -> None:
        """Close the PUB socket."""
        with self._lock:
            self.publisher.close()


class LivePipeline:
    """Live mode: acquire continuously, offer sets to the worker, publish raw and SR images."""

    def __init__(self, source: Any, protocol: Protocol, frame_shape: tuple[int, int],
                 endpoints: Endpoints, outlet: DisplayOutlet, on_event: EventSink,
                 context: zmq.Context, interval_s: float = 0.05, max_pending_sets: int = 2,
                 heartbeat_timeout_s: float = 5.0, hello_timeout_s: float = 180.0,
                 photons: PhotonCalibration | None = None) -> None:
        self.photons = photons
        self.protocol = protocol
        self.source = source
        self.frame_shape = frame_shape
        self.endpoints = endpoints
        self.outlet = outlet
        self.on_event = on_event
        self.context = context
        self.max_pending_sets = max_pending_sets
        self.run_id = uuid.uuid4().hex
        self.counters = LiveCounters()
        self.methods = tuple(c.reconstruction for c in protocol.channels)
        self.sr_channels = {i for i, m in enumerate(self.methods) if m != "none"}
        self.engine = AcquisitionEngine(
            source, plan_for(protocol), [c.laser_nm for c in protocol.channels],
            protocol.n_patterns, interval_s=0.0, on_time_point=self._on_time_point)
        self.live_period_s = interval_s  # paced here: a live view has no schedule to fall behind
        self.engine.gap_detected.connect(self._on_gap)
        self.supervisor: WorkerSupervisor | None = None
        self._pending: dict[tuple[int, int], float] = {}
        self._acquired_s: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._results_thread: threading.Thread | None = None
        self._sequence = 0
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._hello_timeout_s = hello_timeout_s
        self.worker_ready = False
        self.imc_channel_names: list[str] = []
        self.raw_sender: RawSetSender | None = None
        self.results: MessageReceiver | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (when any channel reconstructs) and the live acquisition loop."""
        if self.sr_channels:
            self.raw_sender = RawSetSender(self.context, self.endpoints.raw,
                                           self.max_pending_sets)
            socket = open_zmq_socket(self.context, zmq.PULL, self.endpoints.results, bind=True,
                                     RCVHWM=64)
            self.results = MessageReceiver(socket, "live results")
            command = WorkerCommand(self.endpoints.raw, self.endpoints.results, self.methods,
                                    (self.protocol.n_patterns, *self.frame_shape),
                                    mode=self.protocol.mode,
                                    calibration=self._worker_calibration(),
                                    imc_model=(self.protocol.imc_model if self.protocol.imc
                                               else None),
                                    sr_encoding="uint16",  # half the bytes to the display
                                    run_id=self.run_id)
            self.supervisor = WorkerSupervisor(
                command, self._on_worker_event, heartbeat_timeout_s=self._heartbeat_timeout_s,
                startup_timeout_s=self._hello_timeout_s, max_restarts=5)
            self.supervisor.start()
            self._results_thread = threading.Thread(target=self._results_loop,
                                                    name="live-results", daemon=True)
            self._results_thread.start()
        self.engine.start_live()

    def _worker_calibration(self) -> Path | None:
        """The camera calibration file for the worker (photon counts, offset removed).

        The protocol's file for a real rig; for the emulator its exact sensor model, written
        next to the endpoints (as a recording does).
        """
        if self.protocol.calibration is not None:
            return Path(self.protocol.calibration)
        photons = self.photons
        if photons is None:
            self.on_event("warning", "no camera calibration: SR from raw ADU, photon counts "
                                     "uncalibrated")
            return None
        folder = Path(self.endpoints.raw.removeprefix("ipc://")).parent
        return Path(photons.save(folder / "photons.h5"))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop, the results thread and the worker; close the sockets."""
        self._stop.set()
        try:
            self.engine.stop_live(timeout_s)
        finally:
            self._stop.set()
            if self._results_thread is not None:
                self._results_thread.join(timeout_s)
            if self.supervisor is not None:
                self.supervisor.stop(timeout_s)
            if self.raw_sender is not None:
                self.raw_sender.close()
            if self.results is not None:
                self.results.socket.close(linger=0)

    @property
    def running(self) -> bool:
        """True while the live loop acquires."""
        return self.engine.is_live

    def set_plan(self, protocol: Protocol) -> None:
        """Apply new powers/exposures from the next time point on (same channels and mode)."""
        if [c.laser_nm for c in protocol.channels] != [c.laser_nm for c in self.protocol.channels]:
            raise ValueError("changing laser lines needs a restart of live mode")
        if protocol.mode != self.protocol.mode:
            raise ValueError("changing the SIM mode needs a restart of live mode")
        self.engine.plan = plan_for(protocol)
        self.protocol = protocol

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current inference worker, if one runs."""
        process = self.supervisor.process if self.supervisor is not None else None
        return process.pid if process is not None and process.poll() is None else None

    @property
    def queue_depth(self) -> int:
        """Raw sets sent to the worker and not yet answered."""
        with self._lock:
            return len(self._pending)

    # --- acquisition thread -------------------------------------------------------------------

    def _on_time_point(self, point: TimePoint) -> None:
        now = time.time()
        counters = self.counters
        counters.time_point = point.index
        frames = sum(int(np.count_nonzero(raw.sequences >= 0)) for raw in point.sets)
        counters.raw_frames += frames
        counters.camera.add(frames)
        self._acquired_s[point.index] = now
        self._acquired_s.pop(point.index - 256, None)
        self.outlet.offer_raw(point, now)
        for raw in point.sets:
            if raw.channel in self.sr_channels:
                self._offer(raw)
        rest_s = self.live_period_s - (time.monotonic() - point.started_s)
        if rest_s > 0:
            self._stop.wait(rest_s)

    def _offer(self, raw: Any) -> None:
        supervisor, sender = self.supervisor, self.raw_sender
        if not raw.complete or supervisor is None or sender is None or not supervisor.ready:
            self.counters.sr_skips += 1
            return
        with self._lock:
            if len(self._pending) >= self.max_pending_sets:
                self.counters.sr_skips += 1
                return
            self._sequence += 1
            header = header_for(Kind.RAW_SET, self.run_id, self._sequence, raw.frames,
                                time_point=raw.time_point, channel=raw.channel,
                                laser_nm=raw.laser_nm, exposure_ms=raw.exposure_ms,
                                n_orientations=self.protocol.n_orientations,
                                n_phases=self.protocol.n_phases,
                                frame_sequences=tuple(int(s) for s in raw.sequences),
                                timestamps_s=tuple(float(s) for s in raw.timestamps_s))
            if sender.send(header, raw.frames):
                self._pending[(raw.time_point, raw.channel)] = time.time()
            else:
                self.counters.sr_skips += 1

    def _on_gap(self, gap: Gap) -> None:
        if gap.kind == "rig_error":
            self.counters.rig_errors += 1
            self.on_event("error", f"rig: {gap.detail}")
        else:
            self.counters.lost_frames += max(gap.count, 1)
            self.on_event("warning", f"time point {gap.time_point}: {gap.detail}")

    # --- results thread -----------------------------------------------------------------------

    def _results_loop(self) -> None:
        assert self.results is not None and self.supervisor is not None
        while not self._stop.is_set():
            message = self.results.receive(timeout_ms=100)
            if message is not None:
                self._on_result(message)
            if self.supervisor.check() is not None:
                self.worker_ready = False
                with self._lock:
                    lost = len(self._pending)
                    self._pending.clear()
                self.counters.sr_skips += lost

    def _on_result(self, message: Message) -> None:
        assert self.supervisor is not None
        head = message.header
        if head.run_id != self.run_id or not self.supervisor.owns(head.worker_id):
            if self.results is not None:  # another run's or a replaced worker's: no effect
                self.results.rejected += 1
            return
        if head.kind is Kind.HEARTBEAT:
            fatal = head.info.get("fatal")
            if fatal:
                self.on_event("error", f"inference worker cannot start: {fatal}")
                return
            hello = head.info.get("hello")
            self.supervisor.heartbeat(float(head.info.get("busy_since_s", 0.0)),
                                      hello=isinstance(hello, dict))
            if isinstance(hello, dict) and not self.worker_ready:
                self.worker_ready = True
                names = ", ".join(f"channel {int(c) + 1}: {e.get('model_name')}"
                                  for c, e in hello.get("channels", {}).items()) or "no SR"
                imc = hello.get("imc") or {}
                self.imc_channel_names = [str(n) for n in imc.get("channel_names", [])]
                extra = f", IMC-SR {imc.get('model_name')}" if imc else ""
                self.on_event("info", f"inference worker ready: {names}{extra}")
                for entry in hello.get("channels", {}).values():
                    if entry.get("note"):
                        self.on_event("warning", str(entry["note"]))
            return
        if head.run_id != self.run_id:
            return
        if head.kind is Kind.EVENT and "flushed" in head.info:
            return
        if head.kind is not Kind.IMC_RESULT:  # IMC answers later, under an older time point
            with self._lock:
                self._pending.pop((head.time_point, head.channel), None)
        if head.kind is Kind.EVENT:
            what = "IMC-SR" if head.info.get("imc") else "worker"
            self.on_event("error", f"{what}: {head.info.get('error', 'error')}")
            return
        if head.channel != self.outlet.display_channel:
            return
        acquired_s = self._acquired_s.get(head.time_point)
        latency_ms = (time.time() - acquired_s) * 1e3 if acquired_s is not None else float("nan")
        info = {"photon_count_e": float(head.info.get("photon_count_e", float("nan"))),
                "model_name": str(head.info.get("model_name", "")),
                "acquired_s": acquired_s or 0.0}
        if "sr_scale" in head.info:  # uint16 SR: shown value = stored x sr_scale
            info["sr_scale"] = float(head.info["sr_scale"])
        if head.kind is Kind.SR_RESULT:
            self.counters.sr_frames += 1
            self.counters.sr.add(1)
            self.counters.latency_ms = latency_ms
            topic = "sr"
        elif head.kind is Kind.IMC_RESULT:
            topic = "imc"
        else:
            return
        header = header_for(head.kind, self.run_id, head.sequence, message.array,
                            time_point=head.time_point, channel=head.channel, info=info)
        self.outlet.publish(topic, header, message.array)

    def _on_worker_event(self, kind: str, detail: str) -> None:
        level = "info" if kind == "worker_restarted" else "error"
        self.on_event(level, f"{kind.replace('_', ' ')}: {detail}")
