"""Shared pytest configuration: opt-in slow tests, GPU skips, the shared asset folder."""

from __future__ import annotations

import os
from pathlib import Path

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
