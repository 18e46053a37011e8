"""ZeroMQ sockets and endpoints of a run: raw sets to the worker, results back, display stream.

The acquisition process binds every socket; the worker and viewers connect. Raw sets go over a
bounded PUSH that never blocks the camera path (a full queue means: skip SR for that set, the
caller records it). Results come back over a lossless PUSH/PULL. The display PUB is conflated
and lossy by design; its 'qc' records go over a second, unconflated PUB beside it
(:func:`qc_endpoint`), so that none is dropped for an image. Endpoints default to
ipc/loopback; any other host requires CurveZMQ keys.
Every receive waits with a poller and a timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import zmq

from acquisition.wire import (
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    Header,
    Message,
    PayloadRing,
    WireError,
    decode,
    encode,
    pack_display,
    unpack_display,
)

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# raw: one 2-D frame (or wide-field) per update; set: the full raw set at a low rate (pattern
# check, photon count); sr: SR image (uint16 x info["sr_scale"], or float32); imc: splits
DISPLAY_TOPICS = ("raw", "wf", "set", "sr", "imc", "qc")
QC_RCVHWM = 256  # the unconflated 'qc' topic: trust records and method changes (~1/s)
QC_SNDHWM = 1000  # per viewer: ~15 min of ~1/s records queued for a window that reads late


IPC_PATH_MAX_BYTES = getattr(zmq, "IPC_PATH_MAX_LEN", 0) or 107  # sockaddr_un.sun_path - 1
LONGEST_IPC_NAME = "display-qc"  # the longest endpoint name in an ipc folder (qc_endpoint)


class TransportSecurityError(ValueError):
    """An endpoint would expose the run beyond this host without CurveZMQ keys."""


@dataclass(frozen=True)
class Endpoints:
    """Where the run's three streams live."""

    raw: str
    results: str
    display: str
    temporary_folder: Path | None = None  # made by ipc() for this run: remove it at the end

    @classmethod
    def ipc(cls, folder: Path | None = None) -> Endpoints:
        """ipc endpoints in ``folder`` (a fresh private temporary folder when None, named in
        :attr:`temporary_folder` so that its owner can :meth:`remove_temporary_folder`).

        A socket path is limited to ``IPC_PATH_MAX_LEN`` bytes (107 on Linux); a ``folder``
        too deep for its longest endpoint is replaced by a temporary folder (logged)."""
        if folder and len(f"{folder}/{LONGEST_IPC_NAME}".encode()) > IPC_PATH_MAX_BYTES:
            logger.info("%s: too long a path for ipc sockets (%d bytes at most); using a "
                        "temporary folder", folder, IPC_PATH_MAX_BYTES)
            folder = None
        temporary = None if folder else Path(tempfile.mkdtemp(prefix="livesim-"))
        where = Path(folder) if folder else temporary
        return cls(raw=f"ipc://{where}/raw", results=f"ipc://{where}/results",
                   display=f"ipc://{where}/display", temporary_folder=temporary)

    def remove_temporary_folder(self) -> None:
        """Delete the folder ipc() made (socket files and all); a given folder is kept."""
        if self.temporary_folder is not None:
            shutil.rmtree(self.temporary_folder, ignore_errors=True)


@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ key pair of this side (z85 text) and, for clients, the server's public key."""

    public_key: bytes
    secret_key: bytes
    server_public_key: bytes | None = None

    @classmethod
    def from_files(cls, secret_file: Path, server_public_file: Path | None = None) -> CurveKeys:
        """Load keys written by ``zmq.auth.create_certificates``."""
        import zmq.auth

        public, secret = zmq.auth.load_certificate(str(secret_file))
        if secret is None:
            raise TransportSecurityError(f"{secret_file}: holds no secret key")
        server = None
        if server_public_file is not None:
            server, _ = zmq.auth.load_certificate(str(server_public_file))
        return cls(public_key=public, secret_key=secret, server_public_key=server)

    def apply(self, socket: zmq.Socket, server: bool) -> None:
        """Configure ``socket`` as a Curve server (binding side) or client (connecting side)."""
        socket.curve_secretkey = self.secret_key
        socket.curve_publickey = self.public_key
        if server:
            socket.curve_server = True
        else:
            if self.server_public_key is None:
                raise TransportSecurityError("a Curve client needs the server's public key")
            socket.curve_serverkey = self.server_public_key


class ClientAllowList:
    """ZAP handler for one context: its Curve server sockets accept only the listed clients.

    Without one, a Curve server accepts any client that knows the server's public key; with
    one, a client must also hold a key pair whose public key (z85) is listed here. Stop it
    (or use it as a context manager) before the context is terminated.
    """

    def __init__(self, context: zmq.Context, client_public_keys: Iterable[bytes]) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self.allowed = frozenset(bytes(k) for k in client_public_keys)
        if not self.allowed:
            raise TransportSecurityError("a client allow-list needs at least one public key")
        self._authenticator = ThreadAuthenticator(context)
        self._authenticator.start()
        self._authenticator.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, client_public_key: bytes) -> bool:
        """ZAP verdict for a client's z85 public key (called by the authenticator thread)."""
        allowed = client_public_key in self.allowed
        if not allowed:
            logger.warning("Curve client %s refused: not in the allow-list",
                           client_public_key[:8].decode("ascii", "replace"))
        return allowed

    def stop(self) -> None:
        """Stop the authenticator thread."""
        self._authenticator.stop()

    def __enter__(self) -> ClientAllowList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def endpoint_is_local(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and TCP on a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        raise TransportSecurityError(f"endpoint {endpoint!r}: unsupported transport {scheme!r}")
    host = rest.rsplit(":", 1)[0]
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def qc_endpoint(display_endpoint: str) -> str:
    """Where the display stream's 'qc' records go: beside ``display_endpoint`` (ipc and
    inproc: the name plus ``-qc``; TCP: the port plus one)."""
    scheme = display_endpoint.partition("://")[0]
    if scheme in ("ipc", "inproc"):
        return f"{display_endpoint}-qc"
    head, _, port = display_endpoint.rpartition(":")
    if scheme != "tcp" or not port.isdigit() or not 0 < int(port) < 65535:
        raise TransportSecurityError(
            f"display endpoint {display_endpoint!r}: expected ipc://, inproc:// or "
            "tcp://HOST:PORT with a fixed port (the 'qc' records go to PORT + 1)")
    return f"{head}:{int(port) + 1}"


def check_endpoint(endpoint: str, keys: CurveKeys | None) -> None:
    """Refuse a non-local endpoint unless CurveZMQ keys are given."""
    if not endpoint_is_local(endpoint) and keys is None:
        raise TransportSecurityError(
            f"endpoint {endpoint!r} is reachable from other hosts; binding or connecting there "
            "requires CurveZMQ keys (use 127.0.0.1/ipc, or pass --curve-secret/--curve-server)"
        )


def open_socket(context: zmq.Context, kind: int, endpoint: str, bind: bool,
                keys: CurveKeys | None = None,
                before_bind: Callable[[zmq.Socket], None] | None = None,
                **options: int) -> zmq.Socket:
    """A socket with LINGER 0 and the given options, bound or connected after the checks
    (``before_bind`` runs just before, e.g. to attach a monitor that must see every peer).

    Inbound frames are capped at the wire's limits (ZMQ_MAXMSGSIZE): a peer sending a larger
    one is disconnected by libzmq before the frame is buffered, so it cannot exhaust memory.
    """
    check_endpoint(endpoint, keys)
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_HEADER_BYTES + MAX_PAYLOAD_BYTES)
    for name, value in options.items():
        socket.setsockopt(getattr(zmq, name), value)
    if keys is not None:
        keys.apply(socket, server=bind)
    if before_bind is not None:
        before_bind(socket)
    if bind:
        socket.bind(endpoint)
    else:
        socket.connect(endpoint)
    return socket


def _readable(socket: zmq.Socket) -> bool:
    """True when a message waits on ``socket`` (ZMQ_EVENTS: ~1 us, a poller call ~20 us)."""
    return bool(int(socket.get(zmq.EVENTS)) & zmq.POLLIN)


class MessageReceiver:
    """Polls a socket with a timeout and returns validated messages; malformed ones are counted."""

    ring: PayloadRing | None = None  # resolves raw sets sent by reference (acquisition.raw_ring)

    def __init__(self, socket: zmq.Socket, name: str, ring: PayloadRing | None = None) -> None:
        self.socket = socket
        self.name = name
        self.ring = ring
        self.rejected = 0
        self.received = 0
        self._poller = zmq.Poller()
        self._poller.register(socket, zmq.POLLIN)

    def receive(self, timeout_ms: int) -> Message | None:
        """The next valid message, or None after ``timeout_ms`` (or after rejecting one)."""
        # a message already waiting is read without a poll (~20 us a poller call)
        if not (_readable(self.socket) or self._poller.poll(timeout_ms)):
            return None
        frames = self.socket.recv_multipart(copy=False)
        try:
            message = decode(frames, self.ring)
        except WireError as exc:
            self.rejected += 1
            level = logging.WARNING if self.rejected & (self.rejected - 1) == 0 else logging.DEBUG
            logger.log(level, "%s: rejected malformed message #%d: %s", self.name,
                       self.rejected, exc)
            return None
        self.received += 1
        return message


class WorkerLink(Protocol):
    """What a run needs to reach one worker: raw sets and commands, never blocking (False:
    the worker is behind, the set's SR is skipped). `RawSetSender` is the ZeroMQ one."""

    def send(self, header: Header, array: np.ndarray) -> bool: ...

    def send_reference(self, header: Header) -> bool: ...

    def send_event(self, header: Header) -> bool: ...

    def close(self) -> None: ...


class DisplaySink(Protocol):
    """Where display images go (lossy by design). `DisplayPublisher` is the ZeroMQ one."""

    def publish(self, topic: str, header: Header, array: np.ndarray) -> None: ...

    def close(self) -> None: ...


_VIEWER_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class RawSetSender:
    """Bounded, non-blocking PUSH of raw sets to the worker: False means 'worker behind, skip'."""

    def __init__(self, context: zmq.Context, endpoint: str, high_water_mark: int = 4,
                 keys: CurveKeys | None = None) -> None:
        self.socket = open_socket(context, zmq.PUSH, endpoint, bind=True, keys=keys,
                                  SNDHWM=high_water_mark, IMMEDIATE=1)
        self.sent = 0
        self.sent_by_reference = 0  # of ``sent``: payload left in the shared-memory ring
        self.refused = 0

    def send(self, header: Header, array: np.ndarray) -> bool:
        """Queue one raw set zero-copy; return False (nothing queued) if the worker is behind."""
        try:
            self.socket.send_multipart(encode(header, array), copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.refused += 1
            return False
        self.sent += 1
        return True

    def send_reference(self, header: Header) -> bool:
        """Queue a raw set whose payload stays in the run's shared-memory ring (the header
        names its slot): the header and an empty payload frame; False when behind."""
        try:
            self.socket.send_multipart([header.pack(), b""], copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.refused += 1
            return False
        self.sent += 1
        self.sent_by_reference += 1
        return True

    def send_event(self, header: Header) -> bool:
        """Queue a payload-less control message (e.g. the IMC flush) without blocking."""
        try:
            self.socket.send_multipart(encode(header), copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def close(self) -> None:
        """Close the socket without waiting."""
        self.socket.close(linger=0)


class DisplayPublisher:
    """Conflated PUB of the newest raw / wide-field / SR / IMC images (lossy by design), and
    beside it (:func:`qc_endpoint`) an unconflated PUB of the 'qc' records, none of which is
    dropped for an image (up to QC_SNDHWM queued per viewer).

    It follows its viewers' connections to the image PUB (a socket monitor):
    :meth:`has_viewers` lets the outlet skip packing images that nobody would receive (a
    headless run).
    """

    def __init__(self, context: zmq.Context, endpoint: str, keys: CurveKeys | None = None) -> None:
        self._monitor: zmq.Socket | None = None
        self._viewers = 0

        def watch(socket: zmq.Socket) -> None:
            self._monitor = socket.get_monitor_socket(_VIEWER_EVENTS)

        self.socket = open_socket(context, zmq.PUB, endpoint, bind=True, keys=keys,
                                  before_bind=watch, SNDHWM=1, CONFLATE=1)
        try:
            self.qc_socket = open_socket(context, zmq.PUB, qc_endpoint(endpoint), bind=True,
                                         keys=keys, SNDHWM=QC_SNDHWM)
        except (zmq.ZMQError, TransportSecurityError):
            self.close()
            raise

    def has_viewers(self) -> bool:
        """True while at least one viewer is connected (events read without waiting)."""
        from zmq.utils.monitor import recv_monitor_message

        monitor = self._monitor
        if monitor is None:
            return True
        while _readable(monitor):  # no poller: this runs once per image
            event = recv_monitor_message(monitor, flags=zmq.NOBLOCK)["event"]
            if event == zmq.EVENT_ACCEPTED:
                self._viewers += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self._viewers = max(0, self._viewers - 1)
        return self._viewers > 0

    def publish(self, topic: str, header: Header, array: np.ndarray) -> None:
        """Offer the newest image under ``topic``; dropped silently if nobody keeps up. A 'qc'
        record is queued for every viewer (dropped only past QC_SNDHWM unread ones)."""
        if topic not in DISPLAY_TOPICS:
            raise ValueError(f"display topic {topic!r} not in {DISPLAY_TOPICS}")
        socket = self.qc_socket if topic == "qc" else self.socket
        try:  # the joined bytes are handed to ZMQ as they are (no second copy)
            socket.send(pack_display(topic, header, array), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            logger.debug("display %s dropped", topic)

    def close(self) -> None:
        """Close the sockets (and the monitor) without waiting."""
        if self._monitor is not None:
            self.socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self.socket.close(linger=0)
        qc_socket = getattr(self, "qc_socket", None)
        if qc_socket is not None:
            qc_socket.close(linger=0)


class DisplaySubscriber:
    """Viewer side of the display stream: one SUB per topic; conflated (newest image only)
    unless ``conflate`` is False (the rare 'qc' records, each of which a trend needs). Give the
    display endpoint for every topic: 'qc' connects to its :func:`qc_endpoint` itself."""

    def __init__(self, context: zmq.Context, endpoint: str, topic: str,
                 keys: CurveKeys | None = None, conflate: bool = True) -> None:
        if topic not in DISPLAY_TOPICS:
            raise ValueError(f"display topic {topic!r} not in {DISPLAY_TOPICS}")
        self.topic = topic
        self.rejected = 0
        if topic == "qc":
            endpoint = qc_endpoint(endpoint)
        self.socket = (open_socket(context, zmq.SUB, endpoint, bind=False, keys=keys,
                                   CONFLATE=1, RCVHWM=1) if conflate
                       else open_socket(context, zmq.SUB, endpoint, bind=False, keys=keys,
                                        RCVHWM=QC_RCVHWM))
        self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii") + b"\x00")
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)

    def latest(self, timeout_ms: int) -> Message | None:
        """The newest message of this topic, or None after ``timeout_ms``."""
        if not self._poller.poll(timeout_ms):
            return None
        return self._decode(self.socket.recv(copy=False))

    def _decode(self, frame: zmq.Frame) -> Message | None:
        """A received frame's message (its array a read-only view of ZMQ's buffer: no copy);
        None, counted and logged, when it is malformed."""
        try:
            _, message = unpack_display(frame.buffer)
        except WireError as exc:
            self.rejected += 1
            logger.warning("display %s: rejected malformed message: %s", self.topic, exc)
            return None
        message.array.setflags(write=False)
        return message

    @property
    def fd(self) -> int:
        """A file descriptor that turns readable when this socket may have news (ZMQ_FD):
        watch it (e.g. QSocketNotifier), then call :meth:`newest` until it returns None."""
        return int(self.socket.getsockopt(zmq.FD))

    def newest(self) -> Message | None:
        """The newest message without waiting (None: nothing new), leaving the socket drained,
        so that its :attr:`fd` signals the next arrival. No poller: one ZMQ_EVENTS check."""
        messages = self.drain()
        return messages[-1] if messages else None

    def drain(self) -> list[Message]:
        """Every message waiting, oldest first, without waiting (an unconflated topic),
        leaving the socket drained so that its :attr:`fd` signals the next arrival."""
        messages: list[Message] = []
        while int(self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            message = self._decode(self.socket.recv(copy=False, flags=zmq.NOBLOCK))
            if message is not None:
                messages.append(message)
        return messages

    def close(self) -> None:
        """Close the socket without waiting."""
        self.socket.close(linger=0)

