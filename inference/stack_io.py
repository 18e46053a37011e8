"""Reading raw SIM stacks (.mrc, .tif/.tiff, .npy, livesim .h5 run files) and writing images.

Every reader returns frames as (T, P, Y, X) in the stored dtype, with pattern index
``P = n_phases * orientation + phase``; optics are taken from the file where it says so.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

RAW_SUFFIXES = (".mrc", ".tif", ".tiff", ".npy", ".h5", ".hdf5")
IMAGE_SUFFIXES = (".npy", ".tif", ".tiff")
KNOWN_PATTERN_COUNTS = (1, 9, 25)


class StackFormatError(ValueError):
    """A stack file that cannot be read as raw SIM frames (format, shape or content)."""


@dataclass(frozen=True)
class RawStack:
    """Raw frames (T, P, Y, X) in the stored dtype plus the optics the file states (else None).

    ``na`` is the detection NA; ``illumination_na`` the NA of the illumination pattern that
    DL-SR / rDL-SIM MRC labels state (pattern period = excitation / (2 illumination NA)).
    """

    frames: np.ndarray
    path: Path
    pixel_size_nm: float | None = None
    na: float | None = None
    illumination_na: float | None = None
    excitation_nm: float | None = None
    emission_nm: float | None = None
    exposure_ms: float | None = None

    @property
    def n_time_points(self) -> int:
        """Number of time points T."""
        return int(self.frames.shape[0])

    @property
    def n_patterns(self) -> int:
        """Number of illumination patterns per time point P."""
        return int(self.frames.shape[1])

    def time_point(self, index: int) -> np.ndarray:
        """The (P, Y, X) raw set of one time point."""
        return self.frames[index]


def load_raw_stack(
    path: str | Path, n_patterns: int | None = None, channel: int = 0
) -> RawStack:
    """Load a raw SIM stack as (T, P, Y, X); ``n_patterns`` splits flat 3-D stacks (default 9).

    ``channel`` selects the colour channel of a livesim .h5 run file (ignored elsewhere).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in RAW_SUFFIXES:
        raise StackFormatError(
            f"{path}: unknown stack format {suffix!r}; expected one of {', '.join(RAW_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such stack file")
    if suffix == ".mrc":
        return _load_mrc(path, n_patterns)
    if suffix in (".tif", ".tiff"):
        return _load_tiff(path, n_patterns)
    if suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise StackFormatError(f"{path}: not a plain .npy array ({error})") from error
        return RawStack(frames=_as_tpyx(data, path, n_patterns), path=path)
    return _load_run_file(path, channel)


def save_image(path: str | Path, array: np.ndarray, pixel_size_nm: float | None = None,
               time_increment_s: float | None = None) -> Path:
    """Write an image or image stack to .npy or .tif/.tiff (dtype kept); returns the path.

    A TIFF is an ImageJ hyperstack (axes YX, or TYX for a stack) when its dtype allows
    (uint8, uint16, float32), else an OME-TIFF; with ``pixel_size_nm`` it carries the pixel size
    in micrometres (ImageJ: resolution + unit; OME: PhysicalSizeX/Y), and ``time_increment_s``
    the frame interval of a stack.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise StackFormatError(
            f"{path}: cannot write format {suffix!r}; expected one of {', '.join(IMAGE_SUFFIXES)}"
        )
    array = np.ascontiguousarray(array)
    if array.ndim < 2:
        raise StackFormatError(f"{path}: an image needs at least 2 dimensions, got {array.shape}")
    if pixel_size_nm is not None and not (np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise StackFormatError(f"{path}: pixel_size_nm={pixel_size_nm} is not a positive size")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, array, allow_pickle=False)
    else:
        _write_tiff(path, array, pixel_size_nm, time_increment_s)
    logger.info("wrote %s %s %s (pixel %s nm)", path, array.shape, array.dtype, pixel_size_nm)
    return path


TIFF_AXES = {2: "YX", 3: "TYX", 4: "TCYX", 5: "TZCYX"}
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def _write_tiff(path: Path, array: np.ndarray, pixel_size_nm: float | None,
                time_increment_s: float | None) -> None:
    import tifffile

    axes = TIFF_AXES.get(array.ndim)
    if axes is None:
        raise StackFormatError(f"{path}: cannot write a {array.ndim}-D array as TIFF")
    pixel_um = None if pixel_size_nm is None else pixel_size_nm / 1000.0
    if array.dtype in IMAGEJ_DTYPES and array.ndim <= 5:
        meta: dict[str, Any] = {"axes": axes}
        if pixel_um is not None:
            meta["unit"] = "um"
        if time_increment_s is not None and "T" in axes:
            meta.update(finterval=float(time_increment_s), fintervalunit="s")
        resolution = None if pixel_um is None else (1.0 / pixel_um, 1.0 / pixel_um)
        tifffile.imwrite(path, array, imagej=True, resolution=resolution, metadata=meta)
        return
    ome: dict[str, Any] = {"axes": axes}
    if pixel_um is not None:
        ome.update(PhysicalSizeX=pixel_um, PhysicalSizeXUnit="µm", PhysicalSizeY=pixel_um,
                   PhysicalSizeYUnit="µm")
    if time_increment_s is not None and "T" in axes:
        ome.update(TimeIncrement=float(time_increment_s), TimeIncrementUnit="s")
    tifffile.imwrite(path, array, ome=True, metadata=ome)


def tiff_pixel_size_nm(path: str | Path) -> float | None:
    """The pixel size a TIFF states (ImageJ resolution in microns, or OME PhysicalSizeX)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            size = pixels.get("PhysicalSizeX")
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            if size is not None and unit in ("µm", "um"):
                return float(size) * 1000.0
        return _tiff_pixel_size_nm(tif)


def check_intensities(data: np.ndarray, path: Path) -> None:
    """Refuse arrays that cannot be camera intensities: complex (its imaginary part would be
    dropped silently), bool, strings, objects, structured records."""
    kind = data.dtype.kind
    if kind not in "uif" or data.dtype.names is not None:
        what = {"c": "complex", "b": "bool", "U": "text", "S": "bytes", "O": "object",
                "V": "structured", "M": "datetime", "m": "timedelta"}.get(kind, str(data.dtype))
        raise StackFormatError(f"{path}: holds {what} values (dtype {data.dtype}); raw SIM "
                               "frames must be real numbers (unsigned/signed integer or float)")


def _as_tpyx(data: np.ndarray, path: Path, n_patterns: int | None) -> np.ndarray:
    """Bring a 2-, 3- or 4-D array to (T, P, Y, X) without copying."""
    check_intensities(data, path)
    if data.ndim == 2:
        return data[None, None]
    if data.ndim == 3:
        n_frames = data.shape[0]
        if n_patterns is None:
            if n_frames in KNOWN_PATTERN_COUNTS:
                return data[None]
            n_patterns = 9
        if n_patterns < 1 or n_frames % n_patterns:
            raise StackFormatError(
                f"{path}: {n_frames} frames is not a whole number of {n_patterns}-pattern sets"
            )
        return data.reshape(n_frames // n_patterns, n_patterns, *data.shape[1:])
    if data.ndim == 4:
        if n_patterns is not None and data.shape[1] != n_patterns:
            raise StackFormatError(
                f"{path}: stack has {data.shape[1]} patterns per time point, expected {n_patterns}"
            )
        return data
    raise StackFormatError(
        f"{path}: expected (Y, X), (P, Y, X) or (T, P, Y, X) frames, got shape {data.shape}"
    )


_WAVELENGTH = re.compile(r"^(\d{3})(?:nm)?$")
_NA = re.compile(r"^([01]\.\d+)$")
_EXPOSURE = re.compile(r"^(\d+(?:\.\d+)?)ms$")


def parse_acquisition_label(label: str) -> dict[str, float]:
    """Optics from a DL-SR style MRC label such as 'c18-488-0.3W-1.35-2ms' (488 nm, NA 1.35).

    The NA in these labels is the illumination NA of the SIM pattern (the lab's own code uses
    it as ``excNA``: period = 488 / (2 x 1.35) = 180.7 nm), not the detection NA.
    """
    found: dict[str, float] = {}
    for token in re.split(r"[-_\s]+", label.strip()):
        if (match := _WAVELENGTH.match(token)) and 300 <= int(match.group(1)) <= 900:
            found.setdefault("excitation_nm", float(match.group(1)))
        elif (match := _NA.match(token)) and 0.1 <= float(match.group(1)) <= 1.7:
            found.setdefault("na", float(match.group(1)))
        elif match := _EXPOSURE.match(token):
            found.setdefault("exposure_ms", float(match.group(1)))
    return found


def _load_mrc(path: Path, n_patterns: int | None) -> RawStack:
    import mrcfile

    with warnings.catch_warnings():
        # DL-SR MRC files lack the map ID and machine stamp; permissive mode still reads them.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    raise StackFormatError(f"{path}: MRC header read but no image data found")
                data = np.array(mrc.data)
                voxel_x = float(mrc.voxel_size.x)
                labels = [
                    bytes(label).decode("ascii", "replace").strip("\x00 ")
                    for label in mrc.header.label[: int(mrc.header.nlabl)]
                ]
        except (ValueError, OSError) as error:
            raise StackFormatError(f"{path}: not a readable MRC file ({error})") from error
    pixel_size_nm: float | None = None
    if voxel_x > 0:
        # DL-SR files store the cell in micrometres (0.0626); standard MRC uses angstroms.
        pixel_size_nm = voxel_x * 1000.0 if voxel_x < 10 else voxel_x / 10.0
    optics: dict[str, float] = {}
    for label in labels:
        for key, value in parse_acquisition_label(label).items():
            optics.setdefault(key, value)
    return RawStack(
        frames=_as_tpyx(data, path, n_patterns),
        path=path,
        pixel_size_nm=pixel_size_nm,
        illumination_na=optics.get("na"),
        excitation_nm=optics.get("excitation_nm"),
        exposure_ms=optics.get("exposure_ms"),
    )


def _load_tiff(path: Path, n_patterns: int | None) -> RawStack:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            pixel_size_nm = _tiff_pixel_size_nm(tif)
    except (tifffile.TiffFileError, ValueError) as error:
        raise StackFormatError(f"{path}: not a readable TIFF file ({error})") from error
    return RawStack(
        frames=_as_tpyx(data, path, n_patterns), path=path, pixel_size_nm=pixel_size_nm
    )


def _tiff_pixel_size_nm(tif: Any) -> float | None:
    """Pixel size from an ImageJ TIFF's X resolution when its unit is micron, else None."""
    meta = tif.imagej_metadata or {}
    unit = str(meta.get("unit", "")).lower()
    if unit not in ("micron", "um", "\\u00b5m", "µm"):
        return None
    tag = tif.pages[0].tags.get("XResolution")
    if tag is None:
        return None
    numerator, denominator = tag.value
    if numerator == 0:
        return None
    return 1000.0 * denominator / numerator


def _load_run_file(path: Path, channel: int) -> RawStack:
    import h5py

    from acquisition.run_file import hdf5_truncation

    missing = hdf5_truncation(path)
    if missing:
        raise StackFormatError(f"{path}: truncated HDF5 file ({missing} bytes missing at its "
                               "end): frames would read as zeros; copy it again from its source")
    try:
        with h5py.File(path, "r", swmr=True) as h5:
            if "raw" not in h5:
                raise StackFormatError(f"{path}: run file has no /raw dataset")
            raw = h5["raw"]
            if not isinstance(raw, h5py.Dataset):
                raise StackFormatError(f"{path}: /raw is a {type(raw).__name__.lower()}, "
                                       "not a (T, C, P, Y, X) dataset")
            check_intensities(np.empty(0, raw.dtype), path)
            if raw.ndim != 5:
                raise StackFormatError(
                    f"{path}: /raw must be (T, C, P, Y, X), got shape {raw.shape}"
                )
            if not 0 <= channel < raw.shape[1]:
                raise StackFormatError(
                    f"{path}: channel {channel} out of range, /raw has {raw.shape[1]} channels"
                )
            frames = np.asarray(raw[:, channel])
            if (frames.shape[0] and "timestamps/complete" in h5
                    and h5["timestamps/complete"].shape[0] == frames.shape[0]):
                incomplete = np.flatnonzero(h5["timestamps/complete"][()] == 0)
                if incomplete.size:
                    logger.warning("%s: time points %s were not completely recorded",
                                   path, incomplete[:10].tolist())
            pixel_size_nm = _attr_float(raw.attrs, "pixel_size_nm")
            optics = _run_file_optics(h5)
    except OSError as error:
        raise StackFormatError(f"{path}: not a readable HDF5 file ({error})") from error
    if pixel_size_nm is None:
        pixel_size_nm = optics.get("pixel_size_nm")
    return RawStack(
        frames=frames,
        path=path,
        pixel_size_nm=pixel_size_nm,
        na=optics.get("na"),
        excitation_nm=optics.get("excitation_nm"),
        emission_nm=optics.get("emission_nm"),
    )


def _attr_float(attrs: Any, name: str) -> float | None:
    if name not in attrs:
        return None
    try:
        return float(attrs[name])
    except (TypeError, ValueError):
        return None


def _run_file_optics(h5: Any) -> dict[str, float]:
    """Optics numbers from the run metadata (JSON attribute 'optics', as acquisition writes it)."""
    from acquisition.run_file import read_metadata

    optics = read_metadata(h5).get("optics")
    found: dict[str, float] = {}
    if isinstance(optics, dict):
        for key in ("na", "excitation_nm", "emission_nm", "pixel_size_nm"):
            value = optics.get(key)
            if isinstance(value, int | float):
                found[key] = float(value)
    return found
