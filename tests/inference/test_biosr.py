"""A BioSR-layout folder (built here, in the layout docs/training.md documents) loads with the
right shapes, pairing and order, and feeds the trainer."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from inference.training import BiosrSource, DataSourceError, PatchSampler, open_source, scan_biosr


def write_mrc(path: Path, data: np.ndarray) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)


def build_biosr(root: Path, cells: int = 3, levels: tuple[int, ...] = (1, 3, 2)) -> None:
    """Cell_XXX/RawSIMData_level_NN.mrc (9, 16, 16) uint16 whose values encode (cell, level),
    and Cell_XXX/SIM_gt.mrc (32, 32) float32 encoding the cell."""
    for cell in range(1, cells + 1):
        folder = root / f"Cell_{cell:03d}"
        folder.mkdir(parents=True)
        for level in levels:
            raw = np.full((9, 16, 16), 1000 * cell + 10 * level, np.uint16)
            raw[:, 0, 0] += np.arange(9, dtype=np.uint16)  # frame order marker
            write_mrc(folder / f"RawSIMData_level_{level:02d}.mrc", raw)
        gt = np.full((32, 32), float(cell), np.float32)
        gt[0, 0] = 0.0
        write_mrc(folder / "SIM_gt.mrc", gt)
        write_mrc(folder / "RawSIMData_gt.mrc", np.zeros((9, 16, 16), np.uint16))  # ignored


def test_biosr_folder_pairs_raw_levels_with_their_cells_ground_truth(tmp_path: Path) -> None:
    build_biosr(tmp_path)
    (tmp_path / "notes.txt").write_text("not a cell")
    items = scan_biosr(tmp_path)
    assert [(i.cell, i.level) for i in items] == [(c, lv) for c in (1, 2, 3) for lv in (1, 2, 3)]
    source = open_source(f"biosr:{tmp_path}", "sim")
    assert isinstance(source, BiosrSource)
    for item in items:
        example = source.load(item)
        assert example.raw.shape == (9, 16, 16) and example.sr_gt.shape == (32, 32)
        assert int(example.raw[0, 5, 5]) == 1000 * item.cell + 10 * item.level
        assert list(example.raw[:, 0, 0] - example.raw[0, 0, 0]) == list(range(9))
        assert example.sr_gt[5, 5] == item.cell
    # the last cell is held out: validation never shows a training cell
    assert {i.cell for i in source.validation_items} == {3}
    assert {i.cell for i in source.train_items} == {1, 2}
    assert len(source.validation(10)) == 3


def test_biosr_batches_have_model_shapes_for_sim_and_sisr(tmp_path: Path) -> None:
    build_biosr(tmp_path, cells=2, levels=(1,))
    for mode, channels in (("sim", 9), ("sisr", 1)):
        sampler = PatchSampler(open_source(f"biosr:{tmp_path}", mode), mode, 8, 3, seed=1)
        x, y = sampler.batch(0)
        assert x.shape == (3, channels, 8, 8) and y.shape == (3, 1, 16, 16)
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0


def test_biosr_layout_errors_name_the_problem(tmp_path: Path) -> None:
    build_biosr(tmp_path, cells=1, levels=(1,))
    with pytest.raises(DataSourceError, match="needs 25"):
        BiosrSource(tmp_path, "nlsim").load(scan_biosr(tmp_path)[0])
    (tmp_path / "Cell_001" / "SIM_gt.mrc").unlink()
    with pytest.raises(DataSourceError, match=r"no SIM_gt\.mrc"):
        scan_biosr(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match="no Cell_XXX"):
        scan_biosr(empty)
