"""The GUI's acquisition process answers its control messages: typed status, named errors."""

from __future__ import annotations

from pathlib import Path

from acquisition.cli.gui_host import rig_opener
from acquisition.session_host import SessionHost


def test_control_replies_name_a_malformed_field_and_carry_typed_status(tmp_path: Path) -> None:
    host = SessionHost(rig_opener("emulator"), tmp_path, size_px=(32, 32),
                       display_endpoint=f"ipc://{tmp_path}/display")
    try:
        reply = host.handle({"cmd": "status", "since": "yesterday"})
        assert reply["ok"] is False
        assert reply["error"] == ("status: request field 'since' must be a number, "
                                  "got 'yesterday'")
        assert host.handle({"cmd": "fly"}) == {"ok": False, "error": "unknown command 'fly'"}
        status = host.handle({"cmd": "status", "since": 0})
        camera = status["camera"]
        assert isinstance(camera, dict)
        assert camera["shape"] == [32, 32] and camera["rig"] == "emulator"
        assert camera["offset_adu"] > 0 and camera["electrons_per_adu"] > 0
        events = status["events"]
        assert isinstance(events, list) and events, "the bad request is an event"
        assert {"id", "level", "text", "wall_s"} == set(events[0])
        assert events[0]["level"] == "error" and "since" in events[0]["text"]
        newer = host.handle({"cmd": "status", "since": events[-1]["id"]})["events"]
        assert newer == []
    finally:
        host.close()
