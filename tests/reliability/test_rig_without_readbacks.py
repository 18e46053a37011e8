"""A rig with no readable trigger count (as real trigger controllers): a missed trigger must
leave zero frames stored under a wrong label, through rig -> engine -> session -> HDF5."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import pytest

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.session import RunSession
from hardware.roles import RoleMap
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.devices_faults import FaultPlan
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.rig import emulated_rig

from .test_rig_faults import OPTIONS, mislabelled

TIME_POINTS = 4
MISSED_AT = 12  # trigger 12 = time point 1, pattern 3


@pytest.mark.parametrize("roles", [
    RoleMap(trigger_count_property=None),  # no trigger count; camera counter present
    RoleMap(trigger_count_property=None, camera_frame_counter_key=None),  # neither
], ids=["no-trigger-count", "no-readbacks"])
def test_missed_trigger_without_trigger_count_stores_no_frame_under_a_wrong_label(
        tmp_path: Path, shown: dict[str, Any], roles: RoleMap) -> None:
    channel = {"laser_nm": 488, "power_pct": 20.0, "exposure_ms": 2.0}
    protocol = Protocol.parse_checked({
        "channels": [{**channel, "reconstruction": "none"}], "timepoints": TIME_POINTS,
        "output": str(tmp_path / "missed.h5")})
    plan = SequencePlan(channels=(ChannelSpec(**channel),))
    rig = emulated_rig(EmulatorConfig(size_px=32, seed=2),
                       faults=FaultPlan(missed_trigger_at=MISSED_AT), roles=roles)
    rig.backend.set_property(rig.camera.label, "RenderMode", "fast")
    assert rig.trigger is not None and rig.trigger.triggers_fired is None
    session = RunSession(rig, plan, protocol, (32, 32), float(rig.camera.pixel_size_nm),
                         options=OPTIONS)
    try:
        summary = session.run()
    finally:
        rig.close()
    assert summary.error == ""
    with h5py.File(protocol.output, "r") as h5:
        raw, sequence = h5["raw"][:, 0], h5["timestamps/sequence"][:, 0]
        complete = h5[run_file.COMPLETE][()]
        events = [(e["kind"].decode(), int(e["time_point"]), e["detail"].decode())
                  for e in h5[run_file.EVENTS][()]]
    assert mislabelled(raw, sequence, shown) == []
    assert (sequence[1] < 0).all(), "frames of the unverifiable time point were kept"
    assert complete.tolist() == [1, 0, 1, 1]  # the discarded time point is marked incomplete
    causes = [d for k, t, d in events if k == "rig_error" and t == 1]
    assert causes and "cannot be verified" in causes[0]
    assert (sequence[[0, 2, 3]] >= 0).all()  # re-armed: the others are whole
