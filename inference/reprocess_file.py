"""The output file of `livesim reprocess`: SR re-made from a recorded run, in the run-file layout.

One writer (the process driving the job) creates the file, writes each finished chunk of time
points and flushes it in SWMR mode, as the live recorder does, so a crash loses at most the
chunks in flight. ``/timestamps/complete`` marks the time points done; a rerun on the same file
skips them (resume). The raw data stay in the source file: ``/raw``, ``/wf`` and ``/gt`` are
HDF5 external links to it; the ``/mda`` labels of a multi-D run (which row is which time point,
position and plane) are copied. The ``reprocess`` metadata attribute records where the SR came from:
the source file and its SHA-256, the model's name and SHA-256 (or Wiener and the pattern
parameters it used per channel) and the software version.

The trust records are those the live recorder writes for every SR image: ``/photon_count``,
``/timestamps/sr_written``, ``/timestamps/inference_ms`` and ``sr_flagged`` / ``sr_failed`` /
``sr_skip`` rows in ``/events``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition import run_file

logger = logging.getLogger(__name__)

PROVENANCE_KEY = "reprocess"  # the metadata attribute holding the provenance
LINKED = (run_file.RAW, run_file.WIDEFIELD, run_file.GT_GROUP)  # stay in the source file


class ReprocessFileError(ValueError):
    """The output file cannot be created or resumed; the message names the file and field."""


@dataclass(frozen=True)
class Provenance:
    """Where a reprocessed SR image comes from; a resume must find the same values."""

    source_path: str
    source_sha256: str
    method: str  # as requested (model name or path, wiener, auto)
    model_name: str
    model_sha256: str  # "" for Wiener: its identity is the pattern parameters
    sim_parameters: dict[str, Any] = field(default_factory=dict)  # channel -> SimParameters
    software_version: str = "unknown"

    IDENTITY = ("source_sha256", "model_name", "model_sha256")

    def as_metadata(self) -> dict[str, Any]:
        """The JSON-able form stored in the output file."""
        return asdict(self)


@dataclass(frozen=True)
class ReprocessLayout:
    """Shapes of the output: time points and channels of the source, SR frame and its label."""

    n_time_points: int
    n_channels: int
    n_orientations: int
    sr_shape: tuple[int, int]
    sr_pixel_size_nm: float
    label: str  # /sr/<label>
    channel_names: tuple[str, ...] = ()


@dataclass
class SetResult:
    """The outcome of one raw set (time point, channel): an SR image or why there is none."""

    time_point: int
    channel: int
    image: np.ndarray | None = None  # uint16 stored form (x run_file.SR_SCALE)
    photon_count: float = float("nan")
    inference_ms: float = float("nan")
    flags: tuple[str, ...] = ()
    skip_reason: str = ""  # nothing to reconstruct (incomplete raw set): an sr_skip
    error: str = ""  # reconstruction failed: an sr_failed


class ReprocessWriter:
    """The one writer of a reprocess output file (create or resume), SWMR, flushed per chunk."""

    def __init__(self, path: Path, layout: ReprocessLayout, provenance: Provenance,
                 source_metadata: Mapping[str, Any],
                 calibration: Mapping[str, np.ndarray] | None = None) -> None:
        self.path = Path(path)
        self.layout = layout
        self.provenance = provenance
        self.resumed = self.path.exists()
        try:
            if self.resumed:
                self._h5 = h5py.File(self.path, "r+", libver="latest")
                self._check_resumable()
            else:
                self._h5 = h5py.File(self.path, "w-", libver="latest")
                self._create(source_metadata, calibration or {})
            self._h5.swmr_mode = True
        except OSError as exc:
            action = "resume" if self.resumed else "create"
            hint = (f"; if a reprocess of it was killed, `livesim recover {self.path}` clears "
                    "its SWMR flags" if self.resumed else "")
            raise ReprocessFileError(f"{self.path}: cannot {action} the output: {exc}{hint}"
                                     ) from exc
        except ReprocessFileError:
            self._h5.close()
            raise
        self.sr_frames = 0

    # --- setup ------------------------------------------------------------------------------

    def _create(self, source_metadata: Mapping[str, Any],
                calibration: Mapping[str, np.ndarray]) -> None:
        h5, lay = self._h5, self.layout
        t, c = lay.n_time_points, lay.n_channels
        sr_group = h5.create_group(run_file.SR_GROUP)
        sr = run_file.create_image_dataset(sr_group, lay.label, lay.sr_shape, (t, c), np.uint16,
                                           lay.sr_pixel_size_nm, growable=False, fillvalue=0)
        sr.attrs["scale"] = run_file.SR_SCALE
        stamps = h5.create_group(run_file.TIMESTAMPS_GROUP)
        tables = [
            run_file.create_table(stamps, "sr_written", (c,), np.uint8, 0),
            run_file.create_table(stamps, "inference_ms", (c,), np.float64, np.nan),
            run_file.create_table(stamps, "complete", (), np.uint8, 0),
            run_file.create_table(h5, run_file.PHOTON_COUNT, (c,), np.float32, np.nan),
        ]
        for table in tables:
            table.resize(t, axis=0)
        params = run_file.create_table(h5, run_file.SIM_PARAMS, (c, lay.n_orientations, 4),
                                       np.float64, np.nan)
        params.resize(1, axis=0)  # one row: the parameters every time point was made with
        params.attrs["columns"] = ["kx_cycles_per_px", "ky_cycles_per_px", "phase_rad",
                                   "modulation"]
        for channel, parameters in self.provenance.sim_parameters.items():
            params[0, int(channel)] = _parameter_rows(parameters, lay.n_orientations)
        run_file.create_calibration_and_events(h5, calibration)
        source = str(Path(self.provenance.source_path).resolve())
        with h5py.File(source, "r") as src:
            present = [name for name in LINKED if name in src]
            if run_file.MDA_GROUP in src:
                src.copy(src[run_file.MDA_GROUP], h5, run_file.MDA_GROUP)
        for name in present:
            h5[name] = h5py.ExternalLink(source, "/" + name)
        h5.attrs["channel_names"] = list(lay.channel_names)
        models = {str(ch): {"method": self.provenance.method, "dataset": f"sr/{lay.label}",
                            "model_name": self.provenance.model_name,
                            "model_sha256": self.provenance.model_sha256,
                            "sr_shape": list(lay.sr_shape)} for ch in range(c)}
        metadata = {**source_metadata, "models": models,
                    "software_version": self.provenance.software_version,
                    PROVENANCE_KEY: self.provenance.as_metadata()}
        metadata.pop("layout_version", None)
        run_file.write_metadata(h5, metadata)

    def _check_resumable(self) -> None:
        recorded = run_file.read_metadata(self._h5).get(PROVENANCE_KEY)
        if not isinstance(recorded, dict):
            raise ReprocessFileError(f"{self.path}: not a reprocess output (no {PROVENANCE_KEY!r} "
                                     "metadata); choose another --output")
        wanted = self.provenance.as_metadata()
        for key in Provenance.IDENTITY:
            if recorded.get(key) != wanted[key]:
                raise ReprocessFileError(
                    f"{self.path}: cannot resume: {key} is {recorded.get(key)!r} in the file but "
                    f"{wanted[key]!r} now (use another --output, or --overwrite)")
        dataset = self._h5.get(f"{run_file.SR_GROUP}/{self.layout.label}")
        expected = (self.layout.n_time_points, self.layout.n_channels, *self.layout.sr_shape)
        if dataset is None or dataset.shape != expected:
            found = None if dataset is None else dataset.shape
            raise ReprocessFileError(f"{self.path}: cannot resume: sr/{self.layout.label} is "
                                     f"{found}, this job writes {expected}")

    # --- writing ----------------------------------------------------------------------------

    def done_time_points(self) -> set[int]:
        """Time points already written completely (skipped by a resume)."""
        complete = self._h5[run_file.COMPLETE][()]
        return {int(t) for t in np.flatnonzero(complete)}

    def write_chunk(self, time_points: Sequence[int], results: Sequence[SetResult]) -> None:
        """Write a chunk's results, mark its time points complete (unless a set failed) and
        flush: a crash after this returns loses none of it."""
        h5 = self._h5
        sr = h5[f"{run_file.SR_GROUP}/{self.layout.label}"]
        failed: set[int] = set()
        for result in results:
            t, c = result.time_point, result.channel
            if result.skip_reason:
                self.record_event("sr_skip", t, f"channel {c}: {result.skip_reason}")
                continue
            if result.error or result.image is None:
                failed.add(t)
                self.record_event("sr_failed", t, f"channel {c}: {result.error or 'no image'}")
                continue
            if result.image.shape != self.layout.sr_shape or result.image.dtype != np.uint16:
                failed.add(t)
                self.record_event("sr_failed", t, f"channel {c}: SR {result.image.dtype}"
                                  f"{list(result.image.shape)} is not the file's uint16"
                                  f"{list(self.layout.sr_shape)}")
                continue
            sr.id.write_direct_chunk((t, c, 0, 0), np.ascontiguousarray(result.image, "<u2"))
            h5[run_file.SR_WRITTEN][t, c] = 1
            h5[run_file.PHOTON_COUNT][t, c] = result.photon_count
            h5[f"{run_file.TIMESTAMPS_GROUP}/inference_ms"][t, c] = result.inference_ms
            for kind, detail in run_file.flag_events(c, result.flags):
                self.record_event(kind, t, detail)
            self.sr_frames += 1
        complete = h5[run_file.COMPLETE]
        for t in time_points:
            if t not in failed:  # a failed set is tried again by the next run on this file
                complete[t] = 1
        h5.flush()

    def record_event(self, kind: str, time_point: int = -1, detail: str = "") -> None:
        """Append a row to /events (logged too)."""
        logger.info("event %s t=%d %s", kind, time_point, detail)
        events = self._h5[run_file.EVENTS]
        n = events.shape[0]
        events.resize(n + 1, axis=0)
        events[n] = (time.time(), kind, time_point, -1, detail)

    def close(self) -> None:
        """Flush and close the file."""
        if self._h5.id.valid:
            self._h5.flush()
            self._h5.close()


def _parameter_rows(parameters: Mapping[str, Any], n_orientations: int) -> np.ndarray:
    """SimParameters (as JSON) -> (n_orientations, 4) rows of /sim_params."""
    rows = np.full((n_orientations, 4), np.nan)
    for i, entry in enumerate(list(parameters.get("orientations", []))[:n_orientations]):
        kx, ky = entry.get("wave_vector_cycles_per_px", (np.nan, np.nan))
        phases = entry.get("phases_rad") or [np.nan]
        rows[i] = (kx, ky, phases[0], entry.get("modulation", np.nan))
    return rows
