"""RunSession: the one live path, engine -> recorder, workers (ZeroMQ) and display.

`livesim run` records with :meth:`RunSession.run`; the GUI's acquisition process runs the same
session for its recordings and, without a file, for live view (:meth:`RunSession.start_live`).
The acquisition thread writes every raw set to the recorder (when recording) and offers it to a
worker over a bounded, non-blocking PUSH; when the workers are behind, dead or restarting, SR
for that set is skipped and the skip is counted (and recorded). A results thread receives SR
images, heartbeats and worker events, writes the results in time-point order, publishes them to
the display outlet, and lets the supervisors restart a dead or hung worker. The raw path never
waits on inference.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from acquisition import run_file
from acquisition.autopilot import RunAutopilot
from acquisition.display_outlet import DISPLAY_MAX_HZ, DisplayOutlet
from acquisition.engine import (
    AcquisitionEngine,
    EngineReport,
    FrameSource,
    Gap,
    RawSet,
    SetBufferPool,
    StageMover,
    TimePoint,
)
from acquisition.protocol import Protocol
from acquisition.rate_meter import RateMeter
from acquisition.raw_ring import RawRing, ring_supported
from acquisition.recorder import QcRecord, RecorderError, RunLayout, RunRecorder
from acquisition.result_order import InOrderRelease
from acquisition.result_ring import ResultRing, ResultRings
from acquisition.supervisor import WorkerCommand, WorkerLimits, WorkerPool, WorkerSupervisor
from acquisition.timing_summary import LatencyHistogram
from acquisition.transport import (
    ClientAllowList,
    CurveKeys,
    DisplayPublisher,
    Endpoints,
    MessageReceiver,
    RawSetSender,
    WorkerLink,
    open_socket,
)
from acquisition.wire import Header, Kind, Message, header_for
from calibration.photon_calibration import PhotonCalibration
from hardware.sequencing import SequencePlan

logger = logging.getLogger(__name__)

EventSink = Callable[[str, str], None]  # (level: info | warning | error, text)


class SessionError(RuntimeError):
    """The run could not start (worker did not come up, bad layout, ...)."""


@dataclass(frozen=True)
class SessionOptions:
    """Tuning of a run: queue bounds, timeouts, display, durability."""

    max_pending_sets: int | None = None  # sets in flight before SR is skipped; None: by bytes
    max_pending_bytes: int = 256 * 1024 * 1024  # raw bytes in flight to the worker (memory)
    hello_timeout_s: float = 180.0
    drain_idle_s: float = 30.0  # at the end, wait while results keep coming, at most this idle
    heartbeat_s: float = 0.5
    heartbeat_timeout_s: float = 10.0  # generous: a loaded machine can starve a thread for seconds
    busy_timeout_s: float = 120.0
    max_restarts: int = 5
    display: bool = True
    display_max_hz: float = DISPLAY_MAX_HZ  # per topic (see acquisition.display_outlet)
    fsync: bool = True
    recorder_queue: int = 64  # raw sets waiting for the disk, at most (and see the next)
    recorder_queue_bytes: int = 1024**3  # ... and at most this many bytes of them (memory)
    acquire_timeout_s: float = 10.0
    workers: int = 1  # inference worker processes; each has its own raw PUSH and supervisor
    # workers on other machines: per endpoint tcp://HOST:PORT, raw sets at PORT and results at
    # PORT + 1, both CurveZMQ servers with ``curve`` (required); ``curve_clients``: the client
    # public keys (z85) let in (empty: any client that knows the server key)
    remote_workers: tuple[str, ...] = ()
    curve: CurveKeys | None = None
    curve_clients: tuple[bytes, ...] = ()
    trust_every: int = 10  # the workers' trust record of every Nth set per channel (0: off)
    # raw sets by reference through a shared-memory ring for the workers this run starts
    # (acquisition.raw_ring; Linux); remote workers always get payloads inline
    shared_memory: bool = True
    ring_max_bytes: int = 512 * 1024 * 1024  # at most this much shared memory for the ring


@dataclass(frozen=True)
class Progress:
    """A snapshot for the progress display."""

    time_points_done: int
    elapsed_s: float
    raw_frames: int
    sr_frames: int
    sr_lag_time_points: int
    bytes_written: int
    skips: int
    gaps: int
    worker_restarts: int

    @property
    def raw_fps(self) -> float:
        """Raw frames per second so far."""
        return self.raw_frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """MB/s written to the run file so far."""
        return self.bytes_written / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class SessionCounters:
    """Live counters for a status display (both modes); rates over a sliding window."""

    time_point: int = -1
    raw_frames: int = 0
    sr_frames: int = 0
    sr_skips: int = 0
    lost_frames: int = 0
    latency_ms: float = float("nan")
    camera: RateMeter = field(default_factory=RateMeter)
    sr: RateMeter = field(default_factory=RateMeter)


@dataclass
class RunSummary:
    """What a finished run did."""

    path: Path
    run_id: str
    engine: EngineReport
    raw_frames: int = 0
    sr_frames: int = 0
    imc_frames: int = 0
    events: dict[str, int] = field(default_factory=dict)
    rejected_messages: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    worker_restarts: int = 0
    sr_per_worker: dict[int, int] = field(default_factory=dict)  # SR images stored, by slot
    sr_latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # constant memory
    error: str = ""
    models: dict[str, Any] = field(default_factory=dict)
    recorded_s: float = 0.0  # first time point started -> run file closed

    def latency_percentile_ms(self, q: float) -> float:
        """A percentile of raw-sent -> SR-received latency (within 1.2 %; NaN without SR)."""
        return self.sr_latency.percentile_ms(q)


@dataclass(frozen=True)
class _SrToWrite:
    """An SR result checked and waiting for its turn to be written (time-point order)."""

    image: np.ndarray
    photon_count: float
    latency_ms: float
    inference_ms: float
    flags: tuple[str, ...]
    late: bool
    sim_params: np.ndarray | None = None  # Wiener's pattern parameters (n_orientations, 4)
    qc: QcRecord | None = None  # the trust record (every Nth set, worker --trust-every)
    method: str = ""  # the method that made the image (model_name; per set with --model auto)


def _sim_params(value: object) -> np.ndarray | None:
    """The wire's ``sim_params`` (a list of [kx, ky, phase, modulation] rows) as an array."""
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    return array if array.ndim == 2 and array.shape[1] == 4 else None


def _qc_record(value: object) -> QcRecord | None:
    """The wire's ``trust`` map (validated by acquisition.wire.TrustInfo) as a QcRecord."""
    if not isinstance(value, Mapping):
        return None
    try:
        return QcRecord(float(value["raw_chi2"]), float(value["resolution_scaled_pearson"]),
                        float(value["beyond_support_fraction"]),
                        np.asarray(value["raw_chi2_map"], dtype=np.float32))
    except (KeyError, TypeError, ValueError):
        return None


def _tcp_port_plus(endpoint: str, n: int, what: str, problem: str) -> str:
    """``tcp://HOST:PORT`` with PORT + n; SessionError naming ``what`` for any other endpoint."""
    head, _, port = endpoint.rpartition(":")
    if endpoint.startswith("tcp://") and port.isdigit() and int(port) > 0:
        return f"{head}:{int(port) + n}"
    raise SessionError(f"{what} {endpoint!r}: {problem}")


def worker_raw_endpoint(endpoint: str, slot: int, n_workers: int) -> str:
    """The raw endpoint of worker ``slot``: the run's own for one worker; with several, an ipc
    path with ``-<slot>`` appended, or a TCP port plus ``slot``."""
    if n_workers == 1:
        return endpoint
    if endpoint.startswith("ipc://"):
        return f"{endpoint}-{slot}"
    return _tcp_port_plus(endpoint, slot, "raw endpoint",
                          "several workers need ipc:// or tcp:// with a fixed port")


RING_MAX_SLOTS = 1024  # sets in the shared-memory ring at most (more in flight: heap, inline)
RESULT_RING_MAX_SLOTS = 64  # SR images in one worker's result ring at most
RING_POPULATE_WAIT_S = 30.0  # the first time point waits this long at most for the ring's pages
EMULATOR_BYTES_PER_PX = 400  # emulator working set per camera pixel (measured 280-330 B)


def recorder_queue_sets(frame_shape: tuple[int, int], n_patterns: int,
                        options: SessionOptions) -> int:
    """How many raw sets the recorder queue holds: its count limit, or fewer for big frames
    (``recorder_queue_bytes``), never below 2."""
    raw_set = n_patterns * frame_shape[0] * frame_shape[1] * 2 + frame_shape[0] * frame_shape[1] * 4
    return max(2, min(options.recorder_queue, options.recorder_queue_bytes // raw_set))


def memory_needed_bytes(frame_shape: tuple[int, int], n_patterns: int, n_channels: int,
                        options: SessionOptions, emulator: bool = False) -> int:
    """Memory a run needs at its peak: the recorder queue and the sets in flight to the worker
    (raw uint16 + wide-field float32 each), SR images, and the emulator's working set."""
    pixels = frame_shape[0] * frame_shape[1]
    raw_set = n_patterns * pixels * 2 + pixels * 4
    in_flight = max(2 * raw_set, options.max_pending_bytes) if (
        options.max_pending_sets is None) else options.max_pending_sets * raw_set
    queue = recorder_queue_sets(frame_shape, n_patterns, options)
    buffers = raw_set * (queue + 2 * n_channels + 4) + in_flight
    sr = 4 * pixels * 4 * 8  # float32 SR and its stored/displayed copies
    return buffers + sr + (EMULATOR_BYTES_PER_PX * pixels if emulator else 0)


def available_memory_bytes() -> int:
    """Memory this process may still use: MemAvailable (psutil), capped by RLIMIT_AS."""
    import resource

    import psutil

    available = int(psutil.virtual_memory().available)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return available if soft == resource.RLIM_INFINITY else min(available, soft)


def check_memory(frame_shape: tuple[int, int], n_patterns: int, n_channels: int,
                 options: SessionOptions, emulator: bool = False) -> None:
    """Refuse (SessionError) a plan whose buffers do not fit in memory, before anything is
    allocated or written (a MemoryError mid-run would lose the file's accounting)."""
    needed = memory_needed_bytes(frame_shape, n_patterns, n_channels, options, emulator)
    available = available_memory_bytes()
    if needed > available:
        raise SessionError(
            f"a {frame_shape[1]} x {frame_shape[0]} px ROI with {n_channels} channel(s) of "
            f"{n_patterns} patterns needs about {needed / 2**30:.1f} GiB of memory"
            f"{' (with the emulator)' if emulator else ''}; {available / 2**30:.1f} GiB is "
            "available: choose a smaller ROI")


class RunSession:
    """Runs a protocol on a frame source, with supervised workers when any channel
    reconstructs: recorded (:meth:`run`) or live without a file (:meth:`start_live`)."""

    def __init__(self, source: FrameSource, plan: SequencePlan, protocol: Protocol,
                 frame_shape: tuple[int, int], pixel_size_nm: float,
                 metadata: Mapping[str, Any] | None = None, endpoints: Endpoints | None = None,
                 options: SessionOptions | None = None, context: zmq.Context | None = None,
                 worker_log: Path | None = None,
                 calibration: Mapping[str, np.ndarray] | None = None,
                 photon_calibration: PhotonCalibration | None = None,
                 outlet: DisplayOutlet | None = None, on_event: EventSink | None = None,
                 on_file_closed: Callable[[], None] | None = None) -> None:
        self.source = source
        self.plan = plan
        self.protocol = protocol
        self.frame_shape = frame_shape
        self.pixel_size_nm = pixel_size_nm
        self.metadata = dict(metadata or {})
        self.endpoints = endpoints or Endpoints.ipc()  # None: a temporary folder, its own
        self.options = options or SessionOptions()
        self.context = context or zmq.Context.instance()
        self.worker_log = worker_log
        self.calibration = calibration
        self.photon_calibration = photon_calibration
        self.autopilot: RunAutopilot | None = None
        # per channel: the newest live trust record (raw_chi2, resolution-scaled Pearson)
        self._latest_trust: dict[int, tuple[float, float]] = {}
        self.outlet = outlet  # a shared outlet (the GUI's process); else one of our own
        self.on_event: EventSink = on_event or (lambda level, text: None)
        self.on_file_closed = on_file_closed  # after the run file closed, before workers stop
        self.counters = SessionCounters()
        self.display: DisplayOutlet | None = None
        self.imc_channel_names: list[str] = []
        self._live_period_s = 0.0
        self._results_thread: threading.Thread | None = None
        self._worker_calibration: Path | None = protocol.calibration
        self._scratch: Path | None = None
        self.run_id = uuid.uuid4().hex
        self.methods = tuple(c.reconstruction for c in protocol.channels)
        self.sr_channels = {i for i, m in enumerate(self.methods) if m != "none"}
        self.engine: AcquisitionEngine | None = None
        self.recorder: RunRecorder | None = None
        self.pool: WorkerPool | None = None
        self.hello: dict[str, Any] = {}
        self._labels: dict[int, str] = {}
        self._pending: dict[tuple[int, int], tuple[float, int]] = {}  # -> (sent_s, slot)
        # sets lent to a worker by reference: their ring slot stays theirs until answered
        self._lent: dict[tuple[int, int], np.ndarray] = {}
        self.ring: RawRing | None = None
        self.result_rings: ResultRings | None = None  # SR images by reference, local workers
        self._in_flight: list[int] = []  # per worker slot: raw sets sent, not yet answered
        self.remote_results: list[MessageReceiver] = []
        self._allow_list: ClientAllowList | None = None
        self._next_slot = 0
        self._in_order: InOrderRelease[_SrToWrite] = InOrderRelease()
        self._sr_per_worker: Counter[int] = Counter()
        self._rejected: Counter[str] = Counter()  # messages dropped after decoding, by reason
        self._sr_done: dict[int, bytearray] = {}  # per channel, 1 per time point with SR stored
        self.thread_failure = ""  # set when a thread of the run died: the run fails loudly
        self._lock = threading.Lock()
        self._results_stop = threading.Event()
        self._result_handled = threading.Event()  # wakes the drain at once, not every 20 ms
        self._draining = False  # the results thread then polls in short steps (quick join)
        self._latest_sr_time_point = -1
        self._latest_raw_time_point = -1
        self._gaps = 0
        self._start_s = 0.0
        self._out_sequence = 0
        self._latencies = LatencyHistogram()  # bounded: a run of days must not grow
        self._imc_flushed = threading.Event()
        self._imc_out_of_domain = False  # the last IMC result was flagged (warn on the change)
        self._stop_requested = threading.Event()
        self._finish_by_s: float | None = None  # monotonic deadline for the drain (stop())

    # --- setup ------------------------------------------------------------------------------

    @property
    def supervisor(self) -> WorkerSupervisor | None:
        """The first worker's supervisor (the only one unless ``options.workers`` > 1)."""
        return self.pool.supervisors[0] if self.pool is not None else None

    def _open_sockets(self) -> None:
        ep, opts = self.endpoints, self.options
        n = opts.workers
        if n < 0 or n + len(opts.remote_workers) < 1:
            raise SessionError(f"workers must be >= 1 (local + remote), got {n} local and "
                               f"{len(opts.remote_workers)} remote")
        if opts.remote_workers and opts.curve is None:
            raise SessionError("remote workers (--worker-endpoint) need CurveZMQ server keys "
                               "(--curve-secret)")
        total = n + len(opts.remote_workers)
        set_bytes = 2 * self.protocol.n_patterns * self.frame_shape[0] * self.frame_shape[1]
        self.max_pending = opts.max_pending_sets or max(2, opts.max_pending_bytes // set_bytes)
        self.max_pending_per_worker = max(1, self.max_pending // total)
        self._raw_endpoints = [worker_raw_endpoint(ep.raw, i, n) for i in range(n)]
        self._allow_list = (ClientAllowList(self.context, opts.curve_clients)
                            if opts.remote_workers and opts.curve_clients else None)
        self.raw_senders: list[WorkerLink] = [
            RawSetSender(self.context, endpoint, self.max_pending_per_worker)
            for endpoint in self._raw_endpoints]
        self.raw_senders += [RawSetSender(self.context, endpoint, self.max_pending_per_worker,
                                          keys=opts.curve) for endpoint in opts.remote_workers]
        self.raw_sender = self.raw_senders[0]
        self._in_flight = [0] * total
        self.ring = self._make_ring(total)
        self.result_rings = self._make_result_rings()
        results = open_socket(self.context, zmq.PULL, ep.results, bind=True, RCVHWM=64)
        self.results = MessageReceiver(results, "results", self.result_rings)
        self.remote_results = [  # one per remote worker: the socket tells the slot
            MessageReceiver(open_socket(self.context, zmq.PULL, _tcp_port_plus(
                e, 1, "worker endpoint", "expected tcp://HOST:PORT with a fixed port (results go "
                "to PORT + 1)"),
                                        bind=True, keys=opts.curve, RCVHWM=64), f"results {e}")
            for e in opts.remote_workers]
        if self.outlet is not None:
            self.display = self.outlet
        elif opts.display:
            self.display = DisplayOutlet(DisplayPublisher(self.context, ep.display),
                                         max_hz=opts.display_max_hz)

    def _shares_memory(self) -> bool:
        """Payloads go by reference (the raw ring, the result rings): shared memory is on,
        this run starts a worker of its own and reconstructs something, and Linux."""
        opts = self.options
        return bool(opts.shared_memory and opts.workers > 0 and self.sr_channels
                    and ring_supported())

    def _make_ring(self, n_workers: int) -> RawRing | None:
        """The run's shared-memory ring for its local workers (None: off, unsupported, no
        local worker, or not even two sets fit in ``ring_max_bytes``)."""
        opts = self.options
        if not self._shares_memory():
            return None
        set_bytes = (len(self.protocol.channels) * self.protocol.n_patterns
                     * self.frame_shape[0] * self.frame_shape[1] * 2)
        wanted = (recorder_queue_sets(self.frame_shape, self.protocol.n_patterns, opts)
                  + self.max_pending + 4)
        n_slots = min(wanted, opts.ring_max_bytes // set_bytes, RING_MAX_SLOTS)
        if n_slots < 2:
            return None
        try:
            return RawRing(n_slots, set_bytes, fallback=SetBufferPool(max_idle=2))
        except OSError as exc:  # e.g. no memfd in a sandbox: payloads go inline
            logger.warning("no shared-memory ring (%s); raw sets go over ZeroMQ", exc)
            return None

    def _make_result_rings(self) -> ResultRings | None:
        """A result ring per local worker, with a slot per SR image that may wait in the
        recorder queue or be in flight from it (None: off, unsupported, no local worker, or
        not two slots each in half of ``ring_max_bytes``)."""
        opts = self.options
        if not self._shares_memory():
            return None
        scale = 3 if self.protocol.mode == "nlsim" else 2  # the SR shape's, before the hello
        slot_bytes = 2 * scale * self.frame_shape[0] * scale * self.frame_shape[1]  # uint16
        # the recorder queue holds a raw set and an end item beside each SR image it holds
        queued = recorder_queue_sets(self.frame_shape, self.protocol.n_patterns, opts) // 2
        n_slots = min(queued + self.max_pending_per_worker + 4, RESULT_RING_MAX_SLOTS,
                      opts.ring_max_bytes // 2 // (slot_bytes * opts.workers))
        if n_slots < 2:
            return None
        rings: list[ResultRing] = []
        try:
            for _ in range(opts.workers):
                rings.append(ResultRing(n_slots, slot_bytes))
        except OSError as exc:
            for ring in rings:
                ring.close()
            logger.warning("no shared-memory result rings (%s); SR images go over ZeroMQ", exc)
            return None

        def running_slot(worker_id: str) -> int | None:  # a stale worker's slots are not read
            pool = self.pool
            return (pool.slot_of(worker_id) if pool is not None
                    and pool.current(worker_id) is not None else None)

        return ResultRings(rings, running_slot)

    def _launch_workers(self) -> WorkerPool:
        """Start the worker processes (their hellos come later, on the results socket)."""
        n = self.options.workers + len(self.options.remote_workers)
        if n > 1 and self.protocol.imc:
            raise SessionError(f"IMC-SR needs every SR frame of its channel in one worker (its "
                               f"temporal window); run it with one worker, not {n}")
        raw_shape = (self.protocol.n_patterns, *self.frame_shape)
        command = WorkerCommand(self.endpoints.raw, self.endpoints.results, self.methods,
                                raw_shape, mode=self.protocol.mode,
                                heartbeat_s=self.options.heartbeat_s,
                                log_file=self.worker_log, calibration=self._worker_calibration,
                                pattern_parameters=self.protocol.pattern_calibration,
                                imc_model=self.protocol.imc_model if self.protocol.imc else None,
                                sr_encoding="uint16", run_id=self.run_id,
                                trust_every=self.options.trust_every)
        ring_fd = self.ring.reader_fd if self.ring is not None else None
        results = self.result_rings.rings if self.result_rings is not None else []
        commands = [replace(command, raw_endpoint=endpoint, raw_ring_fd=ring_fd,
                            result_ring_fd=results[i].writer_fd if results else None)
                    for i, endpoint in enumerate(self._raw_endpoints)]
        options = self.options
        limits = WorkerLimits(options.heartbeat_timeout_s, options.hello_timeout_s,
                              options.busy_timeout_s, options.max_restarts)
        pool = self.pool = WorkerPool(commands, self._on_worker_event, limits,
                                      remote_endpoints=options.remote_workers)
        pool.start()
        return pool

    def _receive(self, timeout_ms: int) -> Message | None:
        """The next result from any worker; a remote worker's hello binds its id to its slot
        (its results socket says which slot it is)."""
        for index, receiver in enumerate(self.remote_results):
            message = receiver.receive(timeout_ms=0)
            if message is not None:
                if (self.pool is not None and message.header.kind is Kind.HEARTBEAT
                        and isinstance(message.header.info.get("hello"), dict)):
                    self.pool.adopt(self.options.workers + index, message.header.worker_id)
                return message
        return self.results.receive(timeout_ms=timeout_ms)

    def _start_worker(self) -> None:
        """Start the workers and wait until each has said hello (same models everywhere)."""
        n = self.options.workers + len(self.options.remote_workers)
        pool = self._launch_workers()
        hellos: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + self.options.hello_timeout_s
        try:
            while time.monotonic() < deadline and len(hellos) < n:
                if self._stop_requested.is_set():
                    raise SessionError("stopped before the inference workers were ready "
                                       "(no run file was created)")
                message = self._receive(timeout_ms=200)
                if message is not None:
                    reason = self._foreign(message)
                    if reason:
                        self._reject(reason, message)
                        continue
                supervisor = pool.current(message.header.worker_id) if message else None
                if message is not None and message.header.kind is Kind.HEARTBEAT:
                    slot = pool.slot_of(message.header.worker_id)
                    fatal = message.header.info.get("fatal")
                    if fatal:
                        raise SessionError(f"inference worker {slot} cannot start: {fatal}")
                    hello = message.header.info.get("hello")
                    if isinstance(hello, dict) and supervisor is not None and slot is not None:
                        hellos[slot] = hello
                        supervisor.heartbeat(hello=True)
                for slot, supervisor in enumerate(pool.supervisors):
                    if not supervisor.alive:
                        code = supervisor.process.returncode if supervisor.process else None
                        where = f"; see {self.worker_log}" if self.worker_log else ""
                        raise SessionError(f"inference worker {slot} exited with code {code} "
                                           f"before it was ready{where}")
            if len(hellos) < n:
                raise SessionError(f"{n - len(hellos)} of {n} inference workers not ready "
                                   f"within {self.options.hello_timeout_s} s")
        except SessionError:
            pool.stop()
            raise
        self._on_hello(hellos[0])
        models = {slot: {c: e.get("model_sha256") for c, e in h.get("channels", {}).items()}
                  for slot, h in hellos.items()}
        if any(m != models[0] for m in models.values()):
            pool.stop()
            raise SessionError(f"the workers loaded different models: {models}")

    def _on_hello(self, hello: Mapping[str, Any]) -> None:
        """The first hello: the models (and their notes) for the layout, labels and events."""
        self.hello = dict(hello)
        for c in sorted(self.sr_channels):
            entry = hello.get("channels", {}).get(str(c))
            if entry is not None:
                self._labels[c] = run_file.sr_label(str(entry.get("model_name") or self.methods[c]))
        names = ", ".join(f"channel {int(c) + 1}: {e.get('model_name')}"
                          for c, e in hello.get("channels", {}).items()) or "no SR"
        imc = hello.get("imc") or {}
        self.imc_channel_names = [str(n) for n in imc.get("channel_names", [])]
        extra = f", IMC-SR {imc.get('model_name')}" if imc else ""
        self.on_event("info", f"inference worker ready: {names}{extra}")
        for entry in hello.get("channels", {}).values():
            if entry.get("note"):
                self.on_event("warning", str(entry["note"]))

    def _layout(self) -> RunLayout:
        channels = self.hello.get("channels", {})
        shapes = set()
        for c in sorted(self.sr_channels):
            entry = channels.get(str(c))
            if entry is None:
                raise SessionError(f"worker has no reconstruction for channel {c}")
            shapes.add(tuple(entry["sr_shape"]))
        if len(shapes) > 1:
            raise SessionError(f"channels reconstruct to different SR shapes {sorted(shapes)}")
        sr_shape = shapes.pop() if shapes else tuple(2 * n for n in self.frame_shape)
        if len(sr_shape) != 2:
            raise SessionError(f"SR images must be 2-D, worker reports {list(sr_shape)}")
        imc = self.hello.get("imc") or {}
        if self.protocol.imc and not imc:
            raise SessionError("IMC-SR is on, but the worker did not load an IMC-SR model")
        imc_names = tuple(str(n) for n in imc.get("channel_names", ()))
        if self.protocol.imc and len(imc_names) != 3:
            raise SessionError(f"IMC-SR model {imc.get('model_name')!r} separates "
                               f"{len(imc_names)} structures {list(imc_names)}; /imc needs 3")
        return RunLayout(
            n_channels=len(self.protocol.channels), n_orientations=self.protocol.n_orientations,
            n_phases=self.protocol.n_phases, frame_shape=self.frame_shape,
            sr_shape=(int(sr_shape[0]), int(sr_shape[1])), pixel_size_nm=self.pixel_size_nm,
            sr_models=tuple(sorted(set(self._labels.values()))), imc=self.protocol.imc,
            channel_names=tuple(f"{c.laser_nm}nm" for c in self.protocol.channels),
            mda=self.protocol.mda_layout(),
            **({"imc_channel_names": imc_names} if imc_names else {}))

    def _run_metadata(self) -> dict[str, Any]:
        models = {str(c): {"method": self.methods[c], "dataset": f"sr/{self._labels[c]}",
                           **self.hello.get("channels", {}).get(str(c), {})}
                  for c in sorted(self.sr_channels)}
        if self.hello.get("imc"):
            models["imc"] = {"dataset": "imc", **self.hello["imc"]}
        return {**self.metadata, "run_id": self.run_id,
                "software_version": run_file.software_version(),
                "protocol": self.protocol.model_dump(mode="json"), "models": models,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "endpoints": {"raw": self.endpoints.raw, "results": self.endpoints.results,
                              "display": self.endpoints.display}}

    # --- the run ----------------------------------------------------------------------------

    def acquire_timeout_s(self) -> float:
        """Per time point: the configured floor, or 3x the summed exposures plus 2 s if longer."""
        exposure_s = sum(c.exposure_ms for c in self.protocol.channels) / 1000.0
        return max(self.options.acquire_timeout_s, 3.0 * exposure_s * self.protocol.n_patterns
                   + 2.0)

    def _load_calibration(self) -> None:
        """The camera calibration: the protocol's file, or the photon calibration passed in.

        Its maps go to /calibration; the worker gets a file to compute photon counts with.
        """
        if self.protocol.calibration is None:
            photons = self.photon_calibration
            if photons is None:
                return
            if photons.shape != self.frame_shape:
                raise SessionError(f"photon calibration maps are {photons.shape}, frames are "
                                   f"{self.frame_shape}")
            self._scratch = Path(tempfile.mkdtemp(prefix="livesim-calibration-"))
            self._worker_calibration = photons.save(self._scratch / "photons.h5")
            if self.calibration is None:
                self.calibration = photons.maps()
            return
        if self.calibration is not None:
            return
        from calibration.camera_calibration import CameraCalibration

        try:
            maps = CameraCalibration.load(self.protocol.calibration)
        except (OSError, ValueError) as exc:
            raise SessionError(f"{self.protocol.calibration}: {exc}") from exc
        if maps.shape != self.frame_shape:
            raise SessionError(f"{self.protocol.calibration}: maps are {maps.shape}, frames are "
                               f"{self.frame_shape} (calibrate with this ROI)")
        self.calibration = {name: getattr(maps, name) for name in
                            ("offset_adu", "gain_adu_per_e", "read_noise_e", "defect_mask")}

    def run(self, progress: Callable[[Progress], None] | None = None) -> RunSummary:
        """Start the worker, create the file, acquire every time point, drain, close."""
        rows = self.protocol.acquisition_rows()
        stage = self.source if isinstance(self.source, StageMover) else None
        if rows is not None and stage is None:
            raise SessionError("the protocol has stage positions / z planes (mda), but this "
                               "frame source cannot move a stage")
        self._load_calibration()
        self._open_sockets()
        try:
            if self.sr_channels:
                self._start_worker()
            layout = self._layout()
            try:
                self.recorder = RunRecorder(self.protocol.output, layout, self._run_metadata(),
                                            calibration=self.calibration,
                                            queue_size=recorder_queue_sets(
                                                self.frame_shape, self.protocol.n_patterns,
                                                self.options),
                                            fsync=self.options.fsync,
                                            overwrite=self.protocol.overwrite)
            except RecorderError as exc:  # disk full, no permission...: nothing recorded yet
                raise SessionError(str(exc)) from exc
            for c in sorted(self.sr_channels):
                note = self.hello.get("channels", {}).get(str(c), {}).get("note")
                if note:
                    self.recorder.record_event("reconstruction_fallback", detail=note)
            needs_calibration = any(self.methods[c] != "passthrough" for c in self.sr_channels)
            if self.hello.get("calibrated") is False and needs_calibration:
                self.recorder.record_event("uncalibrated", detail=(
                    "no camera calibration: photon counts are NaN and the camera offset is not "
                    "subtracted before reconstruction (Wiener SR degrades); set calibration"))
            self.autopilot = self._make_autopilot()
            self.engine = self._engine(self.protocol.interval_s,
                                       lambda point: self._on_time_point(point, progress),
                                       recording=True,
                                       rows=rows, stage=stage)
            self._results_thread = threading.Thread(target=self._results_loop, name="results",
                                                    daemon=True)
            self._results_thread.start()
            if self.ring is not None and not self.ring.wait_populated(RING_POPULATE_WAIT_S):
                logger.info("raw ring not fully populated; its pages come with the frames")
            if self.result_rings is not None and not self.result_rings.wait_populated(
                    RING_POPULATE_WAIT_S):
                logger.info("result rings not fully populated; pages come with the images")
            self._start_s = time.monotonic()
            if self._stop_requested.is_set():
                self.engine.stop()  # stopped while the worker started: record nothing more
            report = self.engine.run(self.protocol.n_events)
            summary = RunSummary(self.protocol.output, self.run_id, report,
                                 sr_latency=self._latencies)
            self._drain()
            self._results_stop.set()
            self._results_thread.join(5.0)
            # every result is in: close the file before the worker exits (its interpreter's
            # teardown takes 1-3 s, which the run file need not wait for)
            summary = self._finish(summary)
            if self.on_file_closed is not None:
                self.on_file_closed()
        finally:
            self._shut_down(join_s=5.0)
        return summary

    def _finish(self, summary: RunSummary) -> RunSummary:
        assert self.recorder is not None
        recorder = self.recorder
        if recorder.error is not None:
            summary.error = str(recorder.error)
        elif summary.engine.stopped_reason not in ("completed", "stopped"):
            summary.error = summary.engine.stopped_reason
        if self.thread_failure and not summary.error:
            summary.error = self.thread_failure
        summary.rejected_by_reason = self.rejections()
        summary.rejected_messages = sum(summary.rejected_by_reason.values())
        summary.worker_restarts = self.pool.restarts if self.pool else 0
        summary.sr_per_worker = dict(self._sr_per_worker)
        summary.models = self.hello.get("channels", {})
        try:
            if recorder.error is None:
                recorder.record_event("run_end", detail={
                    "time_points": summary.engine.time_points,
                    "stopped": summary.engine.stopped_reason,
                    "max_drift_s": summary.engine.max_drift_s,
                    "mean_drift_s": summary.engine.mean_drift_s,
                    "rejected_messages": summary.rejected_messages,
                    "rejected_by_reason": summary.rejected_by_reason,
                    "worker_restarts": summary.worker_restarts})
            recorder.close()
        except RecorderError as exc:
            summary.error = str(exc)
        summary.recorded_s = time.monotonic() - self._start_s
        summary.raw_frames = recorder.stats.raw_frames
        summary.sr_frames = recorder.stats.sr_frames
        summary.imc_frames = recorder.stats.imc_frames
        summary.events = dict(recorder.stats.events)
        return summary

    def stop(self, finish_within_s: float | None = None) -> None:
        """Stop after the time point in progress (Ctrl-C, GUI stop button).

        ``finish_within_s``: the drain waits for outstanding SR at most this long from now
        (results still missing then are recorded as ``sr_skip``), so the run file is sealed
        within a known time even when SR lags far behind acquisition.
        """
        if finish_within_s is not None:
            self._finish_by_s = time.monotonic() + max(0.0, finish_within_s)
        self._stop_requested.set()
        if self.engine is not None:
            self.engine.stop()

    def finish_left_s(self) -> float | None:
        """Seconds left of the drain limit set by :meth:`stop` (None: no limit)."""
        if self._finish_by_s is None:
            return None
        return max(0.0, self._finish_by_s - time.monotonic())

    def pending_sr(self) -> int:
        """SR results still expected from the worker (sets sent, not yet answered)."""
        with self._lock:
            return len(self._pending)

    def _engine(self, interval_s: float, on_time_point: Callable[[TimePoint], None],
                recording: bool, **where: Any) -> AcquisitionEngine:
        return AcquisitionEngine(
            self.source, self.plan, [c.laser_nm for c in self.protocol.channels],
            self.protocol.n_patterns, interval_s=interval_s, timeout_s=self.acquire_timeout_s(),
            on_time_point=on_time_point, buffers=self.ring, widefields=recording, **where)

    # --- live view (no file) --------------------------------------------------------------------

    def start_live(self, period_s: float = 0.05) -> None:
        """Acquire continuously on a thread, at most one time point per ``period_s``, offering
        sets to the workers and images to the display; nothing is written. The workers start
        in the background (raw images show at once); :meth:`stop_live` ends it all."""
        self._load_calibration()
        if self.protocol.calibration is None and self.photon_calibration is None:
            self.on_event("warning", "no camera calibration: SR from raw ADU, photon counts "
                                     "uncalibrated")
        self._open_sockets()
        if self.sr_channels:
            self._launch_workers()
        self._live_period_s = period_s
        self.engine = self._engine(0.0, self._on_live_time_point,  # paced, not scheduled
                                   recording=False)
        self._results_thread = threading.Thread(target=self._results_loop, name="live-results",
                                                daemon=True)
        self._results_thread.start()
        self._start_s = time.monotonic()
        self.engine.start_live()

    def stop_live(self, timeout_s: float = 10.0) -> None:
        """Stop live view: the loop, the results thread and the workers (bounded waits)."""
        self._results_stop.set()
        try:
            if self.engine is not None:
                self.engine.stop_live(timeout_s)
        finally:
            self._shut_down(join_s=timeout_s, stop_s=timeout_s)

    @property
    def live(self) -> bool:
        """True while live view acquires."""
        return self.engine is not None and self.engine.is_live

    def set_plan(self, plan: SequencePlan, protocol: Protocol) -> None:
        """Apply new powers/exposures from the next time point on (same channels and mode)."""
        if [c.laser_nm for c in protocol.channels] != [c.laser_nm for c in self.protocol.channels]:
            raise ValueError("changing laser lines needs a restart of live mode")
        if protocol.mode != self.protocol.mode:
            raise ValueError("changing the SIM mode needs a restart of live mode")
        self.plan = plan
        if self.engine is not None:
            self.engine.plan = plan
        self.protocol = protocol

    @property
    def worker_ready(self) -> bool:
        """True while a worker that said hello runs."""
        return bool(self.pool is not None and self.pool.ready_slots())

    @property
    def worker_pid(self) -> int | None:
        """Process id of the (first) inference worker, if one runs."""
        process = self.supervisor.process if self.supervisor is not None else None
        return process.pid if process is not None and process.poll() is None else None

    def _on_live_time_point(self, point: TimePoint) -> None:
        self._count_and_show(point)
        for raw in point.sets:
            if raw.channel in self.sr_channels:
                self._offer_to_worker(raw)
        self._latest_raw_time_point = point.index
        rest_s = self._live_period_s - (time.monotonic() - point.started_s)
        if rest_s > 0:
            self._results_stop.wait(rest_s)

    # --- both modes ------------------------------------------------------------------------------

    def _shut_down(self, join_s: float, stop_s: float = 10.0) -> None:
        """The results thread, the workers, the sockets and the run's temporary files."""
        self._results_stop.set()
        if self._results_thread is not None:
            self._results_thread.join(join_s)
        if self.pool is not None:
            self.pool.stop(stop_s)
        for sender in self.raw_senders:
            sender.close()
        self.results.socket.close(linger=0)
        for receiver in self.remote_results:
            receiver.socket.close(linger=0)
        if self._allow_list is not None:
            self._allow_list.stop()
        if self.display is not None and self.display is not self.outlet:
            self.display.close()
        if self.ring is not None:  # the workers are stopped: nothing maps it any more
            with self._lock:
                self._lent.clear()
            self.ring.close()
        if self.result_rings is not None:
            self.result_rings.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        self.endpoints.remove_temporary_folder()  # its own: nothing of a run left in /tmp

    def _count_and_show(self, point: TimePoint) -> None:
        """Counters, gap events and the display's raw image of a time point."""
        counters = self.counters
        counters.time_point = point.index
        frames = sum(raw.frame_count for raw in point.sets)
        counters.raw_frames += frames
        counters.camera.add(frames)
        for gap in point.gaps:
            self._on_gap(gap)
        if self.display is not None:
            self.display.offer_raw(point, time.time())

    def _on_gap(self, gap: Gap) -> None:
        self._gaps += 1
        if gap.kind == "rig_error":
            self.on_event("error", f"rig: {gap.detail}")
        else:
            self.counters.lost_frames += max(gap.count, 1)
            self.on_event("warning", f"time point {gap.time_point}: {gap.detail}")

    def _on_time_point(self, point: TimePoint, progress: Callable[[Progress], None] | None
                       ) -> None:
        recorder = self.recorder
        assert recorder is not None and self.engine is not None
        self._count_and_show(point)
        try:
            for gap in point.gaps:
                recorder.record_event(gap.kind, point.index, gap.first_sequence, gap.detail)
            for raw in point.sets:
                recorder.write_raw_set(point.index, raw.channel, raw.frames, raw.timestamps_s,
                                       raw.sequences, raw.widefield)
                if raw.channel in self.sr_channels:
                    self._offer_to_worker(raw)
            whole = (len(point.sets) == len(self.protocol.channels)
                     and all(raw.complete for raw in point.sets))
            recorder.end_time_point(point.index, complete=whole)
            if self.autopilot is not None:
                self._steer_light(point)
        except RecorderError as exc:
            logger.error("stopping the run: %s", exc)
            self.engine.stop()
            return
        self._latest_raw_time_point = point.index
        if progress is not None:
            progress(self.progress())

    def autopilot_status(self) -> dict[str, dict[str, object]]:
        """The autopilots' state per laser line (empty without one), for the GUI."""
        return self.autopilot.status() if self.autopilot is not None else {}

    def _make_autopilot(self) -> RunAutopilot | None:
        """The photon-budget autopilot of the channels that ask for one (needs photon counts,
        so a camera or photon calibration)."""
        settings = [c.autopilot for c in self.protocol.channels]
        if not any(s is not None for s in settings):
            return None
        maps = self.calibration
        if maps is None:
            raise SessionError("the autopilot needs photon counts: give the protocol a camera "
                               "calibration (livesim calibrate camera)")
        if "electrons_per_adu" in maps:
            per_adu = np.asarray(maps["electrons_per_adu"], dtype=np.float64)
        else:
            per_adu = 1.0 / np.asarray(maps["gain_adu_per_e"], dtype=np.float64)
        return RunAutopilot(settings, self.plan, np.asarray(maps["offset_adu"]), per_adu)

    def _steer_light(self, point: TimePoint) -> None:
        """Between time points: the autopilots set the next time point's light (an event per
        change, with its reason; one 'autopilot' row per channel and time point)."""
        assert self.autopilot is not None and self.recorder is not None
        assert self.engine is not None
        plan, decisions = self.autopilot.after_time_point(
            [(raw.channel, raw.frames) for raw in point.sets if raw.complete],
            dict(self._latest_trust))
        for channel, count, decision in decisions:
            self.recorder.record_event("autopilot", point.index, detail={
                "channel": channel, "photon_count_e": round(count, 3),
                "power_pct": decision.setting.power_pct,
                "exposure_ms": decision.setting.exposure_ms, "changed": decision.changed,
                "target_reachable": decision.target_reachable, "reason": decision.reason})
            laser_nm = self.protocol.channels[channel].laser_nm
            if not decision.target_reachable:
                self.on_event("warning", f"autopilot {laser_nm} nm: {decision.reason}")
            elif decision.changed:
                self.on_event("info", f"autopilot {laser_nm} nm: "
                              f"{decision.setting.power_pct:.3g} % x "
                              f"{decision.setting.exposure_ms:.3g} ms ({decision.reason})")
        if plan is not None:
            self.plan = plan
            self.engine.change_plan(plan)

    def _offer_to_worker(self, raw: RawSet) -> None:
        """Send a raw set to the ready worker with the fewest sets in flight, or record why
        its SR is skipped (incomplete set, no worker ready, every worker behind)."""
        reason = ""
        ready = self.pool.ready_slots() if self.pool is not None else []
        if not raw.complete:
            reason = "incomplete raw set"
        elif not ready:
            reason = "worker not running (restarting or given up)"
        else:
            with self._lock:
                open_slots = [i for i in ready if self._in_flight[i] < self.max_pending_per_worker]
                if len(self._pending) >= self.max_pending or not open_slots:
                    reason = f"worker behind ({len(self._pending)} sets in flight)"
                else:
                    n = len(self._in_flight)  # fewest in flight; ties: round robin
                    order = sorted(open_slots, key=lambda i: (self._in_flight[i],
                                                              (i - self._next_slot) % n))
                    sequence = self._next_sequence()
                    fields = {"time_point": raw.time_point, "channel": raw.channel,
                              "laser_nm": raw.laser_nm, "exposure_ms": raw.exposure_ms,
                              "n_orientations": self.protocol.n_orientations,
                              "n_phases": self.protocol.n_phases,
                              "frame_sequences": tuple(raw.sequences.tolist()),
                              "timestamps_s": tuple(raw.timestamps_s.tolist())}
                    reason = "worker queue full"
                    where = (self.ring.reference_info(raw.frames) if self.ring is not None
                             else None)
                    by_reference = (header_for(Kind.RAW_SET, self.run_id, sequence, raw.frames,
                                               info=where, **fields)
                                    if where is not None else None)
                    inline: Header | None = None  # made when a worker takes the set over ZeroMQ
                    for slot in order:  # a socket that refuses (peer gone): the next worker
                        sender = self.raw_senders[slot]
                        if by_reference is not None and slot < self.options.workers:
                            header, local = by_reference, True
                            sent = sender.send_reference(by_reference)
                        else:
                            if inline is None:
                                inline = header_for(Kind.RAW_SET, self.run_id, sequence,
                                                    raw.frames, **fields)
                            header, local = inline, False
                            sent = sender.send(inline, raw.frames)
                        if sent:
                            key = (raw.time_point, raw.channel)
                            self._pending[key] = (header.sent_s, slot)
                            if local:
                                self._lent[key] = raw.frames  # the slot stays the worker's
                            self._in_flight[slot] += 1
                            self._next_slot = slot + 1
                            reason = ""
                            break
        if reason:
            self._skip(raw.time_point, raw.channel, reason, int(raw.sequences[0]))

    def _skip(self, time_point: int, channel: int, reason: str, sequence: int = -1) -> None:
        """Count a set that gets no SR (and record it when recording)."""
        self.counters.sr_skips += 1
        if self.recorder is not None:
            self.recorder.record_event("sr_skip", time_point, sequence,
                                       f"channel {channel}: {reason}")

    def _next_sequence(self) -> int:
        self._out_sequence += 1
        return self._out_sequence

    # --- results thread ---------------------------------------------------------------------

    def _results_loop(self) -> None:
        """The results thread; if it dies, the run stops and fails loudly (never silently)."""
        try:
            while not self._results_stop.is_set():
                # stop is seen within 25 ms, within 2 ms at the end of a run (it waits for this)
                message = self._receive(timeout_ms=2 if self._draining else 25)
                if message is not None:
                    try:
                        self._on_result(message)
                    except RecorderError as exc:
                        logger.error("results: %s", exc)
                        if self.engine is not None:
                            self.engine.stop()
                    self._result_handled.set()
                if self.pool is not None:
                    for slot, _problem in self.pool.check():
                        self._forget_pending("worker died before returning it", slot)
        except Exception as exc:  # thread edge: a bug here must stop the run, not SR silently
            self._thread_died("results", exc)

    def _thread_died(self, name: str, exc: BaseException) -> None:
        """Record a dead thread in /events, stop acquisition, make the run's exit non-zero."""
        logger.exception("the %s thread died", name)
        self.thread_failure = f"{name} thread died: {type(exc).__name__}: {exc}"
        self._record_now("fault", self.thread_failure)
        if self.engine is not None:
            self.engine.stop()

    def rejections(self) -> dict[str, int]:
        """Messages rejected so far, by reason (malformed ones counted by the receiver)."""
        counts = dict(self._rejected)
        if self.results.rejected:
            counts["malformed"] = self.results.rejected
        return counts

    def _reject(self, reason: str, message: Message | None = None) -> None:
        """Count (and, for the first of each reason and every power of two, log) a drop."""
        self._rejected[reason] += 1
        n = self._rejected[reason]
        if n & (n - 1) == 0:
            head = message.header if message is not None else None
            logger.warning("results: rejected %s (#%d): %s t=%s channel=%s run %.16s worker "
                           "%.16s", reason, n, head.kind if head else "-",
                           head.time_point if head else "-", head.channel if head else "-",
                           head.run_id if head else "-", head.worker_id if head else "-")

    def _on_heartbeat(self, message: Message) -> None:
        head = message.header
        supervisor = self.pool.current(head.worker_id) if self.pool is not None else None
        if supervisor is None:  # a killed worker's last words, or not ours
            self._reject("heartbeat not from a current worker", message)
            return
        fatal = head.info.get("fatal")
        if fatal:
            self.on_event("error", f"inference worker cannot start: {fatal}")
            return
        hello = head.info.get("hello")
        supervisor.heartbeat(float(head.info.get("busy_since_s", 0.0)),
                             hello=isinstance(hello, dict))
        if isinstance(hello, dict):
            if not self.hello:  # live view: the workers started in the background
                self._on_hello(hello)
            elif self.recorder is not None:
                self._check_restarted_models(hello, self.recorder)

    def _foreign(self, message: Message) -> str:
        """Why a message is not this run's ('' when it is): every kind must carry the run id
        (a remote worker, started on its own, learns it only from its first raw set: its
        heartbeats may carry none), and come from a worker id this run started or adopted."""
        head = message.header
        slot = self.pool.slot_of(head.worker_id) if self.pool is not None else None
        remote = slot is not None and slot >= self.options.workers
        if head.run_id != self.run_id and not (remote and head.kind is Kind.HEARTBEAT
                                               and head.run_id == ""):
            return "foreign run id"
        if slot is None:
            return "not from a worker of this run"
        return ""

    def _on_result(self, message: Message) -> None:
        """Act on one validated message, after checking it belongs to this run and worker."""
        head = message.header
        recorder = self.recorder
        reason = self._foreign(message)
        if reason:
            self._reject(reason, message)
            return
        if head.kind is Kind.HEARTBEAT:
            self._on_heartbeat(message)
            return
        if not 0 <= head.time_point <= self._latest_raw_time_point + 1 or (
                head.channel not in self._labels and head.kind is not Kind.EVENT):
            self._reject("no matching raw set", message)
            return
        if head.kind is Kind.IMC_RESULT:
            self._on_imc(message)
            return
        if head.kind is Kind.EVENT and "flushed" in head.info:
            self._imc_flushed.set()
            return
        if head.kind is Kind.SR_RESULT and self._sr_stored(head.time_point, head.channel):
            self._reject("duplicate result", message)
            if recorder is not None:
                recorder.record_event("sr_duplicate", head.time_point, -1,
                                      f"channel {head.channel}: a second SR result arrived; "
                                      "the first one is kept")
            return
        key = (head.time_point, head.channel)
        with self._lock:
            sent = self._pending.pop(key, None)
            self._lent.pop(key, None)
            if sent is not None:
                self._in_flight[sent[1]] -= 1
        sent_s = sent[0] if sent is not None else None
        if head.kind is Kind.EVENT:
            error = str(head.info.get("error", "worker error"))
            self.on_event("error", f"{'IMC-SR' if head.info.get('imc') else 'worker'}: {error}")
            if recorder is not None:
                kind = "imc_failed" if head.info.get("imc") else "sr_failed"
                recorder.record_event(kind, head.time_point, -1, error)
                self._write_in_order(recorder)
            return
        if head.kind is not Kind.SR_RESULT or head.channel not in self._labels:
            self._reject("unexpected kind", message)
            return
        latency_ms = (time.time() - float(head.info.get("raw_sent_s", head.sent_s))) * 1e3
        if recorder is not None and not self._hold_sr(message, recorder, sent_s, latency_ms):
            return
        counters = self.counters
        counters.sr_frames += 1
        counters.sr.add(1)
        counters.latency_ms = latency_ms
        if recorder is None:
            self._latencies.add(latency_ms)
            self._latest_sr_time_point = max(self._latest_sr_time_point, head.time_point)
        if self.display is not None:
            self.display.offer_result(message)

    def _hold_sr(self, message: Message, recorder: RunRecorder, sent_s: float | None,
                 latency_ms: float) -> bool:
        """Check an SR result and hold it for writing in time-point order; False (and the
        failure recorded) when it cannot go into this run's file."""
        head = message.header
        key = (head.time_point, head.channel)
        image = message.array
        problem = ""
        if image.dtype == np.uint16 and head.info.get("sr_scale") != run_file.SR_SCALE:
            problem = (f"channel {head.channel}: uint16 SR with scale "
                       f"{head.info.get('sr_scale')!r}, not the file's")
        elif image.shape != recorder.layout.sr_shape:
            problem = (f"channel {head.channel}: SR shape {message.array.shape} is not the "
                       f"run's {recorder.layout.sr_shape}")
        if problem:
            recorder.record_event("sr_failed", head.time_point, -1, problem)
            self._write_in_order(recorder)
            return False
        timings = head.info.get("timings_ms", {})
        inference_ms = float(sum(timings.values())) if timings else float("nan")
        slot = self.pool.slot_of(head.worker_id) if self.pool is not None else None
        if slot is not None:
            self._sr_per_worker[slot] += 1
        self._mark_sr_stored(head.time_point, head.channel)  # held now: a later one is a duplicate
        qc = _qc_record(head.info.get("trust"))
        if qc is not None:
            self._latest_trust[head.channel] = (qc.raw_chi2, qc.resolution_scaled_pearson)
        self._in_order.hold(key, _SrToWrite(
            image, float(head.info.get("photon_count_e", float("nan"))), latency_ms, inference_ms,
            tuple(str(f) for f in head.info.get("flags") or ()), late=sent_s is None,
            sim_params=_sim_params(head.info.get("sim_params")),
            qc=qc, method=str(head.info.get("model_name", ""))))
        self._write_in_order(recorder)
        return True

    def _write_in_order(self, recorder: RunRecorder, everything: bool = False) -> None:
        """Write the held SR results that nothing sent earlier is still owed before, in
        time-point order (several workers answer out of order); ``everything`` at the end."""
        if everything:
            ready = self._in_order.release_all()
        else:
            with self._lock:
                outstanding = list(self._pending)
            ready = self._in_order.release(outstanding)
        for (t, c), sr in ready:
            if sr.late:
                recorder.record_event("sr_late", t, -1,
                                      f"channel {c}: result after its skip was recorded")
            for kind, detail in run_file.flag_events(c, sr.flags):  # never stored silently
                recorder.record_event(kind, t, -1, detail)
            recorder.write_sr(t, c, self._labels[c], sr.image, sr.photon_count, sr.latency_ms,
                              sr.inference_ms, sim_params=sr.sim_params, qc=sr.qc,
                              method=sr.method)
            self._latencies.add(sr.latency_ms)
            self._latest_sr_time_point = max(self._latest_sr_time_point, t)

    def _sr_stored(self, time_point: int, channel: int) -> bool:
        done = self._sr_done.get(channel)
        return done is not None and time_point < len(done) and bool(done[time_point])

    def _mark_sr_stored(self, time_point: int, channel: int) -> None:
        done = self._sr_done.setdefault(channel, bytearray())
        if time_point >= len(done):  # amortised growth: one byte a time point and channel
            done.extend(bytes(max(time_point + 1 - len(done), len(done))))
        done[time_point] = 1

    def _on_imc(self, message: Message) -> None:
        """Write an IMC-SR split (3, sY, sX) when recording and offer it to the display."""
        head = message.header
        recorder = self.recorder
        expected = (3, *recorder.layout.sr_shape) if recorder is not None else None
        if not self.protocol.imc or (expected is not None and message.array.shape != expected):
            self._reject("IMC result does not fit", message)
            logger.warning("IMC result %s for t=%d rejected (IMC %s, expected %s)",
                           message.array.shape, head.time_point,
                           "on" if self.protocol.imc else "off", expected)
            return
        if recorder is not None:
            recorder.write_imc(head.time_point, message.array)
        self._check_imc_domain(head.time_point, head.info.get("flags", []))
        if self.display is not None:
            self.display.offer_result(message)

    def _check_imc_domain(self, time_point: int, flags: list[str]) -> None:
        """Record an `imc_out_of_domain` event per flagged time point; warn when it starts."""
        prefix = f"{run_file.IMC_OUT_OF_DOMAIN}: "
        reasons = [flag[len(prefix):] for flag in flags if flag.startswith(prefix)]
        if reasons and self.recorder is not None:
            self.recorder.record_event(run_file.IMC_OUT_OF_DOMAIN, time_point, -1, reasons[0])
        if reasons and not self._imc_out_of_domain:
            self.on_event("warning", f"IMC-SR t={time_point}: {reasons[0]}")
        self._imc_out_of_domain = bool(reasons)

    def _flush_imc(self) -> None:
        """Ask the worker for the temporal IMC model's last frame and wait (bounded) for it."""
        supervisor = self.supervisor  # IMC-SR runs with one worker
        if not self.protocol.imc or supervisor is None or not supervisor.ready:
            return
        header = header_for(Kind.EVENT, self.run_id, self._next_sequence(), None,
                            time_point=max(self._latest_raw_time_point, 0),
                            channel=min(self.sr_channels), info={"command": "flush"})
        if not self.raw_sender.send_event(header):
            logger.warning("could not ask the worker to flush IMC-SR")
            return
        left_s = self.finish_left_s()
        wait_s = self.options.drain_idle_s if left_s is None else min(left_s + 1.0,
                                                                      self.options.drain_idle_s)
        if not self._imc_flushed.wait(wait_s):
            logger.warning("worker did not confirm the IMC-SR flush within %.0f s",
                           self.options.drain_idle_s)

    def _check_restarted_models(self, hello: Mapping[str, Any], recorder: RunRecorder) -> None:
        for c, entry in hello.get("channels", {}).items():
            before = self.hello.get("channels", {}).get(c, {})
            if before and entry.get("model_sha256") != before.get("model_sha256"):
                recorder.record_event("fault", detail=f"restarted worker runs a different model "
                                      f"on channel {c}: {entry.get('model_sha256')}")

    def _forget_pending(self, reason: str, slot: int | None = None) -> None:
        """Record as skipped the sets in flight (of worker ``slot``, or of every worker)."""
        with self._lock:
            lost = sorted(k for k, (_, s) in self._pending.items() if slot is None or s == slot)
            for key in lost:
                self._in_flight[self._pending.pop(key)[1]] -= 1
                self._lent.pop(key, None)
        who = f"worker {slot}: " if slot is not None and len(self._in_flight) > 1 else ""
        for t, c in lost:
            self._skip(t, c, f"{who}{reason}")
        if self.recorder is not None:
            self._write_in_order(self.recorder, everything=slot is None)

    def _drain(self) -> None:
        """Wait for outstanding results while they keep arriving (idle limit drain_idle_s)."""
        last_count, last_change = -1, time.monotonic()
        reason = f"no result within {self.options.drain_idle_s:.0f} s at the end"
        self._draining = True
        while True:
            self._result_handled.clear()
            with self._lock:
                pending = len(self._pending)
            if (pending == 0 or self.pool is None or self.pool.given_up
                    or self.thread_failure):
                break
            if self._finish_by_s is not None and time.monotonic() >= self._finish_by_s:
                reason = "not reconstructed within the stop's time limit"
                break
            if pending != last_count:
                last_count, last_change = pending, time.monotonic()
            elif time.monotonic() - last_change > self.options.drain_idle_s:
                break
            self._result_handled.wait(0.02)
        self._flush_imc()
        self._results_stop.set()
        self._forget_pending(reason)

    def _on_worker_event(self, slot: int, kind: str, detail: str) -> None:
        if self.options.workers + len(self.options.remote_workers) > 1:
            detail = f"worker {slot}: {detail}"
        self.on_event("info" if kind == "worker_restarted" else "error",
                      f"{kind.replace('_', ' ')}: {detail}")
        self._record_now(kind, detail)

    def _record_now(self, kind: str, detail: str) -> None:
        """An event at the newest time point, from any thread (a recorder failure is logged)."""
        if self.recorder is not None:
            try:
                self.recorder.record_event(kind, self._latest_raw_time_point, -1, detail)
            except RecorderError as exc:
                logger.error("could not record %s: %s", kind, exc)

    def progress(self) -> Progress:
        """Current counters for the progress display."""
        recorder = self.recorder
        stats = recorder.stats if recorder is not None else None
        return Progress(
            time_points_done=self._latest_raw_time_point + 1,
            elapsed_s=time.monotonic() - self._start_s,
            raw_frames=stats.raw_frames if stats else 0,
            sr_frames=stats.sr_frames if stats else 0,
            sr_lag_time_points=max(0, self._latest_raw_time_point - self._latest_sr_time_point),
            bytes_written=stats.bytes_written if stats else 0,
            skips=self.counters.sr_skips, gaps=self._gaps,
            worker_restarts=self.pool.restarts if self.pool else 0)
