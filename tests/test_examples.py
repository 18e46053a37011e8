"""The example protocols in examples/ load and run briefly on the emulator."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from acquisition.cli import build_app
from acquisition.protocol import Protocol

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


def test_one_and_two_colour_examples_ship() -> None:
    colours = sorted(len(Protocol.from_toml(p).channels) for p in EXAMPLES)
    assert colours[:2] == [1, 2], [p.name for p in EXAMPLES]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_on_the_emulator(example: Path, tmp_path: Path) -> None:
    protocol = Protocol.from_toml(example)
    output = tmp_path / "run.h5"
    result = CliRunner().invoke(build_app(), [
        "run", str(example), "--time-points", "2", "--interval-s", "0", "--model", "wiener",
        "--output", str(output)])
    assert result.exit_code == 0, result.output
    roi = protocol.roi
    assert roi is not None
    with h5py.File(output, "r") as h5:
        assert h5["raw"].shape == (2, len(protocol.channels), 9, roi.height, roi.width)
        assert h5["sr/wiener"].shape == (2, len(protocol.channels), 2 * roi.height, 2 * roi.width)
        assert h5["timestamps/sr_written"][()].all()  # every colour of every time point
