"""The napari plugin: npe2 manifest and entry point, reader without Qt, headless open in napari.

npe2 and napari come with the optional ``napari`` extra (installed by ``make test``); without
them these tests skip.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from acquisition.recorder import RunLayout, RunRecorder
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.napari_sample import SAMPLE_SIZE_PX

from .conftest import expected_frame

MANIFEST = Path(__file__).resolve().parents[2] / "acquisition" / "napari.yaml"
LAYOUT = RunLayout(n_channels=2, n_orientations=3, n_phases=3, frame_shape=(32, 32),
                   sr_shape=(64, 64), pixel_size_nm=62.6, sr_models=("wiener",), imc=True,
                   channel_names=("488nm", "640nm"))


@pytest.fixture(scope="module")
def run_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("napari") / "run.h5"
    meta = {"protocol": {"interval_s": 2.0, "timepoints": 2,
                         "channels": [{"laser_nm": 488}, {"laser_nm": 640}]}}
    recorder = RunRecorder(path, LAYOUT, meta, fsync=False)
    for t in range(2):
        for c in range(2):
            frames = np.stack([expected_frame(t, c, p, (32, 32)) for p in range(9)])
            recorder.write_raw_set(t, c, frames, 10.0 + 2.0 * t + np.arange(9) * 1e-3,
                                   np.arange(9) + 18 * t + 9 * c)
            recorder.write_sr(t, c, "wiener", np.full((64, 64), 0.25 * (t + 1), np.float32),
                              photon_count=1.0, latency_ms=1.0, inference_ms=1.0)
        recorder.write_imc(t, np.full((3, 64, 64), 1.0, np.float32))
        recorder.end_time_point(t)
    recorder.close()
    return path


def test_manifest_is_valid_and_offers_the_reader_for_run_files() -> None:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "livesim"
    manager = npe2.PluginManager()
    manager.register(manifest)
    readers = [r.command for r in manager.iter_compatible_readers(["run.h5"])]
    assert "livesim.get_reader" in readers
    assert not list(manager.iter_compatible_readers(["image.png"]))
    assert [s.key for s in manifest.contributions.sample_data] == ["emulated_sim_set"]


def test_entry_point_lists_livesim_through_npe2() -> None:
    npe2 = pytest.importorskip("npe2")
    manager = npe2.PluginManager()
    manager.discover(include_npe1=False)
    manifest = manager.get_manifest("livesim")  # KeyError: entry point napari.manifest missing
    assert [r.command for r in manifest.contributions.readers] == ["livesim.get_reader"]


def test_reader_gives_scaled_coloured_layers_without_qt(run_path: Path) -> None:
    pytest.importorskip("dask")
    script = textwrap.dedent(f"""
        import sys
        from acquisition.napari_reader import get_reader
        layers = get_reader({str(run_path)!r})({str(run_path)!r})
        qt = sorted(m for m in sys.modules if m.split('.')[0] in
                    ('PySide6', 'PyQt5', 'PyQt6', 'qtpy', 'napari', 'vispy'))
        assert not qt, qt
        for data, kwargs, kind in layers:
            print(kind, data.shape, kwargs['name'], kwargs['colormap'], kwargs['scale'],
                  kwargs['axis_labels'])
        print(float(layers[-1][0][1, 1].max().compute()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("image (2, 2, 32, 32) ['wf 488nm', 'wf 640nm'] ['green', 'red']"
                               " (2.0, 0.0626, 0.0626) ('t', 'y', 'x')"), lines
    assert "(2, 2, 9, 32, 32)" in lines[1] and "('t', 'pattern', 'y', 'x')" in lines[1]
    assert "['imc microtubules', 'imc er', 'imc lysosomes']" in lines[2]
    assert "['sr wiener 488nm', 'sr wiener 640nm']" in lines[3] and "0.0313" in lines[3]
    assert float(lines[4]) == pytest.approx(0.5, abs=1e-4)  # stored uint16 back to [0, 1]


def test_reader_declines_other_files(tmp_path: Path) -> None:
    import h5py

    from acquisition.napari_reader import get_reader

    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as h5:
        h5["raw"] = np.zeros((2, 2))
    (tmp_path / "x.tif").write_bytes(b"II*\x00")
    assert get_reader(str(foreign)) is None  # no layout_version: not a livesim run file
    assert get_reader(str(tmp_path / "x.tif")) is None
    assert get_reader(str(tmp_path / "absent.h5")) is None


def test_napari_opens_a_run_file_and_the_sample_headless(run_path: Path) -> None:
    pytest.importorskip("napari")
    import npe2
    from napari.components import ViewerModel

    manager = npe2.PluginManager.instance()
    if "livesim" not in manager._manifests:  # entry point not installed: register the file
        manager.register(npe2.PluginManifest.from_file(MANIFEST))
    viewer = ViewerModel()
    viewer.open(str(run_path), plugin="livesim")
    names = [layer.name for layer in viewer.layers]
    assert names[:2] == ["wf 488nm", "wf 640nm"] and "sr wiener 640nm" in names
    sr = viewer.layers["sr wiener 488nm"]
    np.testing.assert_allclose(sr.scale, [2.0, 0.0313, 0.0313])
    assert sr.colormap.name == "green" and viewer.layers["wf 640nm"].colormap.name == "red"
    assert np.asarray(sr.data[1]).mean() == pytest.approx(0.5, abs=1e-4)
    raw = viewer.layers["raw 488nm"]
    assert raw.data.shape == (2, 9, 32, 32)
    np.testing.assert_array_equal(np.asarray(raw.data[1, 4]), expected_frame(1, 0, 4, (32, 32)))
    viewer.open_sample("livesim", "emulated_sim_set")
    truth = viewer.layers["ground truth SR"]
    config = EmulatorConfig()
    sr_pixel_um = config.optics.pixel_size_nm * config.sensor.binning / 2000.0  # camera pixel / 2
    np.testing.assert_allclose(truth.scale, [sr_pixel_um, sr_pixel_um])
    assert truth.data.shape == (2 * SAMPLE_SIZE_PX, 2 * SAMPLE_SIZE_PX)
    assert viewer.layers["raw 488 nm"].data.shape == (9, SAMPLE_SIZE_PX, SAMPLE_SIZE_PX)
