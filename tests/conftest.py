"""Shared pytest configuration: opt-in slow tests, GPU skips, the shared asset folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED_ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "dlsr_assets"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    cuda = _cuda_available()
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="session")
def dlsr_assets() -> Path:
    """The shared DL-SR asset folder (../shared/dlsr_assets); skip when it is absent."""
    if not SHARED_ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {SHARED_ASSETS}")
    return SHARED_ASSETS


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """Keep torch to one thread so the suite behaves on a 2-core machine."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def record_emulated_run() -> Callable[..., Path]:
    """Records a one-colour (488 nm, 20 %, 10 ms) SIM run on the emulated rig with RunSession
    and its worker, as `livesim run --emulator` does: ``record(output, config, time_points,
    reconstruction="wiener", display=True, **protocol_fields)`` -> the run file. Checks that
    the run ended cleanly with one SR image per time point."""

    def record(output: Path, config: Any, time_points: int, reconstruction: str = "wiener",
               display: bool = True, **protocol_fields: Any) -> Path:
        from acquisition.protocol import Protocol, sequence_plan
        from acquisition.session import RunSession, SessionOptions
        from sim_emulator.rig import emulated_rig, photon_calibration

        shape = (config.size_px, config.size_px)
        protocol = Protocol.parse_checked({
            "channels": [{"laser_nm": 488, "power_pct": 20.0, "exposure_ms": 10.0,
                          "reconstruction": reconstruction}],
            "timepoints": time_points, "output": str(output), **protocol_fields})
        rig = emulated_rig(config)
        try:
            summary = RunSession(
                rig, sequence_plan(protocol), protocol, shape, 62.6,
                metadata={"emulator": config.model_dump(mode="json")},
                options=SessionOptions(fsync=False, heartbeat_timeout_s=5.0, display=display),
                photon_calibration=photon_calibration(rig, shape)).run()
        finally:
            rig.close()
        assert summary.error == "" and summary.sr_frames == time_points, summary
        return output

    return record
