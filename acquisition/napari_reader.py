"""napari reader for livesim run files (npe2 plugin ``livesim``, manifest ``napari.yaml``).

A run file opens as image layers: wide-field, raw (the pattern index is an axis), each SR model
and the IMC-SR structures, one layer per colour with a colour map for its laser line, physical
scale (µm per pixel; seconds between time points; µm between z planes) and axis labels. Multi-D
runs get leading ``position, t, z`` axes (``docs/file-format.md``). The data stay on disk: each
layer is a dask array over the HDF5 datasets, read plane by plane as napari asks.

This module imports neither napari nor Qt: a reader returns plain ``(data, kwargs, "image")``
tuples, so it loads (and is tested) without a display. dask comes with napari.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition import run_file
from acquisition.ome_export import ExportError, ExportPlan, plan_export

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | list[str]], list[LayerData]]
# napari's built-in colour maps for the export's display colours
NAPARI_COLOURMAPS = {"8B00FF": "blue", "00FF00": "green", "FF8000": "bop orange", "FF0000": "red",
                     "FF00FF": "magenta", "00FFFF": "cyan", "FFFF00": "yellow",
                     "FFFFFF": "gray"}


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """npe2 ``reader`` contribution: a reader for a livesim run file, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_run_file(path):
        return None
    return read_run_layers


def is_run_file(path: str | Path) -> bool:
    """True for an HDF5 file with a livesim ``/raw`` and a ``layout_version`` attribute."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():
        return False
    try:
        with h5py.File(path, "r", swmr=True) as h5:
            return run_file.RAW in h5 and "layout_version" in h5.attrs
    except OSError:
        return False


def read_run_layers(path: str | Path | list[str]) -> list[LayerData]:
    """Every image dataset of a run file as napari layer data (lazy, scaled, coloured)."""
    path = Path(path[0] if isinstance(path, list) else path)
    h5 = h5py.File(path, "r", swmr=True)  # kept open by the dask arrays that read from it
    layers: list[LayerData] = []
    for dataset in ("wf", "raw", "imc"):
        if dataset in h5:
            layers.append(_layer(h5, plan_export(path, dataset), dataset))
    for model in sorted(h5.get(run_file.SR_GROUP, {})):
        plan = plan_export(path, "sr", model)
        layers.append(_layer(h5, plan, f"sr {model}", h5[plan.dataset].attrs.get("scale")))
    if not layers:
        raise ExportError(f"{path}: no image datasets to show")
    return layers


def _layer(h5: h5py.File, plan: ExportPlan, label: str, value_scale: Any = None) -> LayerData:
    import dask.array as da

    dataset = h5[plan.dataset]
    data = da.from_array(dataset, chunks=(1,) * (dataset.ndim - 2) + tuple(dataset.shape[-2:]))
    lead_labels, lead_scale = _leading_axes(plan)
    if len(lead_labels) > 1:  # multi-D: rows -> (position, t, z), zeros where never recorded
        blank = da.zeros((1, *dataset.shape[1:]), dtype=dataset.dtype, chunks=data.chunksize)
        padded = da.concatenate([data, blank])
        flat = np.where(plan.rows < 0, dataset.shape[0], plan.rows).reshape(-1)
        data = padded[flat].reshape(*plan.rows.shape, *dataset.shape[1:])
    if value_scale is not None:  # stored uint16 SR -> values in [0, 1]
        data = data.astype(np.float32) * np.float32(value_scale)
    is_raw = plan.patterns > 1
    names = plan.colour_names if is_raw else plan.channel_names
    colours = plan.colours[::plan.patterns] if is_raw else plan.colours
    frame_labels = ("pattern", "y", "x") if is_raw else ("y", "x")
    frame_scale = (1.0, plan.pixel_size_um, plan.pixel_size_um) if is_raw else (
        plan.pixel_size_um, plan.pixel_size_um)
    kwargs: dict[str, Any] = {
        "channel_axis": len(lead_labels),
        "name": [f"{label} {name}" for name in names],
        "colormap": [NAPARI_COLOURMAPS.get(c, "gray") for c in colours],
        "blending": "additive",
        "scale": (*lead_scale, *frame_scale),
        "axis_labels": (*lead_labels, *frame_labels),
        "metadata": {"run_file": str(plan.run_path), "dataset": plan.dataset,
                     "pixel_size_um": plan.pixel_size_um,
                     "time_increment_s": plan.time_increment_s},
    }
    if value_scale is not None:
        kwargs["contrast_limits"] = [(0.0, 1.0)] * len(names)
    return data, kwargs, "image"


def _leading_axes(plan: ExportPlan) -> tuple[tuple[str, ...], tuple[float, ...]]:
    t_scale = plan.time_increment_s or 1.0
    if plan.n_positions == 1 and plan.size_z == 1 and plan.rows.shape[1] == plan.rows.size and (
            plan.rows.reshape(-1) == np.arange(plan.rows.size)).all():
        return ("t",), (t_scale,)
    return ("position", "t", "z"), (1.0, t_scale, plan.z_step_um or 1.0)
