"""Saturated, all-zero and NaN-producing inputs through preprocessing, models and the worker's
wire format: flagged, and never a NaN in an SR image."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.session import RunSession, SessionOptions
from acquisition.wire import Kind, decode, encode, header_for
from hardware.frames import FrameTag, TaggedFrame
from inference.model_file import bundled_models, save_model
from inference.models import Dfcan, DfcanOptions
from inference.preprocessing import (
    FLAG_ALL_ZERO,
    FLAG_NON_FINITE_INPUT,
    FLAG_NON_FINITE_OUTPUT,
    FLAG_SATURATED,
)
from inference.reconstruction import make_reconstructor
from inference.worker import result_info

SHAPE = (9, 32, 32)


def good_set(seed: int = 0) -> np.ndarray:
    return (100 + np.random.default_rng(seed).poisson(80, SHAPE)).astype(np.uint16)


def bad_set(kind: str) -> np.ndarray:
    if kind == "all_zero":
        return np.zeros(SHAPE, np.uint16)
    if kind == "saturated":
        return np.full(SHAPE, 65535, np.uint16)
    raw = good_set(1)
    raw[:, :4, :4] = 65535  # a bright spot clipped in every frame
    return raw


EXPECTED = {"all_zero": FLAG_ALL_ZERO, "saturated": FLAG_SATURATED,
            "partly_saturated": FLAG_SATURATED}


def nan_model(path: Path) -> Path:
    torch.manual_seed(0)
    module = Dfcan(DfcanOptions(width=8, groups=1, blocks=1, reduction=4, spectrum_size=16))
    with torch.no_grad():
        module.tail.bias.fill_(float("nan"))  # type: ignore[union-attr]
    save_model(path, module, architecture="dfcan", mode="sim")
    return path


METHODS = ["wiener", "none", pytest.param("dfcan-sim", marks=pytest.mark.skipif(
    "dfcan-sim" not in bundled_models(), reason="bundled dfcan-sim not installed"))]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_bad_sets_are_flagged_and_give_finite_images(method: str, kind: str) -> None:
    reconstructor = make_reconstructor(method, mode="sim", device="cpu")
    reconstructor.reconstruct(good_set())  # Wiener estimates its parameters on real data first
    result = reconstructor.reconstruct(bad_set(kind))
    assert EXPECTED[kind] in result.flags
    assert np.isfinite(result.image).all()


def test_nan_producing_model_is_flagged_and_never_writes_nan(tmp_path: Path) -> None:
    reconstructor = make_reconstructor(str(nan_model(tmp_path / "nan.pt")), device="cpu")
    result = reconstructor.reconstruct(good_set())
    assert FLAG_NON_FINITE_OUTPUT in result.flags
    assert np.isfinite(result.image).all()


@dataclass
class Maps:
    offset_adu: np.ndarray
    gain_adu_per_e: np.ndarray
    defect_mask: np.ndarray | None = None


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_calibration_that_divides_by_zero_is_flagged_not_propagated() -> None:
    gain = np.full(SHAPE[1:], 2.0, np.float32)
    gain[3, 5] = 0.0  # a dead gain entry: dividing by it gives inf
    maps = Maps(np.full(SHAPE[1:], 100.0, np.float32), gain)
    reconstructor = make_reconstructor("none", mode="sim", calibration=maps, device="cpu")
    result = reconstructor.reconstruct(good_set())
    assert FLAG_NON_FINITE_INPUT in result.flags
    assert np.isfinite(result.image).all()


def test_flags_survive_the_wire(tmp_path: Path) -> None:
    reconstructor = make_reconstructor(str(nan_model(tmp_path / "nan.pt")), device="cpu")
    result = reconstructor.reconstruct(bad_set("saturated"))
    header = header_for(Kind.SR_RESULT, "run", 1, result.image, time_point=0, channel=0,
                        info=result_info(result))
    head, payload = encode(header, result.image)
    message = decode([bytes(head), payload.tobytes()])
    assert {FLAG_NON_FINITE_OUTPUT, FLAG_SATURATED} <= set(message.header.info["flags"])


class BadFrameSource:
    """Good sets except an all-zero one at t=1 and a saturated one at t=2."""

    def __init__(self) -> None:
        self.sequence = 0

    def stream_time_point(self, plan: Any, time_point: int, timeout_s: float) -> Any:
        frames = {1: bad_set("all_zero"), 2: bad_set("saturated")}.get(time_point,
                                                                        good_set(time_point))
        for p in range(9):
            tag = FrameTag(time_point=time_point, channel=0, laser_nm=488, orientation=p // 3,
                           phase=p % 3, pattern_index=p, sequence=self.sequence,
                           timestamp_s=time.monotonic(), exposure_ms=10.0)
            self.sequence += 1
            yield TaggedFrame(frames[p], tag)

    def acquire_time_point(self, plan: Any, time_point: int, timeout_s: float) -> list[Any]:
        return list(self.stream_time_point(plan, time_point, timeout_s))


def test_flags_reach_the_run_file(tmp_path: Path) -> None:
    model = nan_model(tmp_path / "nan.pt")
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": str(model)}], "timepoints": 4,
        "output": str(tmp_path / "run.h5")})
    options = SessionOptions(fsync=False, display=False, heartbeat_s=0.2, drain_idle_s=20.0)
    summary = RunSession(BadFrameSource(), None, protocol, SHAPE[1:], 62.6,
                         options=options).run()
    assert summary.error == "" and summary.sr_frames == 4
    with h5py.File(protocol.output, "r") as h5:
        events = [(e["kind"].decode(), int(e["time_point"]), e["detail"].decode())
                  for e in h5[run_file.EVENTS][()]]
    flagged = {t: d for _, t, d in events if FLAG_NON_FINITE_OUTPUT in d}
    assert set(flagged) == {0, 1, 2, 3}
    assert FLAG_ALL_ZERO in flagged[1] and FLAG_SATURATED in flagged[2]
