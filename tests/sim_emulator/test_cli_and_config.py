"""`livesim emulate` writes the documented run-file layout; configs load from TOML."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition.cli import build_app
from acquisition.run_file import read_metadata
from sim_emulator.microscope import EmulatorConfig


def test_emulate_writes_documented_layout(tmp_path: Path) -> None:
    output = tmp_path / "run.h5"
    result = CliRunner().invoke(
        build_app(),
        ["emulate", "--structure", "mix", "--mode", "sim", "--size-px", "48",
         "--photon-count-e", "150", "--time-points", "2", "--seed", "4", "--na", "1.3",
         "--wavelength-nm", "520",
         "--pixel-size-nm", "65", "--pattern-period-nm", "230", "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    with h5py.File(output, "r") as h5:
        assert h5["raw"].shape == (2, 1, 9, 48, 48) and h5["raw"].dtype == np.uint16
        assert h5["gt/sr"].shape == (2, 1, 96, 96) and h5["gt/sr"].dtype == np.float32
        assert h5["gt/wf"].shape == (2, 1, 48, 48) and h5["gt/wf"].dtype == np.float32
        assert h5["gt/components"].shape == (2, 3, 96, 96)
        assert h5["raw"].attrs["element_size_um"][-1] == pytest.approx(0.065)
        assert h5["gt/sr"].attrs["element_size_um"][-1] == pytest.approx(0.0325)
        meta = read_metadata(h5)
        assert meta["optics"]["na"] == 1.3 and meta["optics"]["emission_nm"] == 520
        assert meta["patterns"]["period_nm"] == 230 and meta["patterns"]["n_patterns"] == 9
        assert meta["camera"]["electrons_per_adu"] > 0
        assert meta["emulator"]["seed"] == 4
        assert meta["emulator"]["components"] == ["ccps", "microtubules", "f-actin"]
        assert h5["photon_count"][0, 0] == pytest.approx(150.0, rel=0.1)
        assert not np.array_equal(h5["raw"][0], h5["raw"][1])  # the sample moved on


def test_emulate_refuses_to_overwrite_and_names_bad_values(tmp_path: Path) -> None:
    output = tmp_path / "run.h5"
    output.write_bytes(b"")
    runner = CliRunner()
    result = runner.invoke(build_app(), ["emulate", "--size-px", "32", "--output", str(output)])
    assert result.exit_code != 0 and "exists" in result.output
    result = runner.invoke(
        build_app(),
        ["emulate", "--size-px", "32", "--na", "1.7", "--output", str(tmp_path / "x.h5")]
    )
    assert result.exit_code != 0 and "na" in result.output


def test_config_from_toml_and_errors_name_field_and_value(tmp_path: Path) -> None:
    good = tmp_path / "emulator.toml"
    good.write_text(
        'structure = "er"\nsize_px = 64\nphoton_count_e = 120.0\n'
        '[optics]\nna = 1.2\n[patterns]\nmode = "nlsim"\n[sensor]\nbinning = 2\n'
    )
    config = EmulatorConfig.from_toml(good)
    assert config.patterns.n_patterns == 25 and config.sensor.binning == 2
    assert config.patterns.period_nm == pytest.approx(525 / (0.9 * 2 * 1.2))
    bad = tmp_path / "bad.toml"
    bad.write_text("[sensor]\nqe = 1.5\n")
    with pytest.raises(ValueError, match=r"bad\.toml.*'sensor\.qe' = 1\.5"):
        EmulatorConfig.from_toml(bad)


def test_config_survives_a_json_round_trip_as_run_metadata() -> None:
    """acquisition stores model_dump(mode="json") and rebuilds the emulator from it."""
    import json

    from sim_emulator.microscope import Microscope

    config = EmulatorConfig(size_px=(40, 56), seed=3, structure="mix", patterns={"mode": "nlsim"})
    rebuilt = EmulatorConfig.model_validate(json.loads(json.dumps(config.model_dump(mode="json"))))
    assert rebuilt == config
    first = Microscope(config).ground_truth(0.0, 488.0).sr
    assert np.array_equal(first, Microscope(rebuilt).ground_truth(0.0, 488.0).sr)
