"""Security: local endpoints by default, CurveZMQ for anything else (real sockets), no pickle."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from acquisition.transport import (
    ClientAllowList,
    CurveKeys,
    Endpoints,
    TransportSecurityError,
    open_socket,
)
from acquisition.wire import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("acquisition", "calibration", "gui", "hardware", "inference", "sim_emulator")
LIVESIM = [sys.executable, "-m", "acquisition.cli"]


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.term()


def test_default_endpoints_are_ipc_in_a_private_folder() -> None:
    endpoints = Endpoints.ipc()
    folders = set()
    for endpoint in (endpoints.raw, endpoints.results, endpoints.display):
        assert endpoint.startswith("ipc://")
        folders.add(Path(endpoint.removeprefix("ipc://")).parent)
    (folder,) = folders
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert mode & 0o077 == 0, f"{folder} is {oct(mode)}: other users could connect"
    folder.rmdir()


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:*", "tcp://*:*", "tcp://[::]:*"])
def test_binding_beyond_this_host_without_keys_is_refused_before_binding(
        context: zmq.Context, endpoint: str) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(TransportSecurityError, match="CurveZMQ"):
        open_socket(context, zmq.PULL, endpoint, bind=True)
    assert len(os.listdir("/proc/self/fd")) == before  # no socket was even created


def curve_server(context: zmq.Context) -> tuple[zmq.Socket, str, bytes]:
    public, secret = zmq.curve_keypair()
    pull = open_socket(context, zmq.PULL, "tcp://127.0.0.1:*", bind=True,
                       keys=CurveKeys(public, secret))
    return pull, pull.getsockopt_string(zmq.LAST_ENDPOINT), public


def delivered(pull: zmq.Socket, push: zmq.Socket, timeout_ms: int = 1500) -> bool:
    """True if one frame sent by ``push`` reaches ``pull`` within the timeout."""
    if push.poll(timeout_ms, zmq.POLLOUT):
        push.send(b"frame", flags=zmq.NOBLOCK)
    return bool(pull.poll(timeout_ms))


def test_curve_server_refuses_plaintext_and_wrong_key_clients(context: zmq.Context) -> None:
    pull, endpoint, server_public = curve_server(context)
    plain = context.socket(zmq.PUSH)
    plain.setsockopt(zmq.LINGER, 0)
    plain.connect(endpoint)
    wrong_public, _ = zmq.curve_keypair()
    impostor = open_socket(context, zmq.PUSH, endpoint, bind=False,
                           keys=CurveKeys(*zmq.curve_keypair(), server_public_key=wrong_public))
    good = open_socket(context, zmq.PUSH, endpoint, bind=False,
                       keys=CurveKeys(*zmq.curve_keypair(), server_public_key=server_public))
    try:
        assert not delivered(pull, plain), "a plaintext client got a message through"
        assert not delivered(pull, impostor), "a client with the wrong server key got through"
        assert delivered(pull, good, 5000) and pull.recv() == b"frame"
    finally:
        for s in (plain, impostor, good, pull):
            s.close(0)


def test_curve_server_refuses_a_client_key_it_does_not_know(context: zmq.Context) -> None:
    known_public, known_secret = zmq.curve_keypair()
    with ClientAllowList(context, [known_public]):
        pull, endpoint, server_public = curve_server(context)
        stranger = open_socket(context, zmq.PUSH, endpoint, bind=False,
                               keys=CurveKeys(*zmq.curve_keypair(),
                                              server_public_key=server_public))
        known = open_socket(context, zmq.PUSH, endpoint, bind=False,
                            keys=CurveKeys(known_public, known_secret,
                                           server_public_key=server_public))
        try:
            assert not delivered(pull, stranger), "a client outside the allow-list got through"
            assert delivered(pull, known, 5000) and pull.recv() == b"frame"
        finally:
            for s in (stranger, known, pull):
                s.close(0)


def test_an_empty_allow_list_is_refused(context: zmq.Context) -> None:
    with pytest.raises(TransportSecurityError, match="at least one"):
        ClientAllowList(context, [])


def test_worker_refuses_an_exposed_endpoint_without_keys() -> None:
    done = subprocess.run([*LIVESIM, "infer", "--raw-endpoint", "tcp://10.1.2.3:5555",
                           "--results-endpoint", "tcp://10.1.2.3:5556", "--method",
                           "passthrough"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "CurveZMQ" in done.stderr and "10.1.2.3" in done.stderr


def test_receiving_sockets_cap_the_message_size(context: zmq.Context, tmp_path: Path) -> None:
    socket = open_socket(context, zmq.PULL, Endpoints.ipc(tmp_path).results, bind=True,
                         RCVHWM=64)
    try:
        limit = int(socket.getsockopt(zmq.MAXMSGSIZE))
        assert 0 < limit <= MAX_HEADER_BYTES + MAX_PAYLOAD_BYTES
    finally:
        socket.close(0)


def python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def unsafe_calls(path: Path) -> list[str]:
    """Calls that can run code from data: pickle/dill/marshal loads, torch.load without
    weights_only=True, numpy loads with allow_pickle=True, pyzmq's pickle helpers, eval/exec."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            if {"dill", "marshal", "shelve", "cloudpickle"} & {*names, module}:
                found.append(f"{path}:{node.lineno} imports {names or module}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
            func.value, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords}
        where = f"{path}:{node.lineno}"
        if owner in ("pickle", "cPickle", "_pickle") and name in ("load", "loads", "Unpickler"):
            found.append(f"{where} {owner}.{name}")
        if name in ("recv_pyobj", "send_pyobj", "recv_serialized"):
            found.append(f"{where} {name}")
        if owner == "torch" and name == "load":
            safe = keywords.get("weights_only")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                found.append(f"{where} torch.load without weights_only=True")
        if name in ("load", "loads") and owner in ("np", "numpy"):
            allow = keywords.get("allow_pickle")
            if isinstance(allow, ast.Constant) and allow.value is True:
                found.append(f"{where} numpy load with allow_pickle=True")
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            found.append(f"{where} {func.id}")
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import pickle, torch, numpy as np\npickle.loads(b'')\ntorch.load('x')\n"
                     "torch.load('x', weights_only=False)\nnp.load('x', allow_pickle=True)\n"
                     "sock.recv_pyobj()\neval('1')\ntorch.load('x', weights_only=True)\n")
    assert len(unsafe_calls(probe)) == 6


def test_no_code_loading_deserialiser_anywhere_in_the_project() -> None:
    files = python_files()
    assert len(files) > 50
    problems = [problem for path in files for problem in unsafe_calls(path)]
    assert problems == []
