"""A rig built in a process that already runs a Qt application still delivers its frames."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hardware.rig import Rig
from hardware.sequencing import ChannelSpec, SequencePlan


def test_rig_events_stay_on_psygnal_when_a_qt_app_exists(
        make_emulator: Callable[..., Rig]) -> None:
    qt = pytest.importorskip("pyqtgraph.Qt")
    app = qt.QtWidgets.QApplication.instance() or qt.QtWidgets.QApplication([])
    assert app is not None
    rig = make_emulator()
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20, exposure_ms=5),),
                        mode="sim")
    frames = rig.acquire_time_point(plan, time_point=0, timeout_s=10.0)
    assert [f.tag.pattern_index for f in frames] == list(range(9))
