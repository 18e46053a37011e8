"""The shared settings loader: every bad configuration file names file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from settings_file import load_settings, read_toml, validate_settings


class Laser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_nm: float = Field(gt=0)
    power_pct: float = Field(default=10.0, ge=0, le=100)


class ProbeError(ValueError):
    """Stands in for a caller's own error type (ProtocolError, ConfigError)."""


def test_loads_a_file_and_its_table(tmp_path: Path) -> None:
    path = tmp_path / "laser.toml"
    path.write_text("[laser]\nline_nm = 488\npower_pct = 20\n")
    assert load_settings(Laser, path, "laser", table="laser") == Laser(line_nm=488, power_pct=20)
    flat = tmp_path / "flat.toml"
    flat.write_text("line_nm = 561\n")  # no [laser] table: the top level is used
    assert load_settings(Laser, flat, "laser", table="laser").line_nm == 561


def test_every_bad_field_is_one_line_with_its_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("line_nm = -5\npower_pct = 120\ncolour = 'blue'\n")
    with pytest.raises(ProbeError) as caught:
        load_settings(Laser, path, "laser", error=ProbeError)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path} (laser): field '") for line in lines)
    assert "'line_nm' = -5" in lines[0] and "greater than 0" in lines[0]
    assert "'power_pct' = 120" in lines[1]
    assert "'colour' = 'blue'" in lines[2]


def test_missing_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"missing\.toml: laser file not found"):
        read_toml(tmp_path / "missing.toml", "laser", ProbeError)
    broken = tmp_path / "broken.toml"
    broken.write_text("line_nm = ")
    with pytest.raises(ValueError, match=r"broken\.toml: laser file is not valid TOML"):
        read_toml(broken, "laser")
    with pytest.raises(ValueError, match="cannot read laser file"):
        read_toml(tmp_path, "laser")  # a folder, not a file


def test_nested_values_are_not_dumped_whole() -> None:
    with pytest.raises(ValueError) as caught:
        validate_settings(Laser, {"line_nm": {"a": 1}}, "<cli>")
    assert "<cli>: field 'line_nm' = {...}" in str(caught.value)
