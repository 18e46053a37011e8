"""The headless CLI on the emulated rig: `livesim run`, protocol errors, SIGKILL + recover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition import run_file
from acquisition.cli import build_app
from acquisition.recovery import describe_run_file
from inference.reconstruction import make_reconstructor
from inference.worker import PhotonCalibration

LIVESIM = [sys.executable, "-m", "acquisition.cli"]


def test_run_emulator_records_every_raw_frame_and_sr_frame(tmp_path: Path) -> None:
    output = tmp_path / "run.h5"
    done = subprocess.run([*LIVESIM, "run", "--emulator", "--time-points", "20", "--size-px",
                           "64", "--no-fsync", "--output", str(output)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = done.stdout + done.stderr[-3000:]
    assert "raw frames      180" in done.stdout and "SR frames       20" in done.stdout, report
    with h5py.File(output, "r") as h5:
        assert h5["raw"].shape == (20, 1, 9, 64, 64)
        assert h5["timestamps/sequence"][()].ravel().tolist() == list(range(180))
        assert np.all(np.diff(h5["timestamps/camera_s"][()].ravel()) > 0)
        assert h5["timestamps/complete"][()].sum() == 20
        sr_name = next(iter(h5["sr"]))
        sr = run_file.read_sr(h5, sr_name)
        assert sr.shape == (20, 1, 128, 128) and np.isfinite(sr).all()
        assert sr.std() > 0  # a real reconstruction, not a blank
        kinds = {e["kind"].decode() for e in h5[run_file.EVENTS][()]}
        assert not kinds & {"gap", "missing_frame", "rig_error", "sr_skip", "fault"}, (
            [tuple(e) for e in h5[run_file.EVENTS][()]], report)
        meta = run_file.read_metadata(h5)
        model = meta["models"]["0"]
        assert model["model_name"] == sr_name and model["method"] == "default"
        methods = h5[run_file.QC_GROUP][run_file.QC_METHOD][:, 0].astype(str).tolist()
        events = h5[run_file.EVENTS][()]
        reasons = {int(e["time_point"]): e["detail"].decode() for e in events
                   if e["kind"].decode() == "sr_method"}
        # a choice is not a problem: sr_flagged stays for flagged input or output
        assert not [e for e in events if e["kind"].decode() == "sr_flagged"
                    and b"auto:" in e["detail"]]
        if sr_name == "wiener":  # the fallback is explicit in the file
            assert "not installed" in model["note"] and "reconstruction_fallback" in kinds
            assert methods == ["wiener"] * 20
        else:  # the default is auto: per set the bundled network or Wiener SIM, and why
            assert sr_name == "auto" and model["note"] == ""
            assert set(methods) <= {"dfcan-sim", "wiener"} and len(methods) == 20, methods
            for t, method in enumerate(methods):
                assert f"auto:{method}: " in reasons.get(t, ""), (t, method, reasons.get(t))
        assert meta["emulator_seed"] == 0 and meta["software_version"]
        raw = h5["raw"][:, 0]
        calibration = {name: h5["calibration"][name][()] for name in h5["calibration"]}
        photon_count = h5["photon_count"][:, 0]
    # Emulator runs record the sensor's own calibration, and every SR frame its photon count.
    assert set(calibration) == {"offset_adu", "electrons_per_adu", "defect_mask"}
    # e- per ADU: QE plays no part
    assert float(calibration["electrons_per_adu"]) == pytest.approx(1 / 2.0)
    assert np.isfinite(photon_count).all() and (photon_count > 0).all()
    # The SR frames in the file are exactly what the reconstruction makes of the raw in the file
    # with the calibration in the file.
    maps = PhotonCalibration(calibration["offset_adu"],
                             np.full((64, 64), 1 / calibration["electrons_per_adu"], np.float32),
                             calibration["defect_mask"].astype(bool))
    reconstructor = make_reconstructor(sr_name, mode="sim", calibration=maps)
    for t in range(20):
        np.testing.assert_allclose(reconstructor.reconstruct(raw[t]).image, sr[t, 0],
                                   atol=0.51 / 65535)  # stored as uint16 x 1/65535


def test_bad_protocol_exits_2_naming_field_and_value(tmp_path: Path) -> None:
    protocol = tmp_path / "p.toml"
    protocol.write_text('output = "x.h5"\n[[channels]]\nlaser_nm = 488\nexposure_ms = -3\n')
    result = CliRunner().invoke(build_app(), ["run", str(protocol)])
    assert result.exit_code == 2
    assert "channels.0.exposure_ms" in result.output and "-3" in result.output
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_sigkilled_run_keeps_flushed_time_points_and_recovers(tmp_path: Path) -> None:
    output = tmp_path / "killed.h5"
    process = subprocess.Popen([*LIVESIM, "run", "--emulator", "--time-points", "10000",
                                "--size-px", "64", "--model", "passthrough", "--output",
                                str(output)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                if output.exists() and describe_run_file(output).complete_time_points >= 5:
                    break
            except (OSError, KeyError):
                continue
        else:
            pytest.fail("run did not record 5 time points")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    with h5py.File(output, "r", swmr=True) as h5:
        complete = np.flatnonzero(h5["timestamps/complete"][()])
        sequence = h5["timestamps/sequence"][()]
        for t in complete:
            assert (sequence[t] >= 0).all() and h5["raw"][t].any()
    result = CliRunner().invoke(build_app(), ["recover", str(output)])
    assert result.exit_code == 0 and "cleared SWMR flags" in result.output
    with h5py.File(output, "r") as h5:
        assert h5["timestamps/complete"][()].sum() >= len(complete)


@pytest.mark.parametrize("command", [["bench", "pipeline"], ["soak"]])
def test_scratch_folder_must_be_an_existing_folder(tmp_path: Path, command: list[str]) -> None:
    """`--folder` names a missing folder or a file: a usage error naming it, before any work
    (it used to fail deep inside tempfile with a traceback)."""
    runner = CliRunner()
    for folder, reason in ((tmp_path / ("missing-" + "x" * 80), "does not exist"),
                           (Path(__file__), "is a file")):
        result = runner.invoke(build_app(), [*command, "--folder", str(folder)],
                               env={"COLUMNS": "1000"})  # the message on one line
        assert result.exit_code == 2, result.output
        assert "--folder" in result.output and reason in result.output
        assert folder.name in result.output


@pytest.mark.parametrize("command", [["run", "--emulator"], ["bench", "pipeline"],
                                     ["bench", "workers"], ["soak"], ["emulate", "-o", "x.h5"]])
def test_size_px_outside_the_emulators_range_is_a_usage_error(command: list[str]) -> None:
    """--size-px is one shared option with the emulator's range (8-8192): a usage error naming
    it, before any work (below 8 it used to end in a pydantic traceback)."""
    runner = CliRunner()
    for size in ("3", "9000"):
        result = runner.invoke(build_app(), [*command, "--size-px", size],
                               env={"COLUMNS": "1000"})
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--size-px'" in result.output
