"""Protocol files: valid ones load; bad ones name the file, the field and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from acquisition.protocol import Protocol, ProtocolError

GOOD = """
mode = "sim"
timepoints = 7
interval_s = 0.5
imc = true
output = "run.h5"

[roi]
x = 0
y = 0
width = 64
height = 64

[[channels]]
laser_nm = 488
power_pct = 20
exposure_ms = 10
reconstruction = "wiener"

[[channels]]
laser_nm = 560
power_pct = 30
exposure_ms = 20
reconstruction = "none"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "protocol.toml"
    path.write_text(text)
    return path


def test_good_protocol_loads_with_output_next_to_it(tmp_path: Path) -> None:
    protocol = Protocol.from_toml(write(tmp_path, GOOD))
    assert protocol.n_patterns == 9 and protocol.timepoints == 7 and protocol.imc
    assert [c.reconstruction for c in protocol.channels] == ["wiener", "none"]
    assert protocol.output == (tmp_path / "run.h5").absolute()
    assert protocol.roi is not None and protocol.roi.width == 64


def test_cli_overrides_win(tmp_path: Path) -> None:
    protocol = Protocol.from_toml(write(tmp_path, GOOD), timepoints=3,
                                  output=str(tmp_path / "x.h5"))
    assert protocol.timepoints == 3 and protocol.output.name == "x.h5"


@pytest.mark.parametrize(
    ("old", "new", "field", "value"),
    [
        ("power_pct = 20", "power_pct = 150", "channels.0.power_pct", "150"),
        ('mode = "sim"', 'mode = "3d"', "mode", "'3d'"),
        ("timepoints = 7", "timepoints = 0", "timepoints", "0"),
        ("laser_nm = 560", "laser_nm = 488", "channels", "488"),
        ('reconstruction = "wiener"', 'reconstruction = "/no/such/model.pt"',
         "channels.0.reconstruction", "/no/such/model.pt"),
        ("imc = true", "imc = true\ncolour = 3", "colour", "3"),
        ('output = "run.h5"', 'output = "run.tif"', "output", "run.tif"),
        ("imc = true", 'imc = true\ncalibration = "cam.h5"', "calibration", "cam.h5"),
    ],
)
def test_bad_value_names_file_field_and_value(tmp_path: Path, old: str, new: str, field: str,
                                              value: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ProtocolError) as info:
        Protocol.from_toml(path)
    message = str(info.value)
    assert str(path) in message and f"'{field}'" in message and value in message


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "run.h5").write_bytes(b"precious")
    with pytest.raises(ProtocolError, match="already exists"):
        Protocol.from_toml(write(tmp_path, GOOD))
    protocol = Protocol.from_toml(write(tmp_path, GOOD), overwrite=True)
    assert protocol.overwrite


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not found"):
        Protocol.from_toml(tmp_path / "missing.toml")
    with pytest.raises(ProtocolError, match="not valid TOML"):
        Protocol.from_toml(write(tmp_path, "mode = "))


def test_imc_model_path_is_relative_to_the_protocol_and_checked(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "imc.pt").write_bytes(b"x")
    protocol_file = tmp_path / "p.toml"
    protocol_file.write_text('output = "o.h5"\nimc = true\nimc_model = "models/imc.pt"\n'
                             "[[channels]]\nlaser_nm = 488\n")
    assert Protocol.from_toml(protocol_file).imc_model == str(tmp_path / "models" / "imc.pt")
    protocol_file.write_text('output = "o.h5"\nimc = true\n[[channels]]\nlaser_nm = 488\n')
    assert Protocol.from_toml(protocol_file).imc_model == "imcsr"  # bundled name kept
    protocol_file.write_text('output = "o.h5"\nimc_model = "gone.pt"\n'
                             "[[channels]]\nlaser_nm = 488\n")
    with pytest.raises(ProtocolError, match=r"imc_model.*gone\.pt"):
        Protocol.from_toml(protocol_file)
    protocol_file.write_text('output = "o.h5"\nimc = true\n[[channels]]\nlaser_nm = 488\n'
                             'reconstruction = "none"\n')
    with pytest.raises(ProtocolError, match="imc = true needs SR images"):
        Protocol.from_toml(protocol_file)
