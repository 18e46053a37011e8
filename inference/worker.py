"""The inference worker (`livesim infer`): raw SIM sets in over ZeroMQ, SR results back out.

It connects to the acquisition process's raw PUSH and results PULL, reconstructs each raw set
with the channel's :class:`Reconstructor` and sends back the SR image with photon count, timings
and the model's name and SHA-256. After loading its models it warms them up on a synthetic set
and announces itself (``hello``: per-channel model identity and SR shape); then it sends a
heartbeat at a fixed period from its own thread, carrying how long the current set has been
running, so the supervisor can tell a dead or hung worker from a busy one.

With IMC-SR on, the SR frames of one channel also go through an IMC-SR separator; its
three-structure results are sent as ``imc_result`` messages under the time point they belong to
(the temporal model answers one frame late; an ``event`` with ``info.command == "flush"`` on the
raw socket makes it separate the last frame and confirm with an ``event`` carrying ``flushed``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import zmq

from acquisition.raw_ring import RingReader, is_reference
from acquisition.result_ring import ResultSlots
from acquisition.run_file import IMC_OUT_OF_DOMAIN
from acquisition.transport import CurveKeys, MessageReceiver, open_socket
from acquisition.wire import Header, Kind, Message, encode, header_for
from inference.live_trust import TrustMonitor, trust_info

if TYPE_CHECKING:
    from calibration.sim_parameters import SimParameters
    from inference.preprocessing import CalibrationMaps
    from inference.reconstruction import SrResult

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "dfcan-sim"  # the network of the default reconstruction
DEFAULT_METHOD = "auto"  # "default": DEFAULT_MODEL under the domain guard (inference.auto)
FALLBACK_METHOD = "wiener"
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


class Reconstructor(Protocol):
    """What the worker needs: (P, Y, X) uint16 -> result with image, photon count, identity."""

    def reconstruct(self, raw: np.ndarray) -> SrResult:
        """An ``SrResult`` (image, photon_count_e, model_name, model_sha256, timings_ms, flags)."""
        ...


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker connects and what it runs (one method per channel, or one for all)."""

    raw_endpoint: str
    results_endpoint: str
    methods: tuple[str, ...] = ("default",)
    raw_shape: tuple[int, int, int] = (9, 128, 128)
    mode: str = "sim"  # the acquisition mode: wf | sim | nlsim
    heartbeat_s: float = 0.5
    send_timeout_s: float = 10.0
    idle_exit_s: float = 0.0  # exit after this long without any raw set (0: never)
    parent_pid: int = 0  # exit when this process (the acquisition) is gone (0: do not watch)
    calibration: Path | None = None  # camera or photon calibration file: photon counts
    pattern_parameters: Path | None = None  # Wiener: rig pattern calibration (JSON)
    curve: CurveKeys | None = None
    imc_model: str | None = None  # IMC-SR model (bundled name or path); None: IMC off
    sr_encoding: str = "float32"  # SR payload: float32 in [0, 1], or uint16 (x SR_UINT16_SCALE)
    run_id: str = ""  # the run served: raw sets of other runs are refused ("" accepts any)
    worker_id: str = ""  # this process, as the supervisor named it: on every message sent
    trust_every: int = 10  # trust record of every Nth set per channel (0: off); /qc
    raw_ring_fd: int | None = None  # inherited read-only descriptor of the run's raw ring
    result_ring_fd: int | None = None  # inherited descriptor of this worker's result ring


@dataclass
class WorkerState:
    """Counters shared with the heartbeat thread."""

    processed: int = 0
    failed: int = 0
    busy_since_s: float = 0.0  # wall time the current set started; 0 when idle
    stop: threading.Event = field(default_factory=threading.Event)
    trust: dict[int, TrustMonitor] = field(default_factory=dict)  # per channel
    sr_buffers: SrBuffers = field(default_factory=lambda: SrBuffers())


def resolve_method(method: str) -> tuple[str, str]:
    """Map 'default' to ``auto`` with the bundled DFCAN-SIM (the network inside its training
    domain and below the assessment's crossover, Wiener SIM elsewhere; `inference.auto`), or
    to Wiener when the bundled model is not installed. Any other method is used as given (an
    explicit model name means exactly that model, without the domain guard).

    Returns (method, note): the note says when and why the fallback was taken.
    """
    if method != "default":
        return method, ""
    if (BUNDLED_DIR / f"{DEFAULT_MODEL}.pt").is_file():
        return DEFAULT_METHOD, ""
    note = f"bundled model {DEFAULT_MODEL!r} is not installed; falling back to {FALLBACK_METHOD!r}"
    logger.warning("%s", note)
    return FALLBACK_METHOD, note


MODEL_MODE = {"wf": "sisr", "sim": "sim", "nlsim": "nlsim"}
PHOTON_CALIBRATION_FORMAT = "livesim photon calibration"
FLUSH_COMMAND = "flush"
SR_ENCODINGS = ("float32", "uint16")
SR_UINT16_SCALE = 1.0 / 65535.0  # uint16 SR payload: value = stored x scale (as the run file)
ENCODE_BAND_BYTES = 256 * 1024  # float32 scratch of the uint16 SR encoding (CPU cache)
# no trust record: not a super-resolved image (the wide-field mean; a pipeline benchmark's
# blank of the right shape)
UNCHECKED_METHODS = ("none", "passthrough")


class SrBuffers:
    """uint16 SR payloads, each reused once nothing holds it any more (ZeroMQ keeps a sent
    payload until it is on the socket): a fresh 8 MB array per 1024 px set cost the worker
    ~1.2 ms of page faults (encoding 4.5 -> 3.3 ms)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._buffers: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint16 array of ``shape`` that nothing else references."""
        for buffer in self._buffers:  # free: the list, the loop and getrefcount's argument
            if buffer.shape == shape and sys.getrefcount(buffer) <= 3:
                return buffer
        buffer = np.empty(shape, np.uint16)
        self._buffers = [*self._buffers[-(self.keep - 1):], buffer] if self.keep > 1 else []
        return buffer


def encode_sr(image: np.ndarray, encoding: str, out: np.ndarray | None = None
              ) -> tuple[np.ndarray, dict[str, float]]:
    """The SR payload in the requested encoding and the info fields describing it; ``out``: a
    uint16 array of the image's shape to encode into (uint16 only)."""
    if encoding == "float32":
        return image, {}
    if encoding != "uint16":
        raise ValueError(f"sr_encoding must be one of {SR_ENCODINGS}, got {encoding!r}")
    top = np.float32(1 / SR_UINT16_SCALE)
    shape = image.shape
    if image.ndim < 2:
        image = image.reshape(1, -1)
    if out is not None and (out.shape != shape or out.dtype != np.uint16):
        raise ValueError(f"SR output buffer {out.dtype}{out.shape} is not uint16{shape}")
    stored = np.empty(image.shape, np.uint16) if out is None else out.reshape(image.shape)
    # in bands of rows whose float32 scratch stays in the CPU cache (four whole-image passes
    # went to memory and back); per pixel: scale, clip, + 0.5, truncate = round to nearest
    rows = max(1, ENCODE_BAND_BYTES // max(1, 4 * image[0].size))
    scratch = np.empty((rows, *image.shape[1:]), np.float32)
    for start in range(0, image.shape[0], rows):
        band = image[start:start + rows]
        part = scratch[:band.shape[0]]
        np.multiply(band, top, out=part, dtype=np.float32)
        np.clip(part, 0.0, top, out=part)
        part += np.float32(0.5)
        np.copyto(stored[start:start + rows], part, casting="unsafe")
    return stored.reshape(shape), {"sr_scale": SR_UINT16_SCALE}


@dataclass(frozen=True)
class PhotonCalibration:
    """Offset map and gain (ADU per photo-electron) of a camera with a known model.

    Satisfies the preprocessing's calibration interface, so photon counts are in
    photo-electrons, as with a measured camera calibration (calibration.photon_count).
    """

    offset_adu: np.ndarray
    gain_adu_per_e: np.ndarray  # ADU per photo-electron (= 1 / electrons_per_adu)
    defect_mask: np.ndarray | None = None

    @property
    def electrons_per_adu(self) -> float:
        """Median photo-electrons per offset-subtracted ADU."""
        return float(1.0 / np.median(self.gain_adu_per_e))


def load_calibration(path: Path) -> CalibrationMaps:
    """A photon calibration file (written by the run for emulated cameras) or a camera
    calibration (`livesim calibrate camera`); errors name the file."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            kind = h5.attrs.get("format", "")
            if isinstance(kind, bytes):
                kind = kind.decode()
            if kind == PHOTON_CALIBRATION_FORMAT:
                offset = np.asarray(h5["offset_adu"][()], dtype=np.float32)
                per_count = np.asarray(h5["electrons_per_adu"][()], dtype=np.float32)
                defects = h5["defect_mask"][()].astype(bool) if "defect_mask" in h5 else None
                if np.any(per_count <= 0):
                    raise ValueError(f"{path}: electrons_per_adu must be > 0")
                gain = np.broadcast_to(1.0 / per_count, offset.shape).astype(np.float32)
                return PhotonCalibration(offset, gain, defects)
    except (OSError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable calibration file: {exc}") from exc
    from calibration.camera_calibration import CameraCalibration

    return CameraCalibration.load(path)


class ImcStage:
    """IMC-SR on the SR frames of one channel: (time point, SR) in, (time point, 3 channels) out.

    Wraps `inference.imc.live.ImcStream` (window bookkeeping, restarts on skipped time points).
    """

    def __init__(self, model: str, channel: int, device: str = "auto",
                 calibration: CalibrationMaps | None = None) -> None:
        from inference.engines import resolve_device
        from inference.imc.live import ImcSeparator, ImcStream
        from inference.model_file import ModelFileError
        from inference.preprocessing import Preprocessor

        try:
            separator = ImcSeparator(model, device=resolve_device(device))
        except (ModelFileError, FileNotFoundError) as exc:
            raise RuntimeError(f"IMC-SR model {model!r} cannot be loaded: {exc} (train one with "
                               "`livesim train --arch imcsr`, or give a model path)") from exc
        self.separator = separator
        self.stream = ImcStream(separator)
        self.channel = channel
        # a wide-field-input model gets the set's mean in photo-electrons (defects repaired),
        # as in its training fields (inference.imc.live_data)
        self._electrons = Preprocessor("sim", calibration=calibration)

    def widefield(self, raw: np.ndarray) -> np.ndarray | None:
        """The raw set's wide-field image when the model takes it, else None."""
        if not self.separator.widefield_input:
            return None
        return self._electrons.widefield_e(raw)

    def describe(self) -> dict[str, Any]:
        """For ``hello``: model identity, channel names, window and source channel."""
        s = self.separator
        return {"model_name": s.name, "model_sha256": s.sha256,
                "channel_names": list(s.channel_names), "temporal": s.temporal,
                "latency_frames": s.latency_frames, "channel": self.channel}


def build_reconstructors(methods: Sequence[str], mode: str = "sim",
                         calibration: CalibrationMaps | None = None,
                         pattern: SimParameters | None = None,
                         ) -> tuple[dict[int, Reconstructor], dict[int, str]]:
    """One reconstructor per channel (shared between channels with the same method);
    ``pattern`` (SimParameters of a rig pattern calibration) starts Wiener's pattern."""
    from inference.reconstruction import make_reconstructor

    if mode not in MODEL_MODE:
        raise ValueError(f"mode must be one of {sorted(MODEL_MODE)}, got {mode!r}")

    cache: dict[str, Reconstructor] = {}
    out: dict[int, Reconstructor] = {}
    notes: dict[int, str] = {}
    for channel, requested in enumerate(methods):
        method, note = resolve_method(requested)
        if method == "none":
            continue
        if method not in cache:
            cache[method] = make_reconstructor(method, mode=MODEL_MODE[mode],
                                               calibration=calibration, pattern=pattern)
        out[channel] = cache[method]
        if note:
            notes[channel] = note
    return out, notes


def result_info(result: SrResult) -> dict[str, Any]:
    """The wire ``info`` of an SR result: photon count, timings, model identity, flags."""
    flags = getattr(result, "flags", ())
    timings = dict(getattr(result, "timings_ms", {}))
    if isinstance(flags, Mapping):
        flags = [f"{k}={v}" for k, v in flags.items()]
    info: dict[str, Any] = {
        "photon_count_e": float(getattr(result, "photon_count_e", float("nan"))),
        "timings_ms": {str(k): float(v) for k, v in timings.items()},
        "model_name": str(getattr(result, "model_name", "")),
        "model_sha256": str(getattr(result, "model_sha256", "")),
        "flags": [str(f) for f in flags],
    }
    sim_parameters = getattr(result, "sim_parameters", None)
    if sim_parameters is not None:  # Wiener: the pattern it used, for /sim_params
        info["sim_params"] = np.asarray(sim_parameters, dtype=float).tolist()
    return info


def describe_models(reconstructors: Mapping[int, Reconstructor], raw_shape: tuple[int, int, int],
                    notes: Mapping[int, str]) -> dict[str, Any]:
    """Per channel: model name, SHA-256 and SR shape, from the reconstructor's attributes.

    No warm-up on synthetic data: a stateful reconstructor (Wiener estimates its pattern
    parameters from the first set) must see real data first. Only a reconstructor without a
    ``scale`` attribute is probed once on a synthetic set to learn its output shape.
    """
    channels: dict[str, Any] = {}
    for channel, reconstructor in reconstructors.items():
        scale = getattr(reconstructor, "scale", None)
        name = str(getattr(reconstructor, "model_name", ""))
        sha = str(getattr(reconstructor, "model_sha256", ""))
        if isinstance(scale, int) and scale > 0:
            sr_shape = [raw_shape[1] * scale, raw_shape[2] * scale]
        else:
            synthetic = np.full(raw_shape, 100, dtype=np.uint16)
            result = reconstructor.reconstruct(synthetic)
            sr_shape = [int(n) for n in np.asarray(result.image).shape]
            info = result_info(result)
            name, sha = name or info["model_name"], sha or info["model_sha256"]
        channels[str(channel)] = {"model_name": name, "model_sha256": sha,
                                  "sr_shape": sr_shape, "note": notes.get(channel, "")}
    return {"channels": channels, "pid": os.getpid()}


def serve(options: WorkerOptions, reconstructors: Mapping[int, Reconstructor],
          hello: Mapping[str, Any], context: zmq.Context | None = None,
          state: WorkerState | None = None, imc: ImcStage | None = None) -> WorkerState:
    """Run the worker loop until ``state.stop`` is set (or idle_exit_s passes without work)."""
    context = context or zmq.Context.instance()
    state = state or WorkerState()
    ring = None
    if options.raw_ring_fd is not None:
        try:
            ring = RingReader(options.raw_ring_fd)
        except (OSError, ValueError) as exc:  # tell the session why, instead of dying mute
            report_fatal(options, f"cannot map the shared-memory raw ring: {exc}")
            raise
    slots = None
    if options.result_ring_fd is not None:
        try:
            slots = ResultSlots(options.result_ring_fd)
        except (OSError, ValueError) as exc:
            report_fatal(options, f"cannot map the shared-memory result ring: {exc}")
            raise
    raw = open_socket(context, zmq.PULL, options.raw_endpoint, bind=False, keys=options.curve,
                      RCVHWM=1)
    results = open_socket(context, zmq.PUSH, options.results_endpoint, bind=False,
                          keys=options.curve, SNDTIMEO=int(options.send_timeout_s * 1000))
    receiver = MessageReceiver(raw, "worker raw", ring)
    send_lock = threading.Lock()
    sequence = iter(range(1 << 62))

    def send(header_fields: dict[str, Any], kind: Kind, array: np.ndarray | None) -> bool:
        with send_lock:
            run_id = str(header_fields.pop("run_id", options.run_id))
            header = header_for(kind, run_id, next(sequence), array,
                                worker_id=options.worker_id, **header_fields)
            # an image in the result ring: its header names the slot, over an empty frame
            frames = ([header.pack(), b""] if "ring_slot" in header.info
                      else encode(header, array))
            try:
                results.send_multipart(frames, copy=False)
            except zmq.Again:
                logger.error("results socket blocked for %.0f s; result %s t=%d dropped",
                             options.send_timeout_s, kind, header.time_point)
                return False
            return True

    def heartbeat() -> None:
        while not state.stop.wait(options.heartbeat_s):
            send({"info": {"pid": os.getpid(), "processed": state.processed,
                           "failed": state.failed, "rejected": receiver.rejected,
                           "busy_since_s": state.busy_since_s}}, Kind.HEARTBEAT, None)

    send({"info": {"hello": dict(hello), "pid": os.getpid()}}, Kind.HEARTBEAT, None)
    beat = threading.Thread(target=heartbeat, name="worker-heartbeat", daemon=True)
    beat.start()
    last_work = time.monotonic()
    try:
        while not state.stop.is_set():
            message = receiver.receive(timeout_ms=int(options.heartbeat_s * 1000))
            if options.parent_pid and os.getppid() != options.parent_pid:
                logger.error("acquisition process %d is gone; exiting", options.parent_pid)
                break
            if message is None:
                if options.idle_exit_s and time.monotonic() - last_work > options.idle_exit_s:
                    logger.info("no raw set for %.0f s; exiting", options.idle_exit_s)
                    break
                continue
            last_work = time.monotonic()
            if options.run_id and message.header.run_id != options.run_id:
                receiver.rejected += 1
                logger.warning("raw socket: message of run %r ignored (serving run %r)",
                               message.header.run_id[:16], options.run_id)
                continue
            _handle(message, reconstructors, state, send, imc, options.sr_encoding, ring,
                    slots)
    finally:
        state.stop.set()
        beat.join(options.heartbeat_s * 4)
        raw.close(linger=0)
        results.close(linger=int(options.send_timeout_s * 1000))
        if ring is not None:
            ring.close()
        if slots is not None:
            slots.close()
    return state


Sender = Callable[[dict[str, Any], Kind, np.ndarray | None], bool]


def _handle(message: Message, reconstructors: Mapping[int, Reconstructor], state: WorkerState,
            send: Sender, imc: ImcStage | None = None, sr_encoding: str = "float32",
            ring: RingReader | None = None, slots: ResultSlots | None = None) -> None:
    """Reconstruct one raw set (or act on a command) and send what came of it. A set read
    from the shared-memory ring is checked again after use: if its slot was reused meanwhile
    (the acquisition gave this worker up), the result is refused, not sent. With ``slots``
    (this worker's result ring) the SR image goes by reference when a slot is free."""
    head: Header = message.header
    if head.kind is Kind.EVENT and head.info.get("command") == FLUSH_COMMAND:
        flushed = _send_imc(imc.stream.finish(), imc, head, send) if imc is not None else 0
        send({"run_id": head.run_id, "time_point": head.time_point, "channel": head.channel,
              "info": {"flushed": flushed}}, Kind.EVENT, None)
        return
    if head.kind is not Kind.RAW_SET:
        logger.warning("ignoring a %s message on the raw socket", head.kind)
        return
    reconstructor = reconstructors.get(head.channel)
    common = {"run_id": head.run_id, "time_point": head.time_point, "channel": head.channel,
              "laser_nm": head.laser_nm, "exposure_ms": head.exposure_ms,
              "frame_sequences": head.frame_sequences, "timestamps_s": head.timestamps_s,
              "n_orientations": head.n_orientations, "n_phases": head.n_phases}
    n_patterns = head.n_orientations * head.n_phases
    problem = ""
    if reconstructor is None:
        problem = f"no reconstruction configured for channel {head.channel}"
    elif len(head.shape) != 3 or head.shape[0] != n_patterns or head.dtype != "uint16":
        problem = (f"raw set {head.dtype}{list(head.shape)} does not match "
                   f"{n_patterns} uint16 patterns")
    if problem or reconstructor is None:
        state.failed += 1
        send({**common, "info": {"error": problem, "raw_sent_s": head.sent_s}}, Kind.EVENT, None)
        return
    state.busy_since_s = time.time()
    try:
        result = reconstructor.reconstruct(message.array)
    except (ValueError, RuntimeError, ArithmeticError) as exc:
        state.failed += 1
        logger.error("t=%d channel=%d: reconstruction failed: %s", head.time_point,
                     head.channel, exc)
        send({**common, "info": {"error": f"reconstruction failed: {exc}",
                                 "raw_sent_s": head.sent_s}}, Kind.EVENT, None)
        return
    finally:
        state.busy_since_s = 0.0
    image = np.ascontiguousarray(result.image, dtype=np.float32)
    info = {**result_info(result), "raw_sent_s": head.sent_s}
    widefield = None  # read before the ring check below: the slot may be reused after it
    if imc is not None and head.channel == imc.channel:
        widefield = imc.widefield(message.array)
    monitor = state.trust.get(head.channel)
    if monitor is not None and monitor.due():
        trust = _trust(monitor, message.array, image, info["model_name"], head)
        if trust is not None:
            info["trust"] = trust
    if ring is not None and is_reference(head) and not ring.unchanged(head):
        state.failed += 1
        logger.error("t=%d channel=%d: ring slot %s reused while it was read; result dropped",
                     head.time_point, head.channel, head.info.get("ring_slot"))
        send({**common, "info": {"error": "raw set's ring slot was reused while it was read",
                                 "raw_sent_s": head.sent_s}}, Kind.EVENT, None)
        return
    payload, payload_info = _sr_payload(image, sr_encoding, state, slots)
    if send({**common, "info": {**info, **payload_info}}, Kind.SR_RESULT, payload):
        state.processed += 1
    elif slots is not None and "ring_slot" in payload_info:
        slots.release(payload_info)
    if imc is not None and head.channel == imc.channel:
        try:
            ready = imc.stream.process(head.time_point, image, widefield)
        except (ValueError, RuntimeError) as exc:
            logger.error("t=%d: IMC-SR failed: %s", head.time_point, exc)
            send({**common, "info": {"error": f"IMC-SR failed: {exc}", "imc": True,
                                     "raw_sent_s": head.sent_s}}, Kind.EVENT, None)
            return
        _send_imc(ready, imc, head, send)


def _sr_payload(image: np.ndarray, encoding: str, state: WorkerState,
                slots: ResultSlots | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The SR payload in ``encoding`` and the info fields describing it: encoded straight into
    a free slot of the worker's result ring (the fields name it), else into a buffer that
    goes inline."""
    dtype = np.uint16 if encoding == "uint16" else np.float32
    target = slots.begin(image.shape, dtype) if slots is not None else None
    if slots is None or target is None:
        return encode_sr(image, encoding,
                         state.sr_buffers.take(image.shape) if encoding == "uint16" else None)
    try:
        payload, encoding_info = encode_sr(image, encoding,
                                           target if encoding == "uint16" else None)
        if payload is not target:
            np.copyto(target, payload)
    except BaseException:
        slots.abandon()
        raise
    return target, {**encoding_info, **slots.finish()}


def _trust(monitor: TrustMonitor, raw: np.ndarray, image: np.ndarray, model_name: str,
           head: Header) -> dict[str, Any] | None:
    """The wire ``trust`` of one result, or None (logged) when the check cannot be made."""
    start = time.perf_counter()
    try:
        record, chi2_map = monitor.check(raw, image, model_name)
    except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError) as exc:
        logger.warning("t=%d channel=%d: trust record not computed: %s", head.time_point,
                       head.channel, exc)
        return None
    trust = trust_info(record, chi2_map)
    logger.debug("t=%d channel=%d: trust %s in %.0f ms", head.time_point, head.channel,
                  record, (time.perf_counter() - start) * 1e3)
    if trust is None:
        logger.warning("t=%d channel=%d: trust record not finite (%s); not sent",
                       head.time_point, head.channel, record)
    return trust


def _send_imc(ready: Sequence[tuple[int, np.ndarray]], imc: ImcStage, head: Header,
              send: Sender) -> int:
    """Send IMC-SR results, each under its own time point; returns how many were sent."""
    sent = 0
    for time_point, channels in ready:
        info: dict[str, Any] = {"model_name": imc.separator.name,
                                "model_sha256": imc.separator.sha256,
                                "channel_names": list(imc.separator.channel_names)}
        reason = imc.stream.out_of_domain.pop(time_point, None)
        if reason is not None:  # the session records it as an imc_out_of_domain event
            info["flags"] = [f"{IMC_OUT_OF_DOMAIN}: {reason}"]
        if send({"run_id": head.run_id, "time_point": time_point, "channel": imc.channel,
                 "info": info}, Kind.IMC_RESULT, np.ascontiguousarray(channels, np.float32)):
            sent += 1
    return sent


def report_fatal(options: WorkerOptions, reason: str, timeout_s: float = 2.0) -> None:
    """Tell the acquisition process why this worker cannot start (best effort, bounded)."""
    logger.error("worker cannot start: %s", reason)
    context: zmq.Context = zmq.Context.instance()
    socket = open_socket(context, zmq.PUSH, options.results_endpoint, bind=False,
                         keys=options.curve, SNDTIMEO=int(timeout_s * 1000))
    header = header_for(Kind.HEARTBEAT, options.run_id, 0, None, worker_id=options.worker_id,
                        info={"fatal": reason[:4000], "pid": os.getpid()})
    try:
        socket.send_multipart(encode(header), copy=False)
    except zmq.Again:
        logger.error("could not report the failure to %s", options.results_endpoint)
    finally:
        socket.close(linger=int(timeout_s * 1000))


def run_worker(options: WorkerOptions) -> WorkerState:
    """Load the models, announce them, and serve until stopped (the `livesim infer` body)."""
    state = WorkerState()
    if options.sr_encoding not in SR_ENCODINGS:
        raise ValueError(f"sr_encoding must be one of {SR_ENCODINGS}, got {options.sr_encoding!r}")
    if options.trust_every < 0:
        raise ValueError(f"trust_every={options.trust_every} must be >= 0 (0: off)")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: state.stop.set())
        if options.parent_pid:  # a session's worker: its Ctrl-C is the session's to handle
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        maps = None
        if options.calibration is not None:
            maps = load_calibration(options.calibration)
        pattern = None
        if options.pattern_parameters is not None:
            from calibration.sim_parameters import PatternCalibration

            pattern = PatternCalibration.load(options.pattern_parameters).parameters
        reconstructors, notes = build_reconstructors(options.methods, options.mode, maps, pattern)
        hello = describe_models(reconstructors, options.raw_shape, notes)
        hello["calibrated"] = maps is not None
        if options.trust_every > 0 and options.mode == "sim":  # the checks model linear SIM
            state.trust = {channel: TrustMonitor(reconstructor, options.trust_every)
                           for channel, reconstructor in reconstructors.items()
                           if getattr(reconstructor, "model_name", "") not in UNCHECKED_METHODS}
        imc = None
        if options.imc_model is not None:
            if not reconstructors:
                raise ValueError("IMC-SR needs SR images, but no channel is reconstructed")
            imc = ImcStage(options.imc_model, min(reconstructors), calibration=maps)
            hello["imc"] = imc.describe()
    except Exception as exc:  # process boundary: tell the acquisition why, then exit
        report_fatal(options, f"{type(exc).__name__}: {exc}")
        raise
    logger.info("worker ready: %s", hello)
    return serve(options, reconstructors, hello, state=state, imc=imc)
