"""Raw stack reading (.mrc, .tif, .npy, .h5 run files) and image writing."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from inference.stack_io import (
    StackFormatError,
    load_raw_stack,
    parse_acquisition_label,
    save_image,
    tiff_pixel_size_nm,
)


def _frames(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(90, 4000, size=shape, dtype=np.uint16)


def test_shared_mrc_stack_reads_frames_and_optics(dlsr_assets: Path) -> None:
    stack = load_raw_stack(dlsr_assets / "rDL-SIM_Microtubules_MT_raw9.mrc")
    assert stack.frames.shape == (1, 9, 256, 256)
    assert stack.frames.dtype == np.uint16
    assert stack.pixel_size_nm == pytest.approx(62.6, abs=1e-3)
    # the label's 1.35 is the illumination NA (180.7 nm pattern), not the detection NA
    assert stack.illumination_na == pytest.approx(1.35)
    assert stack.na is None
    assert stack.excitation_nm == pytest.approx(488.0)
    assert stack.exposure_ms == pytest.approx(2.0)
    # frames differ from each other: the stack is 9 distinct patterns, not one repeated frame
    assert len({int(f.sum()) for f in stack.frames[0]}) == 9


def test_mrc_written_with_mrcfile_round_trips(tmp_path: Path) -> None:
    import mrcfile

    data = _frames((18, 8, 10))
    path = tmp_path / "two_sets.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 626.0  # angstroms, the MRC standard
    stack = load_raw_stack(path)
    assert stack.frames.shape == (2, 9, 8, 10)
    np.testing.assert_array_equal(stack.frames[1, 0], data[9])
    assert stack.pixel_size_nm == pytest.approx(62.6)


def test_label_parsing() -> None:
    assert parse_acquisition_label("c18-488-0.3W-1.35-2ms") == {
        "excitation_nm": 488.0,
        "na": 1.35,
        "exposure_ms": 2.0,
    }
    assert parse_acquisition_label("nothing here") == {}


def test_npy_shapes(tmp_path: Path) -> None:
    for shape, expected in [
        ((9, 6, 5), (1, 9, 6, 5)),
        ((3, 9, 6, 5), (3, 9, 6, 5)),
        ((6, 5), (1, 1, 6, 5)),
        ((27, 6, 5), (3, 9, 6, 5)),
    ]:
        path = tmp_path / f"s{len(shape)}_{shape[0]}.npy"
        data = _frames(shape)
        np.save(path, data)
        stack = load_raw_stack(path)
        assert stack.frames.shape == expected
        np.testing.assert_array_equal(stack.frames.reshape(-1), data.reshape(-1))
        assert stack.pixel_size_nm is None


def test_tiff_with_imagej_pixel_size(tmp_path: Path) -> None:
    data = _frames((9, 7, 8))
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.0626, 1 / 0.0626),
                     metadata={"unit": "micron"})
    stack = load_raw_stack(path)
    assert stack.frames.shape == (1, 9, 7, 8)
    np.testing.assert_array_equal(stack.frames[0], data)
    assert stack.pixel_size_nm == pytest.approx(62.6, rel=1e-4)


def test_run_file_takes_channel_zero_and_optics(tmp_path: Path) -> None:
    data = _frames((2, 2, 9, 6, 5))
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as h5:
        raw = h5.create_dataset("raw", data=data)
        raw.attrs["pixel_size_nm"] = 62.6
        h5.attrs["optics"] = json.dumps({"na": 1.3, "excitation_nm": 561, "emission_nm": 610})
    stack = load_raw_stack(path)
    assert stack.frames.shape == (2, 9, 6, 5)
    np.testing.assert_array_equal(stack.frames, data[:, 0])
    assert (stack.pixel_size_nm, stack.na, stack.excitation_nm, stack.emission_nm) == (
        62.6, 1.3, 561.0, 610.0,
    )
    np.testing.assert_array_equal(load_raw_stack(path, channel=1).frames, data[:, 1])
    with pytest.raises(StackFormatError, match="channel 2"):
        load_raw_stack(path, channel=2)


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    unknown = tmp_path / "frames.png"
    unknown.write_bytes(b"x")
    with pytest.raises(StackFormatError, match=r"frames\.png.*unknown stack format"):
        load_raw_stack(unknown)
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        load_raw_stack(tmp_path / "missing.npy")
    odd = tmp_path / "odd.npy"
    np.save(odd, _frames((10, 4, 4)))
    with pytest.raises(StackFormatError, match=r"odd\.npy.*10 frames"):
        load_raw_stack(odd)
    five_d = tmp_path / "five.npy"
    np.save(five_d, _frames((1, 1, 1, 4, 4)))
    with pytest.raises(StackFormatError, match=r"five\.npy.*shape"):
        load_raw_stack(five_d)
    no_raw = tmp_path / "empty.h5"
    with h5py.File(no_raw, "w"):
        pass
    with pytest.raises(StackFormatError, match=r"empty\.h5.*/raw"):
        load_raw_stack(no_raw)
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(b"not an mrc file at all")
    with pytest.raises(StackFormatError, match=r"garbage\.mrc"):
        load_raw_stack(garbage)


def test_save_image_round_trip(tmp_path: Path) -> None:
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    for name in ("sr.npy", "sr.tif", "sub/sr.tiff"):
        out = save_image(tmp_path / name, image)
        back = np.load(out) if out.suffix == ".npy" else tifffile.imread(out)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, image)
    with pytest.raises(StackFormatError, match=r"sr\.jpg"):
        save_image(tmp_path / "sr.jpg", image)


def test_saved_tiffs_state_pixel_size_and_read_back(tmp_path: Path) -> None:
    stack = np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    out = save_image(tmp_path / "sr.tif", stack, pixel_size_nm=31.3, time_increment_s=0.5)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX"
        assert tif.imagej_metadata["finterval"] == 0.5
    assert tiff_pixel_size_nm(out) == pytest.approx(31.3, rel=1e-5)
    assert load_raw_stack(out, n_patterns=1).pixel_size_nm == pytest.approx(31.3, rel=1e-5)
    # a dtype ImageJ cannot hold goes out as OME-TIFF with PhysicalSizeX
    wide = save_image(tmp_path / "wide.tif", stack.astype(np.float64), pixel_size_nm=62.6)
    with tifffile.TiffFile(wide) as tif:
        assert tif.is_ome and not tif.is_imagej
        assert 'PhysicalSizeX="0.0626"' in tif.ome_metadata
    assert tiff_pixel_size_nm(wide) == pytest.approx(62.6)
    assert tiff_pixel_size_nm(save_image(tmp_path / "bare.tif", stack)) is None
    with pytest.raises(StackFormatError, match=r"pixel_size_nm=-1"):
        save_image(tmp_path / "bad.tif", stack, pixel_size_nm=-1.0)
