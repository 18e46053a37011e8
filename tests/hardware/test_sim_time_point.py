"""Done-when: a sequenced 2-colour SIM time point whose tags match what the light path showed."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pytest

from hardware.pattern_layout import rotator_state, slm_index
from hardware.rig import Rig
from hardware.roles import RoleMap
from hardware.sequencing import ChannelSpec, SequencePlan
from sim_emulator.rig import optical_bench

TWO_COLOUR = SequencePlan(
    channels=(
        ChannelSpec(laser_nm=488, power_pct=100.0, exposure_ms=10.0),
        ChannelSpec(laser_nm=560, power_pct=80.0, exposure_ms=20.0),
    ),
    mode="sim",
)


def carrier_angle_deg(image: np.ndarray, k_cycles_per_px: float) -> float:
    """Angle (deg, mod 180) of the strongest spectral peak on the ring |k| = carrier."""
    return ring_peak_angle_deg(np.abs(np.fft.fft2(image - image.mean())), k_cycles_per_px)


def ring_peak_angle_deg(magnitude: np.ndarray, k_cycles_per_px: float) -> float:
    """Angle (deg, mod 180) of the largest value of an FFT magnitude on the ring |k|."""
    fy = np.fft.fftfreq(magnitude.shape[0])[:, None]
    fx = np.fft.fftfreq(magnitude.shape[1])[None, :]
    ring = np.abs(np.hypot(fx, fy) - k_cycles_per_px) < 1.5 / magnitude.shape[0]
    # one half-plane, so each carrier appears once (its conjugate is the other half)
    half = (fy > 0) | ((fy == 0) & (fx > 0))
    masked = np.where(ring & half, magnitude, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)
    return float(np.degrees(np.arctan2(fy[iy, 0], fx[0, ix])) % 180.0)


def amplitude_at(image: np.ndarray, k_cycles_per_px: np.ndarray) -> complex:
    """Complex spectrum of `image` at the pixel nearest wave vector (kx, ky) cycles/px."""
    h, w = image.shape
    iy, ix = round(k_cycles_per_px[1] * h) % h, round(k_cycles_per_px[0] * w) % w
    return complex(np.fft.fft2(image.astype(np.float64))[iy, ix])


def test_two_colour_sim_time_point_matches_display_log_and_spectrum(
    make_emulator: Callable[..., Rig],
) -> None:
    rig = make_emulator(size_px=96)
    frames = rig.acquire_time_point(TWO_COLOUR, time_point=3, timeout_s=30.0)

    assert len(frames) == 18
    tags = [f.tag for f in frames]
    assert [(t.channel, t.orientation, t.phase) for t in tags] == [
        (c, o, p) for c in range(2) for o in range(3) for p in range(3)
    ]
    assert [t.laser_nm for t in tags] == [488] * 9 + [560] * 9
    assert [t.exposure_ms for t in tags] == [10.0] * 9 + [20.0] * 9
    assert [t.sequence for t in tags] == list(range(18))
    assert all(t.time_point == 3 for t in tags)
    assert all(b.tag.timestamp_s >= a.tag.timestamp_s for a, b in pairwise(frames))

    # the emulator's display log: what SLM / AOTF / rotator really showed per exposure
    log = [r for r in optical_bench(rig).display_log if r.delivered]
    assert len(log) == 18
    for frame, shown in zip(frames, log, strict=True):
        t = frame.tag
        assert shown.pattern == t.pattern_index
        assert shown.mode == "sim"
        assert shown.grating_nm == t.laser_nm == shown.laser_nm
        assert shown.pattern_index == slm_index(t.laser_nm, "sim", t.pattern_index)
        assert shown.rotator_state == rotator_state("sim", t.orientation)
        assert shown.exposure_ms == t.exposure_ms
        assert shown.power_pct == (100.0 if t.laser_nm == 488 else 80.0)
        assert shown.shutter_open

    # and the pattern visible in each frame: carrier angle per orientation, phase steps of 2pi/3
    patterns = optical_bench(rig).microscope("sim").patterns
    k = patterns.wave_vectors_cycles_per_nm()
    pixel_nm = rig.camera.pixel_size_nm
    k_px = float(np.hypot(*k[0])) * pixel_nm
    expected_deg = np.degrees(np.arctan2(k[:, 1], k[:, 0])) % 180.0
    resolution_deg = np.degrees(1.5 / (96 * k_px))
    for c in range(2):
        for o in range(3):
            amplitudes = []
            for p in range(3):
                frame = frames[9 * c + 3 * o + p]
                angle = carrier_angle_deg(frame.image, k_px)
                diff = abs((angle - expected_deg[o] + 90.0) % 180.0 - 90.0)
                assert diff < resolution_deg, (c, o, p, angle, expected_deg[o])
                amplitudes.append(amplitude_at(frame.image, k[o] * pixel_nm))
            # minus the mean over phases: the sample's own spectrum at k cancels, the
            # illumination term exp(i phase) remains
            a = np.array(amplitudes) - np.mean(amplitudes)
            steps = [float(np.angle(a[p + 1] / a[p])) for p in range(2)]
            for step in steps:
                assert abs(abs(step) - 2 * np.pi / 3) < 0.3, (c, o, steps)
            assert np.sign(steps[0]) == np.sign(steps[1])


def test_time_points_continue_the_sequence_and_log(make_emulator: Callable[..., Rig]) -> None:
    rig = make_emulator()
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=50, exposure_ms=5),))
    streamed = list(rig.stream(plan, range(3), timeout_s=20.0))
    assert [f.tag.sequence for f in streamed] == list(range(27))
    assert [f.tag.time_point for f in streamed] == [t for t in range(3) for _ in range(9)]
    assert optical_bench(rig).triggers_fired == 27
    assert [r.pattern for r in optical_bench(rig).display_log] == list(range(9)) * 3


def test_wide_field_plan_uses_blank_slm_and_no_rotator_sequence(
    make_emulator: Callable[..., Rig],
) -> None:
    rig = make_emulator()
    plan = SequencePlan(
        channels=(
            ChannelSpec(laser_nm=488, power_pct=50, exposure_ms=5),
            ChannelSpec(laser_nm=560, power_pct=50, exposure_ms=5),
        ),
        mode="wf",
    )
    frames = rig.acquire_time_point(plan, 0, timeout_s=20.0)
    assert [(f.tag.channel, f.tag.laser_nm) for f in frames] == [(0, 488), (1, 560)]
    assert [(r.mode, r.laser_nm, r.rotator_state) for r in optical_bench(rig).display_log] == [
        ("blank", 488, 0), ("blank", 560, 0)
    ]


@pytest.mark.parametrize("power_pct", [0.0, 100.0])
def test_frame_brightness_follows_laser_power(
    make_emulator: Callable[..., Rig], power_pct: float
) -> None:
    rig = make_emulator()
    plan = SequencePlan(
        channels=(ChannelSpec(laser_nm=488, power_pct=power_pct, exposure_ms=10),), mode="wf"
    )
    frame = rig.acquire_time_point(plan, 0, timeout_s=20.0)[0]
    offset = optical_bench(rig).config.sensor.offset_adu
    signal = float(frame.image.mean()) - offset
    if power_pct == 0:
        assert abs(signal) < 5.0
    else:
        assert signal > 50.0


@pytest.mark.parametrize("render_mode", ["fast", "replay"])
def test_fast_render_modes_show_the_same_patterns(
    make_emulator: Callable[..., Rig], render_mode: str
) -> None:
    rig = make_emulator(size_px=96)
    rig.backend.set_property(rig.camera.label, "RenderMode", render_mode)
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=100, exposure_ms=10),))
    frames = rig.acquire_time_point(plan, 0, timeout_s=30.0)
    k = optical_bench(rig).microscope("sim").patterns.wave_vectors_cycles_per_nm()
    pixel_nm = rig.camera.pixel_size_nm
    k_px = float(np.hypot(*k[0])) * pixel_nm
    expected_deg = np.degrees(np.arctan2(k[:, 1], k[:, 0])) % 180.0
    for frame in frames:
        angle = carrier_angle_deg(frame.image, k_px)
        diff = abs((angle - expected_deg[frame.tag.orientation] + 90.0) % 180.0 - 90.0)
        assert diff < np.degrees(1.5 / (96 * k_px))
    assert not np.array_equal(frames[0].image, frames[1].image)


def test_nonlinear_sim_time_point_shows_five_orientations(
    make_emulator: Callable[..., Rig],
) -> None:
    rig = make_emulator(size_px=96)
    plan = SequencePlan(
        channels=(ChannelSpec(laser_nm=488, power_pct=100, exposure_ms=10),), mode="nlsim"
    )
    frames = rig.acquire_time_point(plan, 0, timeout_s=60.0)
    assert len(frames) == 25
    log = optical_bench(rig).display_log
    assert [(r.mode, r.pattern, r.rotator_state) for r in log] == [
        ("nlsim", 5 * o + p, 4 + o) for o in range(5) for p in range(5)
    ]
    patterns = optical_bench(rig).microscope("nlsim").patterns
    assert patterns.n_patterns == 25
    k = patterns.wave_vectors_cycles_per_nm()
    k_px = float(np.hypot(*k[0])) * rig.camera.pixel_size_nm
    expected_deg = np.degrees(np.arctan2(k[:, 1], k[:, 0])) % 180.0
    for o in range(5):
        # minus the mean over the 5 phases: the sample's own spectrum cancels, the
        # illumination's carriers remain
        stack = np.stack([f.image.astype(np.float64) for f in frames[5 * o : 5 * o + 5]])
        modulated = np.abs(np.fft.fft2(stack - stack.mean(axis=0))).sum(axis=0)
        angle = ring_peak_angle_deg(modulated, k_px)
        diff = abs((angle - expected_deg[o] + 90.0) % 180.0 - 90.0)
        assert diff < np.degrees(1.5 / (96 * k_px)), (o, angle, expected_deg[o])


def _modulation(frames: list, k_px: np.ndarray, offset_adu: float) -> float:
    """Fringe strength of one orientation's phase frames: carrier over mean signal."""
    amplitudes = np.array([amplitude_at(f.image, k_px) for f in frames])
    signal = float(np.sum([f.image.astype(np.float64).sum() - offset_adu * f.image.size
                           for f in frames])) / len(frames)
    return float(np.abs(amplitudes - amplitudes.mean()).mean()) / signal


def test_unsequenced_rotator_shows_as_lost_fringe_contrast(
    make_emulator: Callable[..., Rig],
) -> None:
    plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=100, exposure_ms=10),))
    right = make_emulator(size_px=96)
    wrong = make_emulator(size_px=96, roles=RoleMap(rotator=None))  # rotator left at state 0
    good = right.acquire_time_point(plan, 0, timeout_s=30.0)
    bad = wrong.acquire_time_point(plan, 0, timeout_s=30.0)
    assert {r.rotator_state for r in optical_bench(wrong).display_log} == {0}
    patterns = optical_bench(right).microscope("sim").patterns
    k = patterns.wave_vectors_cycles_per_nm() * right.camera.pixel_size_nm
    offset = optical_bench(right).config.sensor.offset_adu
    ratios = [
        _modulation(bad[3 * o : 3 * o + 3], k[o], offset)
        / _modulation(good[3 * o : 3 * o + 3], k[o], offset)
        for o in range(3)
    ]
    expected = np.cos(patterns.angles_rad()) ** 2  # state 0 is polarized at 0 rad
    assert np.allclose(ratios, expected, atol=0.15), (ratios, expected)
