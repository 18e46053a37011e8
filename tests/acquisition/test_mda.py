"""Multi-D protocols (useq MDASequence): protocol mapping, engine stage moves, emulator run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import ome_types
import pytest
import tifffile
import useq
import yaozarrs

from acquisition import run_file
from acquisition.engine import AcquisitionEngine
from acquisition.ome_export import export_run
from acquisition.protocol import Protocol, ProtocolError
from acquisition.recovery import describe_run_file
from hardware.errors import RigError

from .conftest import ScriptedSource

MDA = {"stage_positions": [{"x": 0.0, "y": 0.0, "z": 0.0}, {"x": 1.5, "y": -1.0, "z": 2.0}],
       "z_plan": {"relative": [-0.5, 0.0, 0.5]}}


def protocol(tmp_path: Path, **fields: object) -> Protocol:
    data = {"channels": [{"laser_nm": 488}], "output": str(tmp_path / "run.h5"), **fields}
    return Protocol.parse_checked(data)


def test_protocol_maps_onto_an_mda_sequence(tmp_path: Path) -> None:
    p = protocol(tmp_path, timepoints=2, interval_s=1.5, mda=MDA)
    seq = p.mda_sequence()
    assert isinstance(seq, useq.MDASequence)
    assert seq.sizes == {"t": 2, "p": 2, "z": 3}
    assert seq.time_plan is not None and seq.time_plan.interval.total_seconds() == 1.5
    assert p.n_events == 12
    rows = p.acquisition_rows()
    assert rows is not None
    assert [(r.t, r.p, r.z) for r in rows[:4]] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)]
    assert (rows[5].x_um, rows[5].y_um, rows[5].z_um) == (1.5, -1.0, 2.5)  # 2.0 + 0.5
    layout = p.mda_layout()
    assert layout is not None and layout.sizes_tpz == (2, 2, 3) and layout.z_step_um == 0.5
    assert layout.positions_um[1] == (1.5, -1.0, 2.0)
    # a time plan in the sequence becomes timepoints / interval_s
    timed = protocol(tmp_path, mda={**MDA, "time_plan": {"interval": 2.0, "loops": 4}})
    assert (timed.timepoints, timed.interval_s, timed.n_events) == (4, 2.0, 24)
    again = Protocol.parse_checked(timed.model_dump(mode="json"))  # the dump re-validates
    assert again.n_events == 24
    plain = protocol(tmp_path, timepoints=3)
    assert plain.acquisition_rows() is None and plain.n_events == 3 and not plain.is_multi_d


@pytest.mark.parametrize(("mda", "fields", "message"), [
    ({"z_plan": {"relative": [0.0, 0.5, 2.0]}}, {}, "evenly spaced"),
    ({"z_plan": {"top": 1.0, "bottom": 0.0, "step": 0.5}}, {}, "must be relative"),
    ({"channels": ["DAPI"]}, {}, "channels come from"),
    ({"stage_positions": [{"x": 0, "y": 0}], "axis_order": "ptz",
      "time_plan": {"interval": 1, "loops": 2}}, {}, "time must be the outer axis"),
    ({"time_plan": {"interval": 1, "loops": 2}}, {"timepoints": 5}, "not both"),
])
def test_protocol_refuses_mda_it_cannot_run(tmp_path: Path, mda: dict, fields: dict,
                                            message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol(tmp_path, mda=mda, **fields)


class FakeStage:
    """Records stage moves; fails on a chosen target."""

    def __init__(self, fail_at: tuple | None = None) -> None:
        self.moves: list[tuple] = []
        self.fail_at = fail_at
        self.at = (0.0, 0.0, 10.0)

    def move_stage(self, x_um: float | None = None, y_um: float | None = None,
                   z_um: float | None = None, tolerance_um: float = 0.1
                   ) -> tuple[float, float, float]:
        if (x_um, y_um, z_um) == self.fail_at:
            raise RigError(f"stage refused {self.fail_at}")
        if (x_um, y_um, z_um) != (None, None, None):
            self.moves.append((x_um, y_um, z_um))
        self.at = tuple(a if v is None else v for a, v in zip(self.at, (x_um, y_um, z_um),
                                                               strict=True))
        return self.at  # type: ignore[return-value]


def test_engine_moves_before_each_row_and_records_a_failed_move(tmp_path: Path) -> None:
    p = protocol(tmp_path, timepoints=2, mda=MDA)
    stage = FakeStage(fail_at=(1.5, -1.0, 2.0))  # position 1, middle plane
    points = []
    engine = AcquisitionEngine(ScriptedSource(), None, [488], 9, rows=p.acquisition_rows(),
                               stage=stage, on_time_point=points.append)
    report = engine.run(p.n_events)
    assert report.time_points == 12
    assert stage.moves[:3] == [(0.0, 0.0, -0.5), (0.0, 0.0, 0.0), (0.0, 0.0, 0.5)]
    assert len(stage.moves) == 10  # 12 rows, the failed target twice
    failed = [pt.index for pt in points if not pt.sets]
    assert failed == [4, 10]  # (t, p=1, z=1) of both time points: no frames taken there
    gaps = [g for g in report.gaps if g.kind == "rig_error"]
    assert [g.time_point for g in gaps] == [4, 10] and "stage refused" in gaps[0].detail
    assert gaps[0].count == 9  # the set that was not taken
    assert all(len(pt.sets) == 1 for pt in points if pt.index not in failed)


def test_positions_without_z_take_planes_around_the_starting_focus(tmp_path: Path) -> None:
    mda = {"stage_positions": [{"x": 0.0, "y": 0.0}, {"x": 3.0, "y": 0.0}],
           "z_plan": {"relative": [-1.0, 0.0, 1.0]}}
    p = protocol(tmp_path, timepoints=1, mda=mda)
    stage = FakeStage()  # focus starts at z = 10
    AcquisitionEngine(ScriptedSource(), None, [488], 9, rows=p.acquisition_rows(),
                      stage=stage).run(p.n_events)
    assert [m[2] for m in stage.moves] == [9.0, 10.0, 11.0, 9.0, 10.0, 11.0]


def test_engine_schedules_rows_by_their_time_index(tmp_path: Path) -> None:
    p = protocol(tmp_path, timepoints=3, interval_s=5.0, mda=MDA)
    now = [0.0]
    starts = []

    class Clock:
        def __call__(self) -> float:
            return now[0]

    def on_point(point: object) -> None:
        starts.append((point.index, point.scheduled_s))  # type: ignore[attr-defined]
        now[0] += 0.1  # each SIM set takes 0.1 s

    engine = AcquisitionEngine(ScriptedSource(), None, [488], 9, interval_s=5.0,
                               rows=p.acquisition_rows(), stage=FakeStage(),
                               on_time_point=on_point, clock=Clock())
    engine._stop.wait = lambda timeout: (now.__setitem__(0, now[0] + timeout), False)[1]  # type: ignore[method-assign]
    report = engine.run(p.n_events)
    firsts = [s for i, s in starts if i % 6 == 0]
    assert firsts == pytest.approx([0.0, 5.0, 10.0])  # each time index on the interval
    assert report.max_drift_s == pytest.approx(0.0)  # later rows of a time point are not late


@pytest.mark.timeout(600)
def test_two_positions_three_planes_time_lapse_on_the_emulator(tmp_path: Path) -> None:
    """Done-when: a two-position, three-plane time-lapse runs on the emulator and its file
    passes the recorder's checks; exports and the napari reader see its axes."""
    toml = tmp_path / "mda.toml"
    toml.write_text(textwrap.dedent("""
        output = "mda.h5"
        timepoints = 2
        interval_s = 0.5

        [[channels]]
        laser_nm = 488
        reconstruction = "wiener"

        [roi]
        width = 64
        height = 64

        [mda]
        stage_positions = [{x = 0.0, y = 0.0, z = 0.0}, {x = 1.5, y = -1.0, z = 0.0}]
        z_plan = {relative = [-0.5, 0.0, 0.5]}
    """))
    done = subprocess.run([sys.executable, "-m", "acquisition.cli", "run", str(toml),
                           "--no-fsync"], capture_output=True, text=True, timeout=400,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    path = tmp_path / "mda.h5"
    report = describe_run_file(path)
    assert report.time_points == 12 and report.complete_time_points == 12
    assert report.raw_frames == 12 * 9 and report.sr_frames == {"wiener": 12}
    # nothing lost, skipped or failed; sr_flagged may name defocused planes whose pattern
    # fit the live Wiener judged unreliable (the SR is still written)
    lost = {"gap", "missing_frame", "unexpected_frame", "rig_error", "sr_skip", "sr_failed",
            "fault", "worker_died"}
    assert "run_end" in report.events and not lost & set(report.events), report.events
    with h5py.File(path, "r") as h5:
        assert h5["timestamps/sequence"][()].ravel().tolist() == list(range(108))
        index = h5[run_file.MDA_INDEX][()]
        assert index.tolist() == [[t, p, z] for t in range(2) for p in range(2)
                                  for z in range(3)]
        rows, z_step, stage = run_file.mda_rows(h5, 12)
        assert rows.shape == (2, 2, 3) and z_step == 0.5
        np.testing.assert_allclose(stage[1], [1.5, -1.0, 0.0])
        sequence = json.loads(h5[run_file.MDA_GROUP].attrs["sequence"])
        assert useq.MDASequence(**sequence).sizes == {"t": 2, "p": 2, "z": 3}
        wf = h5["wf"][:, 0] - h5["calibration/offset_adu"][()]
    # the emulated focus: the middle plane (z = 0) is the sharpest of each stack
    sharpness = [float(np.var(np.diff(wf[n], axis=1))) for n in range(12)]
    for first in (0, 3, 6, 9):
        assert sharpness[first + 1] > 1.5 * max(sharpness[first], sharpness[first + 2])
    tiff = export_run(path, tmp_path / "sr.ome.tif", "ome-tiff", "sr")
    with tifffile.TiffFile(tiff) as tif:
        images = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
    assert len(images) == 2
    pixels = images[1]["Pixels"]
    assert (pixels["SizeT"], pixels["SizeZ"], pixels["PhysicalSizeZ"]) == (2, 3, 0.5)
    assert pixels["PhysicalSizeX"] == pytest.approx(0.0313)
    assert pixels["Plane"][0]["PositionX"] == 1.5
    zarr = export_run(path, tmp_path / "sr.ome.zarr", "ome-zarr", "sr")
    assert (zarr / "0" / "zarr.json").exists() and (zarr / "1" / "zarr.json").exists()
    yaozarrs.validate_zarr_store(zarr)  # bioformats2raw layout, one image per position
    assert len(ome_types.from_tiff(tiff).images) == 2
    series = json.loads((zarr / "1" / "zarr.json").read_text())["attributes"]["ome"]
    scale = series["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([0.5, 1.0, 0.5, 0.0313, 0.0313])
