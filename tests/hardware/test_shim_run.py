"""`livesim run` end to end on the shim rig: a protocol with a role map (Hamamatsu DCAM +
TriggerScope profiles), a 561 nm line, camera-master and daq-master timing."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from hardware.pattern_layout import slm_index

CONFIGS = Path(__file__).resolve().parents[2] / "sim_emulator" / "configs"
LINES = (405, 488, 561, 640)  # the triggerscope profile's running order
TTL_BIT = {405: 1, 488: 2, 561: 4, 640: 8}


@pytest.mark.parametrize("timing", ["camera-master", "daq-master"])
def test_protocol_with_role_map_runs_on_the_shim_rig(tmp_path: Path, timing: str) -> None:
    from acquisition.cli import build_app

    roles = f"hamamatsu-dcam+triggerscope+{CONFIGS / 'shim_roles.toml'}"
    if timing == "daq-master":
        roles += f"+{CONFIGS / 'shim_daq_master.toml'}"
    protocol = tmp_path / "p.toml"
    protocol.write_text(
        f'rig = "{CONFIGS / "shim_hamamatsu_triggerscope.cfg"}"\nroles = "{roles}"\n'
        'timepoints = 3\noutput = "run.h5"\n'
        + "".join(f'[[channels]]\nlaser_nm = {nm}\npower_pct = 5\nexposure_ms = 1\n'
                  'reconstruction = "none"\n' for nm in (561, 488)))
    result = CliRunner().invoke(build_app(), ["run", str(protocol)])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "run.h5", "r") as h5:
        raw, sequence = h5["raw"][()], h5["timestamps/sequence"][()]
    assert raw.shape[:3] == (3, 2, 9) and (sequence >= 0).all()
    for c, nm in enumerate((561, 488)):
        for p in range(9):
            ttl, slm = divmod(raw[:, c, p].astype(int), 1000)
            assert (ttl == TTL_BIT[nm]).all()
            assert (slm == slm_index(nm, "sim", p, LINES)).all()


def test_the_gui_host_opens_a_rig_with_its_role_map() -> None:
    from acquisition.cli.gui_host import rig_opener

    roles = f"hamamatsu-dcam+triggerscope+{CONFIGS / 'shim_roles.toml'}"
    opened = rig_opener(str(CONFIGS / "shim_hamamatsu_triggerscope.cfg"), roles=roles)((8, 8))
    try:
        assert opened.rig.camera.label == "HamamatsuHam_DCAM"
        assert opened.rig.aotf.lines_nm == LINES and opened.rig.roles.timing == "camera-master"
    finally:
        opened.rig.close()
