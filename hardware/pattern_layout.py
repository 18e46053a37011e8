"""Where each SIM pattern lives on the rig: the SLM running order and the rotator states.

The SLM holds, per laser line (in the order of the rig's ``laser_lines_nm``, by default 405,
488, 560, 640 nm), one block of 1 blank + 9 linear-SIM + 25 nonlinear-SIM gratings
(orientation-major, `pattern = n_phases * orientation + phase`). The lines are configuration
(`RoleMap.laser_lines_nm`): a rig with a 561 nm laser lists 561 there and loads its running
order in that order. The polarization rotator has one state per orientation: 0 wide-field,
1 + o for linear SIM, 4 + o for nonlinear SIM. A real rig's SLM running order must follow
this layout (docs/hardware.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

LASER_LINES_NM: tuple[int, ...] = (405, 488, 560, 640)  # the default (emulator) running order
SimMode = Literal["wf", "sim", "nlsim"]
PatternMode = Literal["blank", "sim", "nlsim"]
SLM_BLOCK = 35
_SIM_OFFSET = 1
_NLSIM_OFFSET = 10
SLM_N_PATTERNS = SLM_BLOCK * len(LASER_LINES_NM)
GRID: dict[str, tuple[int, int]] = {"wf": (1, 1), "sim": (3, 3), "nlsim": (5, 5)}
ROTATOR_N_STATES = 9


def slm_n_patterns(lines_nm: Sequence[int] = LASER_LINES_NM) -> int:
    """Images in the running order of a rig whose grating sets are for `lines_nm`."""
    return SLM_BLOCK * len(lines_nm)


def slm_index(
    laser_nm: int, mode: SimMode, pattern: int, lines_nm: Sequence[int] = LASER_LINES_NM
) -> int:
    """SLM running-order index of `pattern` of `mode` for the grating set of `laser_nm`."""
    lines = tuple(lines_nm)
    if laser_nm not in lines:
        raise ValueError(f"laser line {laser_nm} nm has no SLM grating set {lines}")
    n_orientations, n_phases = GRID[mode]
    if not 0 <= pattern < n_orientations * n_phases:
        raise ValueError(f"pattern {pattern} outside 0..{n_orientations * n_phases - 1} ({mode})")
    base = SLM_BLOCK * lines.index(laser_nm)
    if mode == "wf":
        return base
    return base + (_SIM_OFFSET if mode == "sim" else _NLSIM_OFFSET) + pattern


def decode_slm_index(
    index: int, lines_nm: Sequence[int] = LASER_LINES_NM
) -> tuple[int, PatternMode, int | None]:
    """SLM running-order index -> (laser line of the grating set, mode, pattern in the set)."""
    lines = tuple(lines_nm)
    n_patterns = slm_n_patterns(lines)
    if not 0 <= index < n_patterns:
        raise ValueError(f"SLM pattern index {index} outside 0..{n_patterns - 1}")
    block, offset = divmod(index, SLM_BLOCK)
    line = lines[block]
    if offset == 0:
        return line, "blank", None
    if offset < _NLSIM_OFFSET:
        return line, "sim", offset - _SIM_OFFSET
    return line, "nlsim", offset - _NLSIM_OFFSET


def rotator_state(mode: SimMode, orientation: int) -> int:
    """Polarization-rotator state for `orientation` of `mode`."""
    n_orientations = GRID[mode][0]
    if not 0 <= orientation < n_orientations:
        raise ValueError(f"orientation {orientation} outside 0..{n_orientations - 1} ({mode})")
    return {"wf": 0, "sim": 1, "nlsim": 4}[mode] + orientation
