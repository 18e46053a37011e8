"""SIM plans -> device sequences, and the SLM/rotator layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hardware.pattern_layout import (
    LASER_LINES_NM,
    SLM_N_PATTERNS,
    decode_slm_index,
    rotator_state,
    slm_index,
)
from hardware.sequencing import ChannelSpec, SequencePlan


def test_slm_layout_round_trips_every_pattern() -> None:
    seen = set()
    for nm in LASER_LINES_NM:
        for mode, n in (("wf", 1), ("sim", 9), ("nlsim", 25)):
            for pattern in range(n):
                index = slm_index(nm, mode, pattern)  # type: ignore[arg-type]
                line, shown_mode, shown = decode_slm_index(index)
                assert line == nm
                assert shown_mode == ("blank" if mode == "wf" else mode)
                assert shown == (None if mode == "wf" else pattern)
                seen.add(index)
    assert seen == set(range(SLM_N_PATTERNS))


def test_layout_rejects_unknown_line_and_pattern() -> None:
    with pytest.raises(ValueError, match="532 nm"):
        slm_index(532, "sim", 0)
    with pytest.raises(ValueError, match="pattern 9"):
        slm_index(488, "sim", 9)
    with pytest.raises(ValueError, match="orientation 3"):
        rotator_state("sim", 3)


def test_nonlinear_plan_steps_are_orientation_major() -> None:
    plan = SequencePlan(
        channels=(
            ChannelSpec(laser_nm=488, power_pct=10, exposure_ms=5),
            ChannelSpec(laser_nm=640, power_pct=30, exposure_ms=7),
        ),
        mode="nlsim",
    )
    steps = plan.steps()
    assert len(steps) == plan.n_frames == 50
    s = steps[25 + 5 * 3 + 2]
    assert (s.channel, s.laser_nm, s.orientation, s.phase, s.pattern) == (1, 640, 3, 2, 17)
    assert s.slm_index == 3 * 35 + 10 + 17
    assert s.rotator_state == 4 + 3
    assert s.exposure_ms == 7 and s.power_pct == 30


@pytest.mark.parametrize(
    "channel",
    [
        {"laser_nm": 488, "power_pct": -1, "exposure_ms": 5},
        {"laser_nm": 488, "power_pct": 10, "exposure_ms": 0},
        {"laser_nm": 488, "power_pct": 10, "exposure_ms": 5, "gain": 2},
    ],
)
def test_channel_spec_validation(channel: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ChannelSpec.model_validate(channel)


def test_plan_needs_a_channel_and_a_known_mode() -> None:
    with pytest.raises(ValidationError):
        SequencePlan(channels=())
    with pytest.raises(ValidationError):
        SequencePlan.model_validate(
            {"channels": [{"laser_nm": 488, "power_pct": 1, "exposure_ms": 1}], "mode": "3d"}
        )


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.sampled_from(LASER_LINES_NM), min_size=1, max_size=4),
    mode=st.sampled_from(["wf", "sim", "nlsim"]),
)
def test_every_step_decodes_to_its_own_channel_and_pattern(lines: list[int], mode: str) -> None:
    plan = SequencePlan(
        channels=tuple(ChannelSpec(laser_nm=nm, power_pct=10, exposure_ms=5) for nm in lines),
        mode=mode,  # type: ignore[arg-type]
    )
    steps = plan.steps()
    assert len(steps) == plan.n_frames == len(lines) * {"wf": 1, "sim": 9, "nlsim": 25}[mode]
    for i, step in enumerate(steps):
        channel, pattern = divmod(i, plan.patterns_per_channel)
        assert (step.channel, step.pattern) == (channel, pattern)
        assert step.laser_nm == lines[channel]
        assert divmod(pattern, plan.n_phases) == (step.orientation, step.phase)
        line, shown_mode, shown = decode_slm_index(step.slm_index)
        assert line == step.laser_nm
        assert (shown_mode, shown) == (("blank", None) if mode == "wf" else (mode, pattern))
        assert step.rotator_state == rotator_state(mode, step.orientation)  # type: ignore[arg-type]
