"""WorkerSupervisor: starts an inference worker as a subprocess, watches it, restarts it.

:class:`WorkerPool` runs several of them for one run, each on its own: one worker dying or
hanging is restarted alone while the others go on.

The worker is judged by its heartbeats (relayed by the run session from the results socket)
against its :class:`WorkerLimits`: no heartbeat for ``heartbeat_timeout_s`` means hung or dead,
one set running longer than ``busy_timeout_s`` means hung. Either way the process is killed and
restarted (up to ``max_restarts``); every death and restart is reported through ``on_event``
so the run file records the gap. Acquisition never waits on any of this.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

logger = logging.getLogger(__name__)

EventSink = Callable[[str, str], None]  # (kind, detail)


@dataclass(frozen=True)
class WorkerCommand:
    """The `livesim infer` command line for a run."""

    raw_endpoint: str
    results_endpoint: str
    methods: tuple[str, ...]
    raw_shape: tuple[int, int, int]
    mode: str = "sim"
    heartbeat_s: float = 0.5
    log_file: Path | None = None
    calibration: Path | None = None
    pattern_parameters: Path | None = None  # Wiener: rig pattern calibration (JSON)
    imc_model: str | None = None  # IMC-SR model name or path; None: IMC off
    sr_encoding: str = "float32"  # SR payload on the wire: float32 or uint16 (run files)
    run_id: str = ""  # stamped on the worker's heartbeats; its raw sets must carry it
    trust_every: int = 10  # trust record of every Nth set per channel (0: off)
    raw_ring_fd: int | None = None  # read-only descriptor of the run's shared-memory ring
    result_ring_fd: int | None = None  # descriptor of this worker's result ring (its own)

    def argv(self, worker_id: str = "") -> list[str]:
        """The subprocess argument vector (same interpreter, the CLI module)."""
        args = [sys.executable, "-m", "acquisition.cli", "infer",
                "--raw-endpoint", self.raw_endpoint, "--results-endpoint", self.results_endpoint,
                "--run-id", self.run_id, "--worker-id", worker_id,
                "--raw-shape", ",".join(str(n) for n in self.raw_shape),
                "--mode", self.mode, "--heartbeat-s", str(self.heartbeat_s),
                "--parent-pid", str(os.getpid())]
        for method in self.methods:
            args += ["--method", method]
        optional = {"--calibration": self.calibration, "--imc-model": self.imc_model,
                    "--pattern-parameters": self.pattern_parameters,
                    "--raw-ring-fd": self.raw_ring_fd,
                    "--result-ring-fd": self.result_ring_fd,
                    "--sr-encoding": None if self.sr_encoding == "float32" else self.sr_encoding}
        args += [part for flag, value in optional.items() if value is not None
                 for part in (flag, str(value))]
        return [*args, "--trust-every", str(self.trust_every)]


@dataclass(frozen=True)
class WorkerLimits:
    """When a worker counts as dead or hung, and how many restarts it gets."""

    heartbeat_timeout_s: float = 5.0  # silence after its hello
    startup_timeout_s: float = 120.0  # start to hello
    busy_timeout_s: float = 60.0  # one set
    max_restarts: int = 5


class WorkerSupervisor:
    """Owns the worker subprocess: start, health check, kill + restart, stop."""

    def __init__(self, command: WorkerCommand, on_event: EventSink,
                 limits: WorkerLimits = WorkerLimits()) -> None:
        self.command = command
        self.on_event = on_event
        self.limits = limits
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._started_s = 0.0
        self._last_heartbeat_s = 0.0
        self._busy_since_s = 0.0
        self._ready = False
        self._given_up = False
        self.worker_id = ""  # fresh for every start: a killed worker's heartbeats do not count

    def owns(self, worker_id: str) -> bool:
        """True if a message with this worker id comes from the worker running now."""
        return bool(self.worker_id) and worker_id == self.worker_id

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process is not None and self.process.poll() is None

    @property
    def ready(self) -> bool:
        """True once the current worker has said hello."""
        return self._ready and self.alive

    @property
    def given_up(self) -> bool:
        """True after ``max_restarts`` restarts failed: SR is off for the rest of the run."""
        return self._given_up

    def start(self) -> None:
        """Launch a worker process (its output goes to the log file when given)."""
        stdout = None
        if self.command.log_file is not None:
            stdout = self.command.log_file.open("ab")
        self.worker_id = uuid.uuid4().hex[:16]
        try:
            rings = tuple(fd for fd in (self.command.raw_ring_fd, self.command.result_ring_fd)
                          if fd is not None)
            self.process = subprocess.Popen(self.command.argv(self.worker_id),
                                            stdout=stdout,
                                            stderr=subprocess.STDOUT if stdout else None,
                                            pass_fds=rings)
        finally:
            if stdout is not None:
                stdout.close()
        self._started_s = time.monotonic()
        self._last_heartbeat_s = self._started_s
        self._busy_since_s = 0.0
        self._ready = False
        logger.info("worker started (pid %d)", self.process.pid)

    def heartbeat(self, busy_since_s: float = 0.0, hello: bool = False) -> None:
        """Record a heartbeat (busy_since_s: wall time the current set started, 0 idle)."""
        self._last_heartbeat_s = time.monotonic()
        self._busy_since_s = busy_since_s
        if hello:
            self._ready = True

    def check(self) -> str | None:
        """Detect death or hang; kill and restart. Returns the problem found, if any."""
        if self.process is None or self._given_up:
            return None
        now = time.monotonic()
        problem = None
        code = self.process.poll()
        if code is not None:
            problem = f"worker exited with code {code}"
        elif not self._ready and now - self._started_s > self.limits.startup_timeout_s:
            problem = f"worker not ready after {self.limits.startup_timeout_s:.0f} s"
        else:
            problem = self._silent_or_hung(now, silence_counts=self._ready)
        if problem is None:
            return None
        logger.error("%s (pid %d)", problem, self.process.pid)
        self.on_event("worker_died", problem)
        self._kill()
        if self.restarts >= self.limits.max_restarts:
            self._given_up = True
            self.on_event("worker_given_up", f"{self.restarts} restarts used; SR off from now")
            return problem
        self.restarts += 1
        self.start()
        self.on_event("worker_restarted", f"restart {self.restarts} (pid {self.process.pid})")
        return problem

    def _silent_or_hung(self, now: float, silence_counts: bool = True) -> str | None:
        """No heartbeat for too long, or one set running for too long (None: neither)."""
        if silence_counts and now - self._last_heartbeat_s > self.limits.heartbeat_timeout_s:
            return f"no heartbeat for {now - self._last_heartbeat_s:.1f} s"
        if self._busy_since_s and time.time() - self._busy_since_s > self.limits.busy_timeout_s:
            return f"one set running for more than {self.limits.busy_timeout_s:.0f} s"
        return None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to finish (SIGTERM), then kill it after ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("worker did not stop within %.0f s; killing it", timeout_s)
            self._kill()

    def _kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            logger.error("worker pid %d did not die after SIGKILL", self.process.pid)


class RemoteWorker(WorkerSupervisor):
    """A worker on another machine, connected to this run's ``endpoint``: not started or
    killed here, judged by its heartbeats alone. When they stop (or one set runs too long) it
    counts as dead; a worker saying hello on the same endpoint later takes the slot again."""

    def __init__(self, endpoint: str, on_event: EventSink,
                 limits: WorkerLimits = WorkerLimits()) -> None:
        command = WorkerCommand(endpoint, "", (), (0, 0, 0))
        super().__init__(command, on_event, replace(limits, max_restarts=0))
        self.endpoint = endpoint

    @property
    def alive(self) -> bool:
        """Unknown from here: a remote worker is judged by its heartbeats (see ``ready``)."""
        return True

    def start(self) -> None:
        """Nothing to launch: the remote worker connects by itself."""
        self._ready = False
        logger.info("waiting for a remote worker on %s", self.endpoint)

    def adopt(self, worker_id: str) -> None:
        """A worker said hello on this slot's endpoint: it is this slot's worker from now."""
        if self.worker_id and worker_id != self.worker_id:
            self.on_event("worker_restarted", f"remote worker {worker_id} on {self.endpoint}")
        self.worker_id = worker_id
        self._started_s = time.monotonic()

    def check(self) -> str | None:
        """Detect silence or a hung set; the slot then waits for a new hello."""
        if not self._ready:
            return None
        problem = self._silent_or_hung(time.monotonic())
        if problem is None:
            return None
        logger.error("remote worker %s on %s: %s", self.worker_id, self.endpoint, problem)
        self._ready = False
        self.on_event("worker_died", f"remote worker on {self.endpoint}: {problem}")
        return problem

    def stop(self, timeout_s: float = 10.0) -> None:
        """Nothing to stop here: the remote worker runs until its owner stops it."""
        self._ready = False


class WorkerPool:
    """Several supervised workers of one run; worker ``i`` is started by ``commands[i]``, then
    come the remote workers (``remote_endpoints``: one slot each, see :class:`RemoteWorker`).

    Every start gets a fresh worker id (the wire's ``worker_id``): heartbeats count only for
    the worker running now, results are attributed to the slot whatever start sent them.
    """

    def __init__(self, commands: Sequence[WorkerCommand],
                 on_event: Callable[[int, str, str], None],
                 limits: WorkerLimits = WorkerLimits(),
                 remote_endpoints: Sequence[str] = ()) -> None:
        if not commands and not remote_endpoints:
            raise ValueError("a worker pool needs at least one worker")
        self.supervisors: list[WorkerSupervisor] = [
            WorkerSupervisor(command, partial(on_event, index), limits)
            for index, command in enumerate(commands)]
        self.supervisors += [
            RemoteWorker(endpoint, partial(on_event, len(commands) + i), limits)
            for i, endpoint in enumerate(remote_endpoints)]
        self._slot_of_id: dict[str, int] = {}  # every id ever started -> its slot

    def adopt(self, slot: int, worker_id: str) -> None:
        """A remote worker introduced itself on ``slot``'s endpoint with this id."""
        remote = self.supervisors[slot]
        if isinstance(remote, RemoteWorker) and worker_id:
            remote.adopt(worker_id)
            self._slot_of_id[worker_id] = slot

    def start(self) -> None:
        """Launch every local worker (remote ones connect by themselves)."""
        for index, supervisor in enumerate(self.supervisors):
            supervisor.start()
            if supervisor.worker_id:
                self._slot_of_id[supervisor.worker_id] = index

    def slot_of(self, worker_id: str) -> int | None:
        """The slot a worker id was started in (any start of this pool), else None."""
        return self._slot_of_id.get(worker_id)

    def current(self, worker_id: str) -> WorkerSupervisor | None:
        """The supervisor whose running worker has this id (None for stale or foreign ids)."""
        index = self._slot_of_id.get(worker_id)
        if index is None or not self.supervisors[index].owns(worker_id):
            return None
        return self.supervisors[index]

    def ready_slots(self) -> list[int]:
        """Slots whose worker runs and has said hello."""
        return [i for i, s in enumerate(self.supervisors) if s.ready]

    def check(self) -> list[tuple[int, str]]:
        """Check every worker (restarting dead or hung ones): (slot, problem) for each found."""
        found = []
        for index, supervisor in enumerate(self.supervisors):
            problem = supervisor.check()
            if problem is not None:
                found.append((index, problem))
                self._slot_of_id[supervisor.worker_id] = index
        return found

    @property
    def given_up(self) -> bool:
        """True once every local worker has used up its restarts and no remote one is ready."""
        return all(s.given_up or (isinstance(s, RemoteWorker) and not s.ready)
                   for s in self.supervisors)

    @property
    def restarts(self) -> int:
        """Restarts of all workers together."""
        return sum(s.restarts for s in self.supervisors)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to finish (SIGTERM) at once, then wait for each (bounded)."""
        for supervisor in self.supervisors:
            if supervisor.process is not None and supervisor.process.poll() is None:  # local
                supervisor.process.terminate()
        for supervisor in self.supervisors:
            supervisor.stop(timeout_s)
