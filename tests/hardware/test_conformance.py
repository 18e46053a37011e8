"""The per-role conformance suite, on the emulator (or a real rig with --rig-config)."""

from __future__ import annotations

import pytest

from hardware.conformance import CHECKS, Check, NotApplicable
from hardware.rig import Rig


@pytest.mark.timeout(60)
@pytest.mark.parametrize("check", CHECKS, ids=[f"{c.role}-{c.name}" for c in CHECKS])
def test_role_conforms(rig: Rig, check: Check) -> None:
    try:
        check.run(rig)
    except NotApplicable as e:
        pytest.skip(str(e))
