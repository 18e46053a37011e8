"""`livesim recover` and the commands that write files: no repair under a live writer, a right
SR count, and no silent overwrite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition.recorder import RunLayout, RunRecorder
from acquisition.recovery import RecoveryError, recover_run_file

REPO = str(Path(__file__).resolve().parents[2])
LAYOUT = RunLayout(n_channels=2, n_orientations=3, n_phases=3, frame_shape=(8, 8),
                   sr_shape=(16, 16), pixel_size_nm=62.6, sr_models=("m",))


def _record(recorder: RunRecorder, time_points: int, sr_at: set[tuple[int, int]]) -> None:
    rng = np.random.default_rng(0)
    for t in range(time_points):
        for c in range(2):
            recorder.write_raw_set(t, c, rng.integers(0, 4000, (9, 8, 8), dtype=np.uint16),
                                   np.arange(9, dtype=float), np.arange(9) + 9 * t)
            if (t, c) in sr_at:
                recorder.write_sr(t, c, "m", rng.random((16, 16), dtype=np.float32), 1.0, 2.0,
                                  3.0)
        recorder.end_time_point(t)


def test_recover_refuses_a_file_that_is_still_being_recorded(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {"run_id": "x"}, fsync=False)
    try:
        _record(recorder, 2, set())
        deadline = time.monotonic() + 30  # the writer thread has flushed both time points
        while recorder.stats.time_points < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = path.read_bytes()[:64]
        with pytest.raises(RecoveryError, match="is being recorded right now"):
            recover_run_file(path)
        assert path.read_bytes()[:64] == before  # the SWMR flags were not touched
    finally:
        recorder.close()
    report = recover_run_file(path)  # once the writer is gone, recover works
    assert report.time_points == 2


def test_recover_counts_the_sr_frames_that_were_written(tmp_path: Path) -> None:
    """uint16 SR has no NaN: isfinite() counted every row (3 time points x 2 channels = 6)."""
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {"run_id": "x", "models": {
        "0": {"dataset": "sr/m"}, "1": {"dataset": "sr/m"}}}, fsync=False)
    _record(recorder, 3, {(0, 0), (2, 0), (2, 1)})
    recorder.close()
    report = recover_run_file(path)
    assert report.sr_frames == {"m": 3}
    assert "SR frames (m): 3" in report.lines()


# --- commands that write: no silent overwrite, never onto the input, clear errors -------------

def _livesim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acquisition.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO}, preexec_fn=_limit_memory)


def _limit_memory() -> None:
    """8 GiB of address space: the ROI memory check then refuses the same plans on any host."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 * 1024**3, resource.RLIM_INFINITY))


@pytest.fixture(scope="module")
def raw_npy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sim_emulator.microscope import EmulatorConfig, Microscope

    path = tmp_path_factory.mktemp("stack") / "raw.npy"
    raw = Microscope(EmulatorConfig(size_px=64, photon_count_e=300.0, seed=1)).render_set(0.0)
    np.save(path, np.asarray(raw))
    return path


@pytest.mark.parametrize("command", ["predict", "reconstruct"])
def test_predict_and_reconstruct_refuse_to_overwrite_or_write_onto_their_input(
        command: str, raw_npy: Path, tmp_path: Path) -> None:
    model = ["-m", "dfcan-sim"] if command == "predict" else []
    onto_input = _livesim(command, str(raw_npy), *model, "-o", str(raw_npy), "--overwrite",
                          cwd=tmp_path)
    assert onto_input.returncode == 2 and "is this command's input" in onto_input.stderr
    assert np.load(raw_npy).dtype == np.uint16  # the input is untouched
    existing = tmp_path / "out.npy"
    existing.write_bytes(b"keep me")
    refused = _livesim(command, str(raw_npy), *model, "-o", str(existing), cwd=tmp_path)
    assert refused.returncode == 2 and "exists; add --overwrite" in refused.stderr
    assert existing.read_bytes() == b"keep me"
    if command == "predict":  # (reconstruct's optics checks are tested elsewhere)
        replaced = _livesim(command, str(raw_npy), *model, "-o", str(existing), "--overwrite",
                            cwd=tmp_path)
        assert replaced.returncode == 0, replaced.stderr[-2000:]
        assert np.load(existing).shape == (128, 128)


def test_demo_refuses_to_overwrite_an_existing_run_file(tmp_path: Path) -> None:
    existing = tmp_path / "demo_run.h5"
    existing.write_bytes(b"a recording")
    done = _livesim("demo", "-t", "1", "--model", "none", cwd=tmp_path)
    assert done.returncode == 2 and "exists; add --overwrite" in done.stderr
    assert existing.read_bytes() == b"a recording"


# Every command with a --json report, with the least arguments that reach the check.
JSON_REPORTS = [
    ["bench", "all", "--only", "emulator"],
    ["bench", "autopilot"],
    ["bench", "gpu", "--dry-run"],
    ["bench", "workers"],
    ["bench", "inference"],
    ["bench", "imcsr"],
    ["soak"],
    ["imc-assess", "imcsr"],
    ["imc-cross-talk", "imcsr", "imcsr"],
    ["stack-statistics", "missing.mrc", "--na", "1.4", "--emission-nm", "525"],
]


@pytest.mark.parametrize("command", JSON_REPORTS, ids=lambda c: " ".join(c[:2]))
def test_json_reports_refuse_to_overwrite_an_existing_file(tmp_path: Path,
                                                          command: list[str]) -> None:
    from typer.testing import CliRunner

    from acquisition.cli import build_app

    existing = tmp_path / "report.json"
    existing.write_text("figures of an earlier run")
    result = CliRunner().invoke(build_app(), [*command, "--json", str(existing)])
    assert result.exit_code == 2, result.output
    assert "exists; add --overwrite" in result.output
    assert existing.read_text() == "figures of an earlier run"


def test_train_refuses_to_overwrite_a_model_or_checkpoint_unless_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from acquisition.cli import build_app

    model, checkpoint = tmp_path / "m.pt", tmp_path / "m.ckpt"
    args = ["train", "--tiny", "--steps", "1", "--data", "emulator:nope", "-o", str(model)]
    checkpoint.write_bytes(b"an earlier training")
    refused = CliRunner().invoke(build_app(), args)
    assert refused.exit_code == 2 and f"{checkpoint}: exists; add --overwrite" in refused.output
    model.write_bytes(b"a trained model")
    refused = CliRunner().invoke(build_app(), args)
    assert refused.exit_code == 2 and f"{model}: exists; add --overwrite" in refused.output
    assert model.read_bytes() == b"a trained model"
    assert checkpoint.read_bytes() == b"an earlier training"
    # with --overwrite the check passes and the next error is the bad data source
    allowed = CliRunner().invoke(build_app(), [*args, "--overwrite"])
    assert allowed.exit_code == 2 and "nope" in allowed.output and "exists" not in allowed.output


@pytest.mark.parametrize(("make", "args", "message"), [
    ("complex", ["predict", "IN", "-m", "dfcan-sim", "-o", "out.npy"], "holds complex values"),
    ("bool", ["predict", "IN", "-m", "dfcan-sim", "-o", "out.npy"], "holds bool values"),
    ("str", ["reconstruct", "IN", "--na", "1.35", "--pixel-size-nm", "62.6", "-o", "out.npy"],
     "holds text values"),
    ("uint16", ["predict", "IN", "-m", "dfcan-sim", "-o", "out.png"],
     "cannot write format '.png'"),
    ("uint16", ["predict", "IN", "-m", "dfcan-sim", "-o", "missing/out.npy"],
     "folder missing does not exist"),
    ("toml", ["run", "IN", "-o", "out.h5"], "not UTF-8 text"),
    ("group", ["predict", "IN", "-m", "dfcan-sim", "-o", "out.npy"], "/raw is a group"),
    ("endpoint", ["infer", "--raw-endpoint", "tcp://192.0.2.1:5555", "--results-endpoint",
                  "tcp://192.0.2.1:5556"], "requires CurveZMQ keys"),
    ("uint16", ["run", "--emulator", "-t", "1", "--model", "none", "--size-px", "8192", "-o",
                "big.h5"], "choose a smaller ROI"),
])
def test_bad_inputs_give_a_clear_error_not_a_traceback(make: str, args: list[str], message: str,
                                                       tmp_path: Path) -> None:
    source = tmp_path / "in.npy"
    if make == "complex":  # its imaginary part was dropped silently
        np.save(source, np.ones((9, 8, 8), np.complex64) * (1 + 2j))
    elif make == "bool":
        np.save(source, np.ones((9, 8, 8), bool))
    elif make == "str":
        np.save(source, np.full((9, 8, 8), "a"))
    elif make == "uint16":
        np.save(source, np.ones((9, 8, 8), np.uint16))
    elif make == "toml":
        source = tmp_path / "protocol.toml"
        source.write_bytes(b"timepoints = 3\n\xff\xfe = 1\n")
    elif make == "group":
        source = tmp_path / "in.h5"
        with h5py.File(source, "w") as h5:
            h5.create_group("raw")
    done = _livesim(*[str(source) if a == "IN" else a for a in args], cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "big.h5").exists()


def test_truncated_run_file_is_refused_not_read_as_zeros(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    recorder = RunRecorder(path, LAYOUT, {"run_id": "x"}, fsync=False)
    _record(recorder, 6, set())
    recorder.close()
    whole = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole[: len(whole) * 2 // 3])  # a copy interrupted part-way
    for command in (["predict", str(cut), "-m", "dfcan-sim", "-o", "a.npy"],
                    ["reconstruct", str(cut), "--na", "1.35", "--pixel-size-nm", "62.6", "-o",
                     "b.npy"]):
        done = _livesim(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "truncated HDF5 file" in done.stderr and "bytes missing" in done.stderr
    from acquisition.run_file import hdf5_truncation

    assert hdf5_truncation(path) == 0 and hdf5_truncation(cut) == len(whole) - len(whole) * 2 // 3
