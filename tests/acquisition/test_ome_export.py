"""`livesim export`: OME-TIFF and OME-Zarr from a run file written by the real recorder."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import ome_types
import pytest
import tifffile
import yaozarrs
from typer.testing import CliRunner

from acquisition import run_file
from acquisition.cli import build_app
from acquisition.ome_export import ExportError, export_run, plan_export
from acquisition.recorder import RunLayout, RunRecorder

from .conftest import expected_frame

LAYOUT = RunLayout(n_channels=2, n_orientations=3, n_phases=3, frame_shape=(64, 64),
                   sr_shape=(128, 128), pixel_size_nm=62.6, sr_models=("wiener",), imc=True,
                   channel_names=("488nm", "560nm"))
INTERVAL_S = 0.25
T = 3


def sr_image(t: int, c: int) -> np.ndarray:
    rng = np.random.default_rng([t, c, 99])
    return rng.random((128, 128), dtype=np.float32)


@pytest.fixture(scope="module")
def run_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "run.h5"
    meta = {"protocol": {"interval_s": INTERVAL_S, "timepoints": T,
                         "channels": [{"laser_nm": 488}, {"laser_nm": 560}]},
            "optics": {"emission_nm": 525.0, "pixel_size_nm": 62.6}}
    recorder = RunRecorder(path, LAYOUT, meta, fsync=False)
    for t in range(T):
        for c in range(2):
            frames = np.stack([expected_frame(t, c, p, (64, 64)) for p in range(9)])
            stamps = 1000.0 + INTERVAL_S * t + 0.05 * c + 0.001 * np.arange(9)
            recorder.write_raw_set(t, c, frames, stamps, np.arange(9) + 18 * t + 9 * c)
            recorder.write_sr(t, c, "wiener", sr_image(t, c), photon_count=50.0,
                              latency_ms=1.0, inference_ms=1.0)
        recorder.write_imc(t, np.full((3, 128, 128), t + 1.0, np.float32))
        recorder.end_time_point(t)
    recorder.close()
    return path


def ome_pixels(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        return tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]


def test_ome_tiff_of_sr_states_sr_pixel_time_and_channels(run_path: Path, tmp_path: Path
                                                          ) -> None:
    out = tmp_path / "sr.ome.tif"
    result = CliRunner().invoke(build_app(), ["export", str(run_path), "--format", "ome-tiff",
                                              "--dataset", "sr", "--output", str(out)])
    assert result.exit_code == 0, result.output
    pixels = ome_pixels(out)
    assert pixels["PhysicalSizeX"] == pytest.approx(0.0313)  # 62.6 nm raw / 2
    assert pixels["PhysicalSizeY"] == pytest.approx(0.0313)
    assert pixels["PhysicalSizeXUnit"] == "µm"
    assert (pixels["SizeT"], pixels["SizeC"], pixels["SizeZ"]) == (T, 2, 1)
    assert pixels["TimeIncrement"] == pytest.approx(INTERVAL_S)
    channels = pixels["Channel"]
    assert [c["Name"] for c in channels] == ["488nm", "560nm"]
    assert [c["ExcitationWavelength"] for c in channels] == [488.0, 560.0]
    assert channels[0]["EmissionWavelength"] == 525.0
    planes = pixels["Plane"]  # T, C order; each plane's first frame against the run's first
    assert [p["DeltaT"] for p in planes] == pytest.approx(
        [INTERVAL_S * t + 0.05 * c for t in range(T) for c in range(2)], abs=1e-6)
    ome = ome_types.from_tiff(out)  # parses against the OME schema
    assert ome.images[0].pixels.physical_size_x == pytest.approx(0.0313)
    assert ome.images[0].pixels.physical_size_x_unit.value == "µm"
    stored = tifffile.imread(out)
    with h5py.File(run_path, "r") as h5:
        np.testing.assert_array_equal(stored, h5["sr/wiener"][()])
    np.testing.assert_allclose(stored[1, 1] * run_file.SR_SCALE, sr_image(1, 1), atol=1e-5)


def test_ome_tiff_of_raw_folds_patterns_into_channels(run_path: Path, tmp_path: Path) -> None:
    out = export_run(run_path, tmp_path / "raw.ome.tif", "ome-tiff", "raw")
    pixels = ome_pixels(out)
    assert pixels["PhysicalSizeX"] == pytest.approx(0.0626)
    assert pixels["SizeC"] == 18 and pixels["SizeT"] == T
    names = [c["Name"] for c in pixels["Channel"]]
    assert names[:4] == ["488nm o0 p0", "488nm o0 p1", "488nm o0 p2", "488nm o1 p0"]
    assert names[9] == "560nm o0 p0"
    stored = tifffile.imread(out)  # (T, C x P, Y, X)
    np.testing.assert_array_equal(stored[2, 9 + 4], expected_frame(2, 1, 4, (64, 64)))


def test_ome_zarr_pyramid_carries_the_same_scale(run_path: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    out = export_run(run_path, tmp_path / "sr.ome.zarr", "ome-zarr", "sr",
                     progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (T * 2, T * 2) and len(seen) == T * 2
    yaozarrs.validate_zarr_store(out)  # NGFF 0.5 metadata and arrays agree
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
    multiscale = attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["t", "c", "z", "y", "x"]
    assert multiscale["axes"][0]["unit"] == "second"
    assert multiscale["axes"][-1]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales[0] == pytest.approx([INTERVAL_S, 1.0, 1.0, 0.0313, 0.0313])
    assert [s[-1] for s in scales] == pytest.approx([0.0313, 0.0626, 0.1252])  # 128, 64, 32 px
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["488nm", "560nm"]
    import tensorstore as ts

    full = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "0")}}
                   ).result().read().result()
    half = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "1")}}
                   ).result().read().result()
    assert full.shape == (T, 2, 1, 128, 128) and half.shape == (T, 2, 1, 64, 64)
    with h5py.File(run_path, "r") as h5:
        stored = h5["sr/wiener"][2, 1]
    np.testing.assert_array_equal(full[2, 1, 0], stored)
    expected_half = stored.astype(np.float64).reshape(64, 2, 64, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(half[2, 1, 0], expected_half, atol=1.0)  # uint16 rounding


def test_imc_export_names_structures(run_path: Path, tmp_path: Path) -> None:
    plan = plan_export(run_path, "imc")
    assert plan.channel_names == ("microtubules", "er", "lysosomes")
    assert plan.pixel_size_um == pytest.approx(0.0313)
    out = export_run(run_path, tmp_path / "imc.ome.tif", "ome-tiff", "imc")
    stored = tifffile.imread(out)
    assert stored.shape == (T, 3, 128, 128) and (stored[2] == 3.0).all()


def test_export_refuses_bad_requests_with_the_file_named(run_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--dataset 'gt'"):
        plan_export(run_path, "gt")
    with pytest.raises(ExportError, match="no SR dataset 'dfcan'"):
        plan_export(run_path, "sr", sr_model="dfcan")
    with pytest.raises(ExportError, match=r"missing\.h5: no such run file"):
        plan_export(tmp_path / "missing.h5")
    existing = tmp_path / "taken.ome.tif"
    existing.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="already exists"):
        export_run(run_path, existing, "ome-tiff")
    assert existing.read_bytes() == b"keep me"
    result = CliRunner().invoke(build_app(), ["export", str(run_path), "--format", "png",
                                              "--output", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "--format 'png'" in result.output


def test_image_datasets_carry_dimension_labels_and_scales(run_path: Path) -> None:
    with h5py.File(run_path, "r") as h5:
        raw, sr, imc = h5["raw"], h5["sr/wiener"], h5["imc"]
        assert [d.label for d in raw.dims] == ["t", "c", "p", "y", "x"]
        assert [d.label for d in sr.dims] == ["t", "c", "y", "x"]
        assert [d.label for d in imc.dims] == ["t", "c", "y", "x"]
        assert len(raw.attrs["element_size_um"]) == raw.ndim
        np.testing.assert_allclose(sr.attrs["element_size_um"], [1, 1, 0.0313, 0.0313],
                                   rtol=1e-6)
        x_um = sr.dims[3][0][()]
        assert x_um.shape == (128,)
        np.testing.assert_allclose(np.diff(x_um), 0.0313)
        np.testing.assert_allclose(raw.dims[4][0][:2], [0.0313, 0.0939])  # pixel centres
