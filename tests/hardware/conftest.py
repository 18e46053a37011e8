"""Hardware tests: the emulated rig by default, a real rig with --rig-config path.cfg."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware.rig import Rig
from hardware.roles import RoleMap
from sim_emulator.rig import emulated_rig


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rig-config",
        default=None,
        help="run the hardware conformance suite against this Micro-Manager .cfg",
    )
    parser.addoption(
        "--rig-roles",
        default=None,
        help="role map for --rig-config: shipped profiles and/or TOML files, +-joined",
    )


def small_emulator_config(size_px: int = 64, **overrides: object) -> object:
    """A small two-colour emulator: microtubules on 488 nm, F-actin on 560 nm."""
    from sim_emulator.microscope import EmulatorConfig

    settings: dict[str, object] = {
        "size_px": size_px,
        "structure": "mix",
        "labels_nm": {"microtubules": 488, "f-actin": 560, "ccps": 640},
        "photon_count_e": 1600.0,
        **overrides,
    }
    return EmulatorConfig.model_validate(settings)


@pytest.fixture
def make_emulator() -> Iterator[object]:
    """Factory: make_emulator(faults=None, size_px=64, **config) -> emulated Rig, closed after."""
    made: list[Rig] = []

    def make(
        faults: object = None, size_px: int = 64, roles: RoleMap | None = None,
        **overrides: object,
    ) -> Rig:
        config = small_emulator_config(size_px, **overrides)
        the_rig = emulated_rig(config=config, faults=faults, roles=roles)  # type: ignore[arg-type]
        made.append(the_rig)
        return the_rig

    yield make
    for the_rig in made:
        the_rig.close()


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """The rig under test: --rig-config if given, else a 64x64 emulator."""
    cfg = request.config.getoption("--rig-config", default=None)
    roles_path = request.config.getoption("--rig-roles", default=None)
    roles = RoleMap.load(roles_path) if roles_path else None
    if cfg:
        the_rig = Rig.from_config(Path(cfg), roles)
    else:
        the_rig = emulated_rig(config=small_emulator_config())  # type: ignore[arg-type]
    try:
        yield the_rig
    finally:
        the_rig.close()
