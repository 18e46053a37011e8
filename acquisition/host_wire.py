"""The GUI's control channel to its acquisition process: msgpack requests and replies over REQ/REP.

The GUI never blocks on the acquisition process: every request has a timeout, and a request that
times out resets the socket (REQ_RELAXED) so the next one can go out.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
import zmq

from acquisition.transport import open_socket
from acquisition.wire import unpack_map

logger = logging.getLogger(__name__)

MAX_REPLY_BYTES = 4 * 1024 * 1024


def pack(message: dict[str, Any]) -> bytes:
    """A control message as msgpack bytes (no pickle on any socket)."""
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Decode a control message; a malformed one raises ValueError naming what is wrong."""
    return unpack_map(data, MAX_REPLY_BYTES, "control message")


class ControlClient:
    """GUI side of the control channel: send a command, then poll for its reply (bounded)."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.endpoint = endpoint
        self.socket = open_socket(context, zmq.REQ, endpoint, bind=False, REQ_RELAXED=1,
                                  REQ_CORRELATE=1)
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        self._awaiting = False

    def send(self, cmd: str, **args: Any) -> None:
        """Send a command without waiting (a pending unanswered one is abandoned)."""
        self.socket.send(pack({"cmd": cmd, **args}))
        self._awaiting = True

    def poll_reply(self, timeout_ms: int = 0) -> dict[str, Any] | None:
        """The reply to the last command, or None if none arrived within ``timeout_ms``."""
        if not self._awaiting or not self._poller.poll(timeout_ms):
            return None
        data = self.socket.recv()
        self._awaiting = False
        try:
            return unpack(data)
        except ValueError as exc:
            logger.warning("control reply rejected: %s", exc)
            return {"ok": False, "error": str(exc)}

    def close(self) -> None:
        """Close the socket without waiting."""
        self.socket.close(linger=0)
