"""Bad protocol, rig config, calibration and model files: specific errors before anything moves."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from acquisition.protocol import Protocol, ProtocolError
from acquisition.session import RunSession, SessionError, SessionOptions
from calibration.camera_calibration import CalibrationFileError, CameraCalibration
from hardware.errors import AcquisitionTimeout
from hardware.frames import FrameTag, TaggedFrame
from inference.model_file import ModelFileError, load_model, save_model
from inference.models import Dfcan, DfcanOptions

LIVESIM = [sys.executable, "-m", "acquisition.cli"]
TINY: dict[str, Any] = {"width": 8, "groups": 1, "blocks": 1, "reduction": 4,
                        "spectrum_size": 16}


class CountingSource:
    """A frame source that records whether anything asked the rig for a frame."""

    def __init__(self) -> None:
        self.requests = 0

    def stream_time_point(self, plan: Any, time_point: int, timeout_s: float) -> Any:
        self.requests += 1
        image = np.full((16, 16), 100, np.uint16)
        for p in range(9):
            yield TaggedFrame(image, FrameTag(time_point=time_point, channel=0, laser_nm=488,
                                              orientation=p // 3, phase=p % 3, pattern_index=p,
                                              sequence=9 * time_point + p, timestamp_s=0.0,
                                              exposure_ms=10.0))

    def acquire_time_point(self, plan: Any, time_point: int, timeout_s: float) -> list[Any]:
        raise AcquisitionTimeout("not used")


class RunsCode:
    """A pickled object whose unpickling creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def tiny_model(path: Path) -> Path:
    torch.manual_seed(0)
    save_model(path, Dfcan(DfcanOptions(**TINY)), architecture="dfcan", mode="sim")
    return path


def rewrite_payload(path: Path, change: Any) -> None:
    """Load a model file's plain payload, let ``change`` edit it, save it back."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_pickle_inside_a_model_file_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = tiny_model(tmp_path / "evil.pt")
    rewrite_payload(evil, lambda p: p["info"].update(source=RunsCode(marker)))
    with pytest.raises(ModelFileError, match="weights_only=True"):
        load_model(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # what an unsafe loader would have done
    assert marker.exists()


def test_session_with_a_pickled_model_stops_before_any_frame(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = tiny_model(tmp_path / "evil.pt")
    rewrite_payload(evil, lambda p: p["info"].update(source=RunsCode(marker)))
    protocol = Protocol.parse_checked({"channels": [{"laser_nm": 488,
                                                     "reconstruction": str(evil)}],
                                       "timepoints": 3, "output": str(tmp_path / "run.h5")})
    source = CountingSource()
    options = SessionOptions(fsync=False, hello_timeout_s=120.0, display=False)
    with pytest.raises(SessionError, match="weights_only"):
        RunSession(source, None, protocol, (16, 16), 62.6, options=options).run()
    assert source.requests == 0 and not protocol.output.exists() and not marker.exists()


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.pt")
    rewrite_payload(path, lambda p: p["info"]["options"].update(width=16))
    with pytest.raises(ModelFileError, match="weights do not fit dfcan"):
        load_model(path)


def test_tampered_weights_fail_their_checksum(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.pt")

    def tamper(payload: dict[str, Any]) -> None:
        name = next(iter(payload["state_dict"]))
        payload["state_dict"][name] = payload["state_dict"][name] + 1e-3

    rewrite_payload(path, tamper)
    with pytest.raises(ModelFileError, match=r"SHA-256 .* does not match"):
        load_model(path)


def bad_calibration(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.h5"
    if kind == "garbage":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    elif kind == "empty_hdf5":
        with h5py.File(path, "w") as h5:
            h5.attrs["note"] = "no maps"
    elif kind == "truncated":
        with h5py.File(path, "w") as h5:
            h5["offset_adu"] = np.zeros((64, 64), np.float32)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "wrong_type":
        with h5py.File(path, "w") as h5:
            for name in ("offset_adu", "gain_adu_per_e", "read_noise_e", "defect_mask"):
                h5[name] = "not a map"
    return path


@pytest.mark.parametrize("kind", ["garbage", "empty_hdf5", "truncated", "wrong_type"])
def test_corrupt_calibration_is_a_specific_error_before_any_frame(tmp_path: Path, kind: str
                                                                  ) -> None:
    path = bad_calibration(kind, tmp_path)
    with pytest.raises(CalibrationFileError, match=re.escape(str(path))):
        CameraCalibration.load(path)
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "none"}], "timepoints": 3,
        "calibration": str(path), "output": str(tmp_path / "run.h5")})
    source = CountingSource()
    with pytest.raises(SessionError, match=re.escape(str(path))):
        RunSession(source, None, protocol, (16, 16), 62.6,
                   options=SessionOptions(fsync=False, display=False)).run()
    assert source.requests == 0 and not protocol.output.exists()


GOOD = 'output = "run.h5"\n[[channels]]\nlaser_nm = 488\nreconstruction = "none"\n'


@pytest.mark.parametrize(("text", "field", "value"), [
    ('output = "../../escape.txt"', "output", "escape.txt"),  # not a run file
    ('output = "a_file/run.h5"', "output", "a_file"),  # its folder cannot exist
    ('output = "sub"\n', "output", "sub"),  # no .h5 suffix
    ('rig = "/no/such/rig.cfg"', "rig", "/no/such/rig.cfg"),
    ('calibration = "/no/such/cal.h5"', "calibration", "/no/such/cal.h5"),
    ('imc_model = "/tmp/../no/such.pt"', "imc_model", "/no/such.pt"),
    ('timepoints = "many"', "timepoints", "many"),
    ('interval_s = [1, 2]', "interval_s", "[1, 2]"),
    ('exposure = 10', "exposure", "10"),  # unknown field (typo), not ignored
])
def test_protocol_fields_and_paths_are_checked_naming_field_and_value(
        tmp_path: Path, text: str, field: str, value: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a_file").write_text("a file, not a folder")
    head = "" if text.startswith("output") else 'output = "run.h5"\n'
    body = GOOD.replace('output = "run.h5"\n', "")
    path = tmp_path / "p.toml"
    path.write_text(f"{head}{text}\n{body}")
    with pytest.raises(ProtocolError) as info:
        Protocol.from_toml(path)
    message = str(info.value)
    assert str(path) in message and f"'{field}'" in message and value in message


def test_missing_channels_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('output = "run.h5"\n')
    with pytest.raises(ProtocolError, match=r"'channels'.*[Ff]ield required"):
        Protocol.from_toml(path)


def test_broken_rig_config_exits_2_before_the_rig_moves(tmp_path: Path) -> None:
    cfg = tmp_path / "rig.cfg"
    cfg.write_text("# a Micro-Manager config\nDevice,Camera,NoSuchAdapter\nProperty,Core,,\n")
    protocol = tmp_path / "p.toml"
    protocol.write_text(f'rig = "{cfg}"\n' + GOOD)
    done = subprocess.run([*LIVESIM, "run", str(protocol)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(cfg) in done.stderr and "line" in done.stderr
    assert not (tmp_path / "run.h5").exists()
