"""Export one image dataset of a run file to OME-TIFF or OME-Zarr (NGFF 0.5).

The run file keeps its own layout (``docs/file-format.md``); this module maps one of its image
datasets onto the OME model: axes T, C, Z, Y, X per stage position, physical pixel sizes (an SR
pixel is the raw pixel divided by the SR factor, read from the dataset's ``pixel_size_nm``), the
time increment, per-plane time stamps, channel names and wavelengths. Planes are streamed one at a
time, so a run larger than memory exports with a flat footprint.

- ``raw``: uint16; OME has no pattern axis, so each (colour, pattern) pair is one OME channel,
  named ``<colour> o<orientation> p<phase>``.
- ``wf``: float32 wide-field means (ADU).
- ``sr``: the stored uint16 SR images (value = stored / 65535; 0 where no SR was written).
- ``imc``: float32 IMC-SR structure channels, named after the structures.

OME-TIFF is written with tifffile (one OME image per position in one file); OME-Zarr with
yaozarrs (tensorstore backend): a 2x mean-downsampled pyramid in ``multiscales`` with scale
transformations (t in seconds, z/y/x in micrometres), omero channel names and colours; several
positions use the bioformats2raw layout (one image group per position).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import h5py
import numpy as np

from acquisition import run_file

if TYPE_CHECKING:
    from yaozarrs import v05

logger = logging.getLogger(__name__)

ExportFormat = Literal["ome-tiff", "ome-zarr"]
FORMATS: tuple[str, ...] = ("ome-tiff", "ome-zarr")
DATASETS: tuple[str, ...] = ("sr", "raw", "wf", "imc")
# display colours (hex RGB) of the laser lines, and of the IMC-SR structure channels in order
_LINE_COLOURS = ((430.0, "8B00FF"), (500.0, "00FF00"), (580.0, "FF8000"), (10_000.0, "FF0000"))
STRUCTURE_COLOURS = ("FF00FF", "00FF00", "00FFFF", "FFFF00")
MIN_PYRAMID_SIDE_PX = 32  # no OME-Zarr level smaller than this
MAX_PYRAMID_LEVELS = 5

ProgressCallback = Callable[[int, int], None]  # (planes written, planes in all)


class ExportError(ValueError):
    """A run file or request that cannot be exported; the message names the file and field."""


@dataclass(frozen=True)
class ExportPlan:
    """One run-file dataset seen as OME images: per position a (T, C, Z, Y, X) stack."""

    run_path: Path
    dataset: str  # path inside the run file: raw, wf, imc or sr/<model>
    dtype: np.dtype
    n_positions: int
    size_t: int
    size_c: int
    size_z: int
    frame_shape: tuple[int, int]
    pixel_size_um: float
    z_step_um: float | None
    time_increment_s: float | None
    channel_names: tuple[str, ...]
    excitation_nm: tuple[float | None, ...]
    emission_nm: tuple[float | None, ...]
    colours: tuple[str, ...]  # hex RGB per channel
    rows: np.ndarray  # (positions, T, Z) int: the run file's time-point row, -1 = never recorded
    delta_t_s: np.ndarray  # (positions, T, C, Z) seconds since the first frame, NaN = unknown
    stage_um: np.ndarray  # (positions, 3) x, y, z of each position (NaN = unknown)
    patterns: int = 1  # raw: patterns folded into each colour's OME channels
    colour_names: tuple[str, ...] = ()  # the run's colours (raw: before folding the patterns)

    @property
    def n_planes(self) -> int:
        """Planes over all positions."""
        return self.n_positions * self.size_t * self.size_c * self.size_z


def plan_export(path: str | Path, dataset: str = "sr", sr_model: str | None = None) -> ExportPlan:
    """Read a run file's layout and metadata and describe ``dataset`` as OME images."""
    path = Path(path)
    if dataset not in DATASETS:
        raise ExportError(f"--dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if not path.is_file():
        raise ExportError(f"{path}: no such run file")
    try:
        h5 = h5py.File(path, "r", swmr=True)
    except OSError as error:
        raise ExportError(f"{path}: not a readable HDF5 run file ({error})") from error
    with h5:
        return _plan(h5, path, dataset, sr_model)


def _plan(h5: h5py.File, path: Path, dataset: str, sr_model: str | None) -> ExportPlan:
    meta = run_file.read_metadata(h5)
    name = _dataset_name(h5, path, dataset, sr_model)
    data = h5[name]
    n_rows = int(data.shape[0])
    pixel_nm = _pixel_size_nm(data, meta, path, name)
    rows, z_step_um, stage_um = run_file.mda_rows(h5, n_rows)
    n_positions, size_t, size_z = rows.shape
    lasers = _channel_lasers(meta, h5)
    colour_names = _colour_names(meta, h5, len(lasers))
    emission = [_emission_nm(meta, laser, len(lasers)) for laser in lasers]
    patterns = int(data.shape[2]) if dataset == "raw" else 1
    size_c = int(data.shape[1]) * patterns
    excitation: Sequence[float | None] = [None] * size_c
    emissions: Sequence[float | None] = [None] * size_c
    if dataset == "imc":
        names = [str(n) for n in _as_list(data.attrs.get("channel_names", []))]
        names = names if len(names) == size_c else [f"structure {k}" for k in range(size_c)]
        colours = [STRUCTURE_COLOURS[k % len(STRUCTURE_COLOURS)] for k in range(size_c)]
    else:  # one OME channel per colour (raw: per colour and pattern)
        n_phases = 5 if patterns == 25 else 3 if patterns == 9 else 1
        names = [f"{colour} o{p // n_phases} p{p % n_phases}" if patterns > 1 else colour
                 for colour in colour_names for p in range(patterns)][:size_c]
        excitation = [laser for laser in lasers for _ in range(patterns)][:size_c]
        emissions = [e for e in emission for _ in range(patterns)]
        colours = [_line_colour(laser) for laser in excitation]
    delta_t = _plane_times(h5, rows, size_c, patterns, dataset, meta)
    return ExportPlan(
        run_path=path, dataset=name, dtype=np.dtype(data.dtype), n_positions=n_positions,
        size_t=size_t, size_c=size_c, size_z=size_z,
        frame_shape=(int(data.shape[-2]), int(data.shape[-1])), pixel_size_um=pixel_nm / 1000.0,
        z_step_um=z_step_um, time_increment_s=_time_increment_s(meta, delta_t),
        channel_names=tuple(names), excitation_nm=tuple(excitation),
        emission_nm=tuple(emissions[:size_c]), colours=tuple(colours), rows=rows,
        delta_t_s=delta_t, stage_um=stage_um, patterns=patterns,
        colour_names=tuple(colour_names),
    )


def _dataset_name(h5: h5py.File, path: Path, dataset: str, sr_model: str | None) -> str:
    if dataset != "sr":
        if dataset not in h5:
            raise ExportError(f"{path}: run file has no /{dataset} dataset")
        return dataset
    models = sorted(h5[run_file.SR_GROUP]) if run_file.SR_GROUP in h5 else []
    if not models:
        raise ExportError(f"{path}: run file has no SR images (/sr is empty or missing)")
    if sr_model is None:
        if len(models) > 1:
            raise ExportError(f"{path}: several SR datasets ({', '.join(models)}); "
                              "choose one with --sr-model")
        sr_model = models[0]
    if sr_model not in models:
        raise ExportError(f"{path}: no SR dataset {sr_model!r}; it has {', '.join(models)}")
    return f"{run_file.SR_GROUP}/{sr_model}"


def _pixel_size_nm(data: h5py.Dataset, meta: dict, path: Path, name: str) -> float:
    value = data.attrs.get("pixel_size_nm")
    if value is None:
        raise ExportError(f"{path}: /{name} has no pixel_size_nm attribute")
    pixel = float(value)
    if not np.isfinite(pixel) or pixel <= 0:
        raise ExportError(f"{path}: /{name} pixel_size_nm = {pixel} is not a positive size")
    return pixel


def _as_list(value: object) -> list[object]:
    if isinstance(value, np.ndarray):
        return [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
    if isinstance(value, list | tuple):
        return list(value)
    return []


def _channel_lasers(meta: dict, h5: h5py.File) -> list[float]:
    channels = (meta.get("protocol") or {}).get("channels") or (meta.get("lasers") or {}).get(
        "channels") or meta.get("channels") or []
    lasers = [float(c["laser_nm"]) for c in channels if isinstance(c, dict) and "laser_nm" in c]
    return lasers or [float("nan")] * int(h5[run_file.RAW].shape[1])


def _colour_names(meta: dict, h5: h5py.File, n: int) -> list[str]:
    names = [str(x) for x in _as_list(meta.get("channel_names"))]
    return names if len(names) == n else [f"channel {c}" for c in range(n)]


def _emission_nm(meta: dict, laser_nm: float, n_channels: int) -> float | None:
    from calibration.otf import default_emission_nm

    if not np.isfinite(laser_nm):
        return None
    optics = meta.get("optics") or {}
    if n_channels == 1 and isinstance(optics.get("emission_nm"), int | float):
        return float(optics["emission_nm"])
    return float(default_emission_nm(laser_nm))


def _line_colour(laser_nm: float | None) -> str:
    if laser_nm is None or not np.isfinite(laser_nm):
        return "FFFFFF"
    return next(colour for limit, colour in _LINE_COLOURS if laser_nm < limit)


def _plane_times(h5: h5py.File, rows: np.ndarray, size_c: int, patterns: int, dataset: str,
                 meta: dict) -> np.ndarray:
    """Seconds from the run's first frame to each plane's first frame; NaN where unknown."""
    out = np.full((*rows.shape[:2], size_c, rows.shape[2]), np.nan)
    name = f"{run_file.TIMESTAMPS_GROUP}/camera_s"
    if name not in h5:
        return out
    camera = np.asarray(h5[name][()], dtype=np.float64)  # (N, C, P)
    if camera.size == 0 or not np.isfinite(camera).any():
        return out
    start = np.nanmin(camera)
    set_start = np.nanmin(np.where(np.isfinite(camera), camera, np.inf), axis=2) - start  # (N, C)
    set_start[~np.isfinite(set_start)] = np.nan
    imc_channel = int(((meta.get("models") or {}).get("imc") or {}).get("channel", 0))
    for (p, t, z), n in np.ndenumerate(rows):
        if n < 0 or n >= camera.shape[0]:
            continue
        if dataset == "raw":
            out[p, t, :, z] = (camera[n] - start).reshape(-1)[:size_c]
        elif dataset == "imc":
            out[p, t, :, z] = set_start[n, min(imc_channel, set_start.shape[1] - 1)]
        else:
            out[p, t, :, z] = set_start[n, :size_c]
    return out


def _time_increment_s(meta: dict, delta_t: np.ndarray) -> float | None:
    """The protocol's interval, else the median measured start-to-start time; None if one."""
    interval = float((meta.get("protocol") or {}).get("interval_s") or 0.0)
    if interval > 0:
        return interval
    if delta_t.shape[1] < 2:
        return None
    starts = np.nanmin(delta_t[0].reshape(delta_t.shape[1], -1), axis=1)
    steps = np.diff(starts[np.isfinite(starts)])
    return float(np.median(steps)) if steps.size else None


def iter_planes(h5: h5py.File, plan: ExportPlan, position: int,
                on_plane: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
    """The planes of one position in T, C, Z order (zeros where nothing was recorded)."""
    data = h5[plan.dataset]
    blank = np.zeros(plan.frame_shape, dtype=plan.dtype)
    for t in range(plan.size_t):
        for c in range(plan.size_c):
            for z in range(plan.size_z):
                n = int(plan.rows[position, t, z])
                if n < 0 or n >= data.shape[0]:
                    plane = blank
                elif plan.patterns > 1:
                    plane = data[n, c // plan.patterns, c % plan.patterns]
                else:
                    plane = data[n, c]
                if on_plane is not None:
                    on_plane()
                yield np.asarray(plane)


def export_run(path: str | Path, output: str | Path, fmt: ExportFormat, dataset: str = "sr",
               sr_model: str | None = None, overwrite: bool = False,
               progress: ProgressCallback | None = None) -> Path:
    """Export ``dataset`` of the run file at ``path`` to ``output``; returns what was written."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    plan = plan_export(path, dataset, sr_model)
    output = Path(output)
    if output.exists() and not overwrite:
        raise ExportError(f"{output} already exists (use --overwrite to replace it)")
    if plan.size_t == 0:
        raise ExportError(f"{path}: /{plan.dataset} holds no time points")
    output.parent.mkdir(parents=True, exist_ok=True)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, plan.n_planes)

    with h5py.File(plan.run_path, "r", swmr=True) as h5:
        if fmt == "ome-tiff":
            _write_ome_tiff(h5, plan, output, tick)
        else:
            _write_ome_zarr(h5, plan, output, tick, overwrite)
    logger.info("exported /%s of %s to %s (%s, %d planes)", plan.dataset, plan.run_path, output,
                fmt, plan.n_planes)
    return output


def ome_tiff_metadata(plan: ExportPlan, position: int) -> dict[str, object]:
    """tifffile's OME metadata for one position (axes TCZYX, planes in T, C, Z order)."""
    planes = plan.size_t * plan.size_c * plan.size_z
    delta_t = plan.delta_t_s[position].reshape(-1)  # (T, C, Z) in C order = plane order
    meta: dict[str, object] = {
        "axes": "TCZYX",
        "Name": f"{plan.dataset} position {position}",
        "PhysicalSizeX": plan.pixel_size_um, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": plan.pixel_size_um, "PhysicalSizeYUnit": "µm",
        "Channel": _tiff_channels(plan),
    }
    if plan.z_step_um is not None:
        meta.update(PhysicalSizeZ=plan.z_step_um, PhysicalSizeZUnit="µm")
    if plan.time_increment_s is not None:
        meta.update(TimeIncrement=plan.time_increment_s, TimeIncrementUnit="s")
    plane: dict[str, list[object]] = {}
    if np.isfinite(delta_t).all():
        plane.update(DeltaT=[float(v) for v in delta_t], DeltaTUnit=["s"] * planes)
    stage = plan.stage_um[position]
    if np.isfinite(stage[:2]).all():
        plane.update(PositionX=[float(stage[0])] * planes, PositionXUnit=["µm"] * planes,
                     PositionY=[float(stage[1])] * planes, PositionYUnit=["µm"] * planes)
    if plane:
        meta["Plane"] = plane
    return meta


def _tiff_channels(plan: ExportPlan) -> dict[str, list[object]]:
    channels: dict[str, list[object]] = {"Name": list(plan.channel_names)}
    if all(e is not None and np.isfinite(e) for e in plan.excitation_nm):
        channels["ExcitationWavelength"] = [float(e) for e in plan.excitation_nm if e]
        channels["ExcitationWavelengthUnit"] = ["nm"] * plan.size_c
    if all(e is not None for e in plan.emission_nm):
        channels["EmissionWavelength"] = [float(e) for e in plan.emission_nm if e]
        channels["EmissionWavelengthUnit"] = ["nm"] * plan.size_c
    channels["Color"] = [_ome_colour(c) for c in plan.colours]
    return channels


def _ome_colour(hex_rgb: str) -> int:
    """OME's Color: signed 32-bit RGBA."""
    value = (int(hex_rgb, 16) << 8) | 0xFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _write_ome_tiff(h5: h5py.File, plan: ExportPlan, output: Path,
                    tick: Callable[[], None]) -> None:
    import tifffile

    shape = (plan.size_t, plan.size_c, plan.size_z, *plan.frame_shape)
    big = plan.n_planes * int(np.prod(plan.frame_shape)) * plan.dtype.itemsize > 2**31
    with tifffile.TiffWriter(output, bigtiff=big, ome=True) as tif:
        for position in range(plan.n_positions):
            tif.write(
                iter_planes(h5, plan, position, tick), shape=shape, dtype=plan.dtype,
                photometric="minisblack", metadata=ome_tiff_metadata(plan, position),
                resolution=(1e4 / plan.pixel_size_um, 1e4 / plan.pixel_size_um),
                resolutionunit="CENTIMETER",
            )


def pyramid_shapes(frame_shape: tuple[int, int]) -> list[tuple[int, int]]:
    """(Y, X) of each OME-Zarr level: halved (odd edge dropped) while both sides stay >= 32."""
    shapes = [frame_shape]
    while len(shapes) < MAX_PYRAMID_LEVELS:
        y, x = shapes[-1][0] // 2, shapes[-1][1] // 2
        if min(y, x) < MIN_PYRAMID_SIDE_PX:
            break
        shapes.append((y, x))
    return shapes


def ngff_image(plan: ExportPlan, position: int, levels: int) -> v05.Image:
    """The NGFF 0.5 ``Image`` metadata: axes t, c, z, y, x, one scale per level, omero channels."""
    from yaozarrs import v05

    z_um = plan.z_step_um or 1.0
    t_s = plan.time_increment_s or 1.0
    datasets = [
        v05.Dataset(path=str(level), coordinateTransformations=[v05.ScaleTransformation(
            scale=[t_s, 1.0, z_um, plan.pixel_size_um * 2**level, plan.pixel_size_um * 2**level]
        )])
        for level in range(levels)
    ]
    axes: list[v05.SpaceAxis | v05.TimeAxis | v05.ChannelAxis | v05.CustomAxis] = [
        v05.TimeAxis(name="t", unit="second"), v05.ChannelAxis(name="c"),
        v05.SpaceAxis(name="z", unit="micrometer"), v05.SpaceAxis(name="y", unit="micrometer"),
        v05.SpaceAxis(name="x", unit="micrometer")]
    top = float(np.iinfo(plan.dtype).max) if plan.dtype.kind in "ui" else 1.0
    omero = v05.Omero(channels=[
        v05.OmeroChannel(label=name, color=colour, active=True, family="linear",
                         window=v05.OmeroWindow(start=0.0, end=top, min=0.0, max=top))
        for name, colour in zip(plan.channel_names, plan.colours, strict=True)
    ])
    return v05.Image(multiscales=[v05.Multiscale(
        name=f"{plan.dataset} position {position}", axes=axes, datasets=datasets)], omero=omero)


def _write_ome_zarr(h5: h5py.File, plan: ExportPlan, output: Path, tick: Callable[[], None],
                    overwrite: bool) -> None:
    from skimage.transform import downscale_local_mean
    from yaozarrs.write.v05 import Bf2RawBuilder, prepare_image

    shapes = pyramid_shapes(plan.frame_shape)
    specs = [((plan.size_t, plan.size_c, plan.size_z, *s), plan.dtype) for s in shapes]
    chunks = (1, 1, 1, *plan.frame_shape)
    extra = {"livesim": {"run_file": str(plan.run_path), "dataset": plan.dataset,
                         "pixel_size_um": plan.pixel_size_um}}
    if plan.n_positions == 1:
        _, arrays = prepare_image(output, ngff_image(plan, 0, len(shapes)), specs,
                                  extra_attributes=extra, chunks=chunks, writer="tensorstore",
                                  overwrite=overwrite)
        per_position = [{str(k): arrays[str(k)] for k in range(len(shapes))}]
    else:
        builder = Bf2RawBuilder(output, writer="tensorstore", chunks=chunks, overwrite=overwrite,
                                extra_attributes=extra)
        for position in range(plan.n_positions):
            builder.add_series(str(position), ngff_image(plan, position, len(shapes)), specs)
        _, arrays = builder.prepare()
        per_position = [{str(k): arrays[f"{p}/{k}"] for k in range(len(shapes))}
                        for p in range(plan.n_positions)]
    for position, levels in enumerate(per_position):
        planes = iter_planes(h5, plan, position, tick)
        pending: list[object] = []
        for t in range(plan.size_t):
            # one (C, Z, Y, X) block per level and time point, written asynchronously while
            # the next time point is read (at most one time point in flight)
            blocks = [np.empty((plan.size_c, plan.size_z, *s), dtype=plan.dtype) for s in shapes]
            for c in range(plan.size_c):
                for z in range(plan.size_z):
                    plane = next(planes)
                    blocks[0][c, z] = plane
                    for level, (y, x) in enumerate(shapes[1:], start=1):
                        plane = downscale_local_mean(plane[: 2 * y, : 2 * x], (2, 2))
                        blocks[level][c, z] = _cast(plane, plan.dtype)
            _wait(pending)
            pending = [levels[str(level)][t].write(block) for level, block in enumerate(blocks)]
        _wait(pending)


def _cast(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A downsampled (float) plane in the export's dtype (integers rounded, not truncated)."""
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    return image.astype(dtype)


def _wait(futures: list[object]) -> None:
    for future in futures:
        future.result()  # type: ignore[attr-defined]
