"""The GUI's acquisition process: owns the rig, runs live view and recordings, answers the GUI.

Started as ``python -m acquisition.cli.gui_host`` by the GUI (a separate process, so drawing
never takes CPU time or the GIL from acquisition). Live view and recording both feed one display
PUB (endpoint ``display``): the display channel's raw frame or wide-field ('raw'), its full sets
at 2 Hz ('set'), SR images ('sr', uint16 x sr_scale) and IMC splits ('imc'). A REP socket
answers the GUI's commands (status, live, stop_live, record, stop_record, display, quit);
errors from the rig, the worker and the recorder are kept as events that the GUI shows.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import zmq

from acquisition.display_outlet import DisplayOutlet
from acquisition.host_wire import pack, unpack
from acquisition.protocol import Protocol, ProtocolError, sequence_plan
from acquisition.rate_meter import RateMeter
from acquisition.session import Progress, RunSession, SessionError, SessionOptions
from acquisition.transport import DisplayPublisher, Endpoints, open_socket
from calibration.photon_calibration import PhotonCalibration
from hardware.rig import Rig

logger = logging.getLogger(__name__)

Reply = dict[str, object]  # a control reply to the GUI (msgpack map)


class HostEventRecord(TypedDict):
    """One event as the GUI receives it in a status reply."""

    id: int
    level: str  # info | warning | error
    text: str
    wall_s: float


class CameraInfo(TypedDict):
    """What the GUI needs of the camera: frame shape, pixel size, laser lines, the photon
    count's offset and electrons per ADU, bit depth (saturation) and the rig it came from."""

    shape: list[int]
    pixel_size_nm: float
    lines_nm: list[int]
    offset_adu: float
    electrons_per_adu: float
    bit_depth: int
    rig: str


def _number(request: Mapping[str, object], key: str, default: float) -> float:
    """A numeric field of a GUI request; ValueError naming the field when it is not one."""
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"request field {key!r} must be a number, got {value!r}")
    return float(value)

MAX_EVENTS = 500
FINISH_WITHIN_S = 45.0  # default limit for outstanding SR when a recording is stopped to quit
EVENT_LOG_PERIOD_S = 1.0  # at most one event per second per logger and level from log records


class EventLog:
    """Numbered events (thread-safe); repeated identical texts are folded into one line."""

    def __init__(self) -> None:
        self._events: deque[HostEventRecord] = deque(maxlen=MAX_EVENTS)
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, level: str, text: str) -> None:
        """Append an event (any thread)."""
        with self._lock:
            self._events.append(HostEventRecord(id=self._next_id, level=level, text=text,
                                                wall_s=time.time()))
            self._next_id += 1

    def since(self, event_id: int) -> list[HostEventRecord]:
        """Events with id greater than ``event_id``, oldest first."""
        with self._lock:
            return [e for e in self._events if e["id"] > event_id]


class LogRecordRelay(logging.Handler):
    """Turns WARNING+ log records of the acquisition process into GUI events, rate-limited."""

    def __init__(self, events: EventLog) -> None:
        super().__init__(level=logging.WARNING)
        self.events = events
        self._last: dict[tuple[str, int], float] = {}
        self._suppressed: dict[tuple[str, int], int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record unless its logger spoke at this level less than 1 s ago."""
        key = (record.name, record.levelno)
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < EVENT_LOG_PERIOD_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        extra = self._suppressed.pop(key, 0)
        text = record.getMessage() + (f" (+{extra} similar)" if extra else "")
        level = "error" if record.levelno >= logging.ERROR else "warning"
        self.events.add(level, f"{record.name}: {text}")


def scratch_folder(parent: Path, name: str) -> Path:
    """A private sub-folder for one pipeline's ipc endpoints."""
    folder = parent / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class OpenedRig:
    """A rig opened for the GUI, what the GUI needs to turn ADU into photons, and the camera's
    photon calibration when it is known without a calibration file (the emulator's)."""

    rig: Rig
    camera: CameraInfo
    photons: PhotonCalibration | None = None


# opens the rig at a frame size (Y, X); the CLI root builds it (emulator or Micro-Manager .cfg)
RigOpener = Callable[[tuple[int, int]], OpenedRig]


class SessionHost:
    """The acquisition process's state: rig, live view or recording (each a RunSession on the
    one display outlet), events, counters."""

    def __init__(self, open_rig: RigOpener, folder: Path, size_px: tuple[int, int] = (128, 128),
                 resizable: bool = False, live_interval_s: float = 0.05,
                 context: zmq.Context | None = None, display_endpoint: str | None = None,
                 metadata: Mapping[str, object] | None = None) -> None:
        self.open_rig = open_rig
        self.resizable = resizable  # an emulator reopens at a protocol's ROI; a rig sets its ROI
        self.metadata = dict(metadata or {})
        self.folder = folder
        self.size_px = size_px
        self.live_interval_s = live_interval_s
        self.context = context or zmq.Context.instance()
        self.events = EventLog()
        self.display_endpoint = display_endpoint or f"ipc://{folder}/display"
        self.outlet = DisplayOutlet(DisplayPublisher(self.context, self.display_endpoint))
        self._use(open_rig(size_px))
        self.live: RunSession | None = None
        self.live_protocol: Protocol | None = None
        self.recording: RecordingThread | None = None
        self.last_run: dict[str, object] = {}  # outcome of the newest finished recording
        self._n_live = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-command")
        self.busy: Future[None] | None = None

    def _use(self, opened: OpenedRig) -> None:
        self.rig, self.camera, self.photons = opened.rig, opened.camera, opened.photons

    # --- commands -----------------------------------------------------------------------------

    def handle(self, request: Mapping[str, object]) -> Reply:
        """Answer one GUI command; failures come back as ``{"ok": False, "error": ...}``."""
        cmd = request.get("cmd")
        try:
            if cmd == "status":
                return self.status(int(_number(request, "since", 0)))
            if cmd in ("live", "record"):
                start = self.start_live if cmd == "live" else self.start_record
                protocol = self._protocol(request["protocol"])
                channel = int(_number(request, "display_channel", 0))
                return self._later(cmd, lambda: start(protocol, channel))
            if cmd == "display":  # what the window's raw view shows: "frame" / "wide-field"
                self.outlet.set_raw_view(str(request.get("raw_view", "frame")))
                return {"ok": True}
            if cmd == "stop_live":
                return self._later("stop_live", self.stop_live)
            if cmd == "stop_record":  # optional: finish_within_s (drain limit), resume (live)
                if self.recording is not None:
                    within = (None if request.get("finish_within_s") is None
                              else _number(request, "finish_within_s", 0.0))
                    self.recording.stop(within,
                                        resume=bool(request.get("resume", True)))
                return {"ok": True}
            if cmd == "quit":
                return {"ok": True, "quit": True}
        except (ProtocolError, ValueError, KeyError, RuntimeError, OSError, zmq.ZMQError) as exc:
            text = f"{cmd}: {exc}"
            self.events.add("error", text)
            return {"ok": False, "error": text}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _later(self, name: str, action: Callable[[], object]) -> Reply:
        """Run a slow command (worker start/stop) off the control thread; errors become events."""
        def run() -> None:
            try:
                action()
            except (ProtocolError, ValueError, RuntimeError, OSError, zmq.ZMQError) as exc:
                self.events.add("error", f"{name}: {exc}")
                logger.error("%s failed: %s", name, exc)

        self.busy = self._executor.submit(run)
        return {"ok": True, "accepted": name}

    def _protocol(self, data: object) -> Protocol:
        if isinstance(data, Protocol):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"protocol must be a table, got {type(data).__name__}")
        return Protocol.parse_checked(data, source="GUI protocol")

    def _ensure_roi(self, protocol: Protocol) -> None:
        """Match the camera to the protocol's ROI (the emulator is reopened at the new size)."""
        roi = protocol.roi
        if roi is None:
            return
        shape = (roi.height, roi.width)
        if tuple(self.rig.camera.shape) == shape:
            return
        if self.resizable:
            self.rig.close()
            self.size_px = shape
            self._use(self.open_rig(shape))
        else:
            self.rig.camera.set_roi(roi.x, roi.y, roi.width, roi.height)
            self.camera["shape"] = [int(n) for n in self.rig.camera.shape]

    def start_live(self, data: Protocol | Mapping[str, object], display_channel: int = 0
                   ) -> Reply:
        """Start live view, or apply new powers/exposures to the running one."""
        recording = self.recording
        if (recording is not None and recording.is_alive()
                and recording is not threading.current_thread()):
            raise RuntimeError("a recording is running; stop it before changing live view")
        protocol = self._protocol(data)
        plan = sequence_plan(protocol)
        self.rig.check_plan(plan)
        self.outlet.display_channel = display_channel
        live = self.live
        if live is not None and live.live and self._same_pipeline(live.protocol, protocol):
            live.set_plan(plan, protocol)
            self.live_protocol = protocol
            return {"ok": True, "applied": "plan"}
        self.stop_live()
        self._ensure_roi(protocol)
        self._n_live += 1
        endpoints = Endpoints.ipc(scratch_folder(self.folder, f"live{self._n_live}"))
        self.live = self.session(protocol, endpoints, SessionOptions(
            max_pending_sets=2, heartbeat_timeout_s=5.0))
        self.live.start_live(self.live_interval_s)
        self.live_protocol = protocol
        self.events.add("info", f"live: {len(protocol.channels)} channel(s), {protocol.mode}, "
                                f"{'/'.join(c.reconstruction for c in protocol.channels)}")
        return {"ok": True, "applied": "restart"}

    @staticmethod
    def _same_pipeline(old: Protocol, new: Protocol) -> bool:
        """True when only powers/exposures differ (no restart of camera or worker needed)."""
        def key(p: Protocol) -> tuple[object, ...]:
            return (p.mode, p.roi, p.imc, p.imc_model, p.calibration,
                    tuple((c.laser_nm, c.reconstruction) for c in p.channels))
        return key(old) == key(new)

    def stop_live(self) -> None:
        """Stop live view (bounded wait)."""
        if self.live is not None:
            live, self.live = self.live, None
            live.stop_live()

    def session(self, protocol: Protocol, endpoints: Endpoints, options: SessionOptions,
                **extra: Any) -> RunSession:
        """A RunSession on this process's rig and display outlet (live view or recording)."""
        return RunSession(self.rig, sequence_plan(protocol), protocol, self._frame_shape(),
                          float(self.rig.camera.pixel_size_nm), endpoints=endpoints,
                          options=options, context=self.context, photon_calibration=self.photons,
                          outlet=self.outlet, on_event=self.events.add, **extra)

    def start_record(self, data: Protocol | Mapping[str, object], display_channel: int = 0
                     ) -> Reply:
        """Stop live view and record the protocol with a RunSession on a thread."""
        if self.recording is not None and self.recording.is_alive():
            raise RuntimeError("a recording is already running")
        protocol = self._protocol(data)
        self.rig.check_plan(sequence_plan(protocol))
        resume = self.live_protocol if self.live is not None else None
        self.stop_live()
        self._ensure_roi(protocol)
        self.outlet.display_channel = display_channel
        protocol.output.parent.mkdir(parents=True, exist_ok=True)
        self.recording = RecordingThread(self, protocol, resume)
        self.recording.start()
        self.events.add("info", f"recording {protocol.timepoints} time point(s) to "
                                f"{protocol.output}")
        return {"ok": True, "path": str(protocol.output)}

    def _frame_shape(self) -> tuple[int, int]:
        shape = self.rig.camera.shape
        return int(shape[0]), int(shape[1])

    def status(self, since: int = 0) -> Reply:
        """Counters for the status panel, plus events newer than ``since``."""
        busy = self.busy is not None and not self.busy.done()
        base: Reply = {"ok": True, "camera": self.camera, "busy": busy,
                                "display_endpoint": self.display_endpoint,
                                "last_run": self.last_run,
                                "events": self.events.since(since), "pid": os.getpid()}
        recording = self.recording
        if recording is not None and recording.is_alive():
            return {**base, **recording.status()}
        live = self.live
        if live is not None:
            c = live.counters
            state = "live" if live.live else "stopped"
            return {**base, "state": state, "camera_fps": c.camera.rate_per_s(),
                    "sr_fps": c.sr.rate_per_s(), "latency_ms": c.latency_ms,
                    "queue_depth": live.pending_sr(), "sr_skips": c.sr_skips,
                    "lost_frames": c.lost_frames, "time_point": c.time_point,
                    "time_points_total": None, "frames_written": 0, "mb_per_s": 0.0,
                    "file_path": "", "worker_pid": live.worker_pid,
                    "worker_ready": live.worker_ready, "raw_frames": c.raw_frames,
                    "imc_channel_names": live.imc_channel_names,
                    "sr_frames": c.sr_frames}
        return {**base, "state": "idle"}

    def close(self) -> None:
        """Stop everything and release the rig."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.recording is not None:
            self.recording.stop(FINISH_WITHIN_S, resume=False)
            self.recording.join(FINISH_WITHIN_S + 30.0)  # drain limit + file close, worker stop
        self.stop_live()
        self.outlet.close()
        self.rig.close()


class RecordingThread(threading.Thread):
    """One recording RunSession on its own thread, on the host's display outlet."""

    def __init__(self, host: SessionHost, protocol: Protocol, resume: Protocol | None) -> None:
        super().__init__(name="recording", daemon=True)
        self.host = host
        self.protocol = protocol
        self.resume = resume
        endpoints = Endpoints.ipc(scratch_folder(host.folder, f"run{id(self):x}"))
        metadata = {"camera": host.camera, "source": "livesim gui", **host.metadata}
        self.session = host.session(protocol, endpoints, SessionOptions(), metadata=metadata,
                                    worker_log=protocol.output.with_suffix(".worker.log"))
        self.bytes_rate = RateMeter()
        self.progress: Progress | None = None
        self._last_bytes = 0
        self.stopping = False

    def run(self) -> None:
        """Record; afterwards report the outcome and resume live view if it was on."""
        try:
            summary = self.session.run(progress=self._on_progress)
        except (SessionError, OSError, RuntimeError, ValueError) as exc:
            self.host.events.add("error", f"recording failed: {exc}")
            summary = None
        sealed, why = run_file_sealed(self.protocol.output)
        self.host.last_run = {"path": str(self.protocol.output), "sealed": sealed,
                              "problem": why, "error": summary.error if summary else "failed",
                              "time_points": summary.engine.time_points if summary else 0,
                              "sr_frames": summary.sr_frames if summary else 0}
        if summary is not None:
            level = "error" if summary.error else "info"
            self.host.events.add(level, (
                f"recording done: {summary.engine.time_points} time points "
                f"({summary.engine.stopped_reason}), "
                f"{summary.raw_frames} raw / {summary.sr_frames} SR frames -> {summary.path}"
                f"; events: {readable_counts(summary.events)}"
                + (f"; error: {summary.error}" if summary.error else "")))
        if not sealed and self.protocol.output.exists():
            self.host.events.add("error", f"run file not sealed ({why}): run `livesim recover "
                                          f"{self.protocol.output}`")
        if self.resume is not None:
            try:
                self.host.start_live(self.resume, self.host.outlet.display_channel)
            except (ProtocolError, ValueError, RuntimeError) as exc:
                self.host.events.add("error", f"could not resume live view: {exc}")

    def stop(self, finish_within_s: float | None = None, resume: bool = True) -> None:
        """Stop after the time point in progress; outstanding SR is waited for at most
        ``finish_within_s`` (None: the session's idle limit); ``resume``: live view after."""
        self.stopping = True
        if not resume:
            self.resume = None
        self.session.stop(finish_within_s)

    def _on_progress(self, progress: Progress) -> None:
        self.bytes_rate.add(progress.bytes_written - self._last_bytes)
        self._last_bytes = progress.bytes_written
        self.progress = progress

    def status(self) -> Reply:
        """Counters of the recording for the GUI."""
        p = self.progress
        session = self.session
        c = session.counters
        free = shutil.disk_usage(self.protocol.output.parent).free
        state = "stopping" if self.stopping else ("recording" if p is not None else "starting")
        return {"state": state, "sr_pending": session.pending_sr(),
                "autopilot": session.autopilot_status(),
                "finish_left_s": session.finish_left_s(),
                "camera_fps": c.camera.rate_per_s(), "sr_fps": c.sr.rate_per_s(),
                "latency_ms": c.latency_ms,
                "queue_depth": p.sr_lag_time_points if p else 0,
                "sr_skips": p.skips if p else 0, "lost_frames": p.gaps if p else 0,
                "time_point": (p.time_points_done - 1) if p else -1,
                "time_points_total": self.protocol.timepoints,
                "frames_written": p.raw_frames if p else 0,
                "mb_per_s": self.bytes_rate.rate_per_s() / 1e6,
                "file_path": str(self.protocol.output), "free_disk_bytes": free,
                "worker_pid": session.worker_pid, "worker_ready": session.worker_ready,
                "raw_frames": p.raw_frames if p else 0, "sr_frames": p.sr_frames if p else 0}


def readable_counts(counts: dict[str, int]) -> str:
    """'run_end 1, sr_skip 3' for the event pane ('none' when empty), not a Python dict."""
    return ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in sorted(counts.items())) \
        or "none"


def run_file_sealed(path: Path) -> tuple[bool, str]:
    """(True, "") when a run file was closed cleanly: a ``run_end`` event and no fault reserve
    left; otherwise (False, what is wrong)."""
    import h5py

    from acquisition import run_file

    if not path.exists():
        return False, "no file"
    try:
        with h5py.File(path, "r") as h5:
            if run_file.FAULT_RESERVE in h5:
                return False, "fault reserve still allocated"
            if "run_end" not in run_file.event_counts(h5):
                return False, "no run_end event"
    except OSError as exc:
        return False, f"cannot open: {exc}"
    return True, ""


def serve(host: SessionHost, control_endpoint: str, parent_pid: int = 0) -> None:
    """Answer GUI commands until 'quit' or until the GUI process is gone."""
    socket = open_socket(host.context, zmq.REP, control_endpoint, bind=True)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    try:
        while True:
            if parent_pid and os.getppid() != parent_pid:
                logger.error("GUI process %d is gone; stopping", parent_pid)
                break
            if not poller.poll(200):
                continue
            try:
                request = unpack(socket.recv())
                reply = host.handle(request)
            except ValueError as exc:
                reply = {"ok": False, "error": str(exc)}
            socket.send(pack(reply))
            if reply.get("quit"):
                break
    finally:
        socket.close(linger=0)
        host.close()
