"""The GUI's link to its acquisition process: start it, send commands, poll status, pull images.

Nothing here blocks the GUI thread: commands queue and go out one at a time as replies come back,
status is polled, and images are taken from conflated display subscribers with a zero timeout.
Call :meth:`HostLink.tick` from a Qt timer.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from acquisition.host_wire import ControlClient
from acquisition.transport import DisplaySubscriber
from acquisition.wire import Message

logger = logging.getLogger(__name__)

STATUS_PERIOD_S = 0.25
REPLY_TIMEOUT_S = 10.0  # a command unanswered this long means the acquisition process is stuck


def display_endpoint_of_run(path: Path) -> str:
    """The display endpoint a running `livesim run` recorded in its run file's metadata."""
    import h5py

    from acquisition import run_file

    try:
        with h5py.File(path, "r", swmr=True) as h5:
            metadata = run_file.read_metadata(h5)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the run file: {exc}") from exc
    endpoints = metadata.get("endpoints")
    endpoint = endpoints.get("display") if isinstance(endpoints, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError(f"{path}: the run file names no display endpoint (metadata "
                         "'endpoints.display')")
    return endpoint


def last_error_line(log_file: Path, max_bytes: int = 16_384) -> str:
    """The last line of a process log that names an exception or error (the cause of death)."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - max_bytes))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        text = line.strip()
        if text and ("Error" in text or "ERROR" in text or "Exception" in text):
            return text[:500]
    return ""


@dataclass(frozen=True)
class HostOptions:
    """How to start the acquisition process."""

    rig: str = "emulator"  # 'emulator' or a Micro-Manager .cfg path
    roles: str | None = None  # role map: profile names / TOML files, "+"-joined
    size_px: tuple[int, int] = (128, 128)
    seed: int = 0
    structure: str = "microtubules"
    live_interval_s: float = 0.05
    log_file: Path | None = None
    faults_json: str = ""  # emulator FaultPlan as JSON: injected rig faults (tests)


@dataclass
class HostState:
    """The newest status of the acquisition process, and the GUI-side view of its health."""

    status: dict[str, Any] = field(default_factory=dict)
    alive: bool = True
    exit_code: int | None = None


class HostLink:
    """Starts (or attaches to) an acquisition process and talks to it without blocking."""

    def __init__(self, control_endpoint: str | None, display_endpoint: str,
                 process: subprocess.Popen[bytes] | None = None,
                 context: zmq.Context | None = None,
                 on_event: Callable[[str, str], None] | None = None) -> None:
        self.context = context or zmq.Context.instance()
        # None: attached read-only to someone else's display stream (e.g. `livesim run`)
        self.control = (ControlClient(self.context, control_endpoint)
                        if control_endpoint is not None else None)
        self.display_endpoint = display_endpoint
        self.process = process
        self.on_event = on_event or (lambda level, text: None)
        self.subscribers = {topic: DisplaySubscriber(self.context, display_endpoint, topic,
                                                     conflate=topic != "qc")
                            for topic in ("raw", "set", "sr", "imc", "qc")}
        self.state = HostState()
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._in_flight: tuple[str, float] | None = None
        self._last_status_s = 0.0
        self._last_event_id = 0
        self._reported_dead = False
        self.log_file: Path | None = None

    @classmethod
    def start(cls, options: HostOptions, on_event: Callable[[str, str], None] | None = None,
              folder: Path | None = None) -> HostLink:
        """Launch ``python -m acquisition.cli.gui_host`` as a child process and connect to it."""
        folder = Path(folder or tempfile.mkdtemp(prefix="livesim-gui-"))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        control, display = f"ipc://{folder}/control", f"ipc://{folder}/display"
        argv = [sys.executable, "-m", "acquisition.cli.gui_host", "--control", control,
                "--display", display, "--folder", str(folder), "--rig", options.rig,
                "--size-px", f"{options.size_px[0]},{options.size_px[1]}",
                "--seed", str(options.seed), "--structure", options.structure,
                "--live-interval-s", str(options.live_interval_s),
                "--parent-pid", str(os.getpid())]
        if options.faults_json:
            argv += ["--faults", options.faults_json]
        if options.roles:
            argv += ["--roles", options.roles]
        log = (options.log_file or folder / "acquisition.log").open("ab")
        try:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        logger.info("acquisition process started (pid %d, log in %s)", process.pid, folder)
        link = cls(control, display, process, on_event=on_event)
        link.log_file = options.log_file or folder / "acquisition.log"
        return link

    # --- commands -----------------------------------------------------------------------------

    def command(self, cmd: str, **args: Any) -> None:
        """Queue a command; it goes out when the previous one has been answered."""
        if self.control is None:
            self.on_event("warning", f"attached read-only to {self.display_endpoint}: "
                                     f"{cmd!r} is not available")
            return
        self._queue.append((cmd, args))

    def tick(self) -> None:
        """Collect a reply, send the next command or a status poll, check the process."""
        now = time.monotonic()
        if self.control is None:
            return
        if self._in_flight is not None:
            reply = self.control.poll_reply(0)
            if reply is not None:
                self._on_reply(self._in_flight[0], reply)
                self._in_flight = None
            elif now - self._in_flight[1] > REPLY_TIMEOUT_S:
                cmd = self._in_flight[0]
                self._in_flight = None
                self.on_event("error", f"acquisition process did not answer {cmd!r} within "
                                       f"{REPLY_TIMEOUT_S:.0f} s")
        if self._in_flight is None:
            if self._queue:
                cmd, args = self._queue.popleft()
                self._send(cmd, args)
            elif now - self._last_status_s >= STATUS_PERIOD_S:
                self._last_status_s = now
                self._send("status", {"since": self._last_event_id})
        self._check_process()

    def _send(self, cmd: str, args: dict[str, Any]) -> None:
        assert self.control is not None
        self.control.send(cmd, **args)
        self._in_flight = (cmd, time.monotonic())

    def _on_reply(self, cmd: str, reply: dict[str, Any]) -> None:
        if cmd == "status" and reply.get("ok"):
            for event in reply.get("events", []):
                self._last_event_id = max(self._last_event_id, int(event["id"]))
                self.on_event(str(event["level"]), str(event["text"]))
            self.state.status = reply
        elif not reply.get("ok"):
            self.on_event("error", str(reply.get("error", f"{cmd} failed")))

    def _check_process(self) -> None:
        if self.process is None or self._reported_dead:
            return
        code = self.process.poll()
        if code is not None:
            self._reported_dead = True
            self.state.alive = False
            self.state.exit_code = code
            reason = last_error_line(self.log_file) if self.log_file is not None else ""
            self.on_event("error", f"acquisition process exited with code {code}"
                                   + (f": {reason}" if reason else ""))

    # --- images -------------------------------------------------------------------------------

    def latest(self, topic: str) -> Message | None:
        """The newest image of a display topic, without waiting (None if nothing new)."""
        return self.subscribers[topic].latest(timeout_ms=0)

    # --- shutdown -----------------------------------------------------------------------------

    def close(self, timeout_s: float = 15.0) -> None:
        """Ask the acquisition process to quit (bounded), then release the sockets."""
        if self.control is not None and self.process is not None and self.process.poll() is None:
            self.control.send("quit")
            self.control.poll_reply(int(min(timeout_s, 5.0) * 1000))
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.error("acquisition process did not quit within %.0f s; killing it",
                             timeout_s)
                self.process.kill()
                self.process.wait(10.0)
        for subscriber in self.subscribers.values():
            subscriber.close()
        if self.control is not None:
            self.control.close()
