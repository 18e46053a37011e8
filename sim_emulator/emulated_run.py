"""Write an emulated acquisition (raw sets plus ground truth) as a livesim HDF5 run file.

Layout (acquisition.run_file): /raw uint16 (T, C, P, Y, X); /wf float32 (T, C, Y, X) mean of
the raw patterns in ADU; /gt/wf and /gt/sr float32 (T, C, ...) noiseless references in
expected photo-electrons per pixel; /gt/components (T, n, sY, sX) for a mix; /photon_count
(T, C) average photon count in e- (calibration.photon_count);
/calibration/* the camera's true maps; optics, camera, patterns, emulator metadata as JSON
attributes of the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calibration.photon_count import average_photon_count
from sim_emulator.microscope import EmulatorConfig, Microscope

logger = logging.getLogger(__name__)


def run_metadata(microscope: Microscope, timepoints: int, interval_s: float) -> dict[str, Any]:
    """Optics, camera, pattern and emulator parameters of a run, JSON-ready."""
    c = microscope.config
    patterns = c.patterns
    vectors = patterns.wave_vectors_cycles_per_nm()
    return {
        "optics": {**c.optics.model_dump(), "cutoff_cycles_per_nm": c.optics.cutoff_cycles_per_nm},
        "camera": {
            **c.sensor.model_dump(),
            "electrons_per_adu": c.sensor.electrons_per_adu,
            "sensor_shape": list(c.sensor_shape),
        },
        "patterns": {
            **patterns.model_dump(),
            "n_patterns": patterns.n_patterns,
            "frame_order": "pattern = n_phases * orientation + phase",
            "wave_vectors_cycles_per_nm": vectors.tolist(),
            "wave_vectors_cycles_per_px": (vectors * c.optics.pixel_size_nm).tolist(),
            "phases_rad": patterns.phases_rad().tolist(),
            "harmonic_coefficients": patterns.harmonic_coefficients().tolist(),
        },
        "emulator": {
            "structure": c.structure,
            "components": microscope.component_names,
            "labels_nm": {n: c.laser_for(n) for n in microscope.component_names},
            "photon_count_e": c.photon_count_e,
            "seed": c.seed,
            "dynamics": c.dynamics.model_dump(),
            "reference_power_pct": c.reference_power_pct,
            "reference_exposure_ms": c.reference_exposure_ms,
            "sr_factor": microscope.sr_factor,
            "timepoints": timepoints,
            "interval_s": interval_s,
            "gt_units": "expected photo-electrons per pixel at the reference power and exposure",
        },
        "channels": [{"laser_nm": line} for line in microscope.laser_lines_nm],
    }


def write_emulated_run(
    config: EmulatorConfig,
    timepoints: int,
    output: Path,
    interval_s: float = 1.0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Render ``timepoints`` SIM sets per laser line and write them with ground truth."""
    from acquisition import run_file

    if timepoints < 1:
        raise ValueError(f"timepoints={timepoints} must be >= 1")
    if interval_s < 0:
        raise ValueError(f"interval_s={interval_s} must be >= 0")
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists (use --overwrite to replace it)")
    microscope = Microscope(config)
    lines = microscope.laser_lines_nm
    pixel_nm = config.optics.pixel_size_nm * config.sensor.binning
    sr_pixel_nm = pixel_nm / microscope.sr_factor
    first = microscope.render_set(0.0, laser_nm=lines[0])
    truth = microscope.ground_truth(0.0, laser_nm=lines[0])
    n_channels, n_patterns = len(lines), first.shape[0]
    offset = microscope.sensor.offset_map_out_adu()
    electrons_per_adu = config.sensor.electrons_per_adu
    output.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(output, "w", libver="latest") as h5:
        raw = run_file.create_image_dataset(
            h5, run_file.RAW, first.shape[1:], (timepoints, n_channels, n_patterns),
            np.uint16, pixel_nm,
        )
        wf = run_file.create_image_dataset(
            h5, run_file.WIDEFIELD, first.shape[1:], (timepoints, n_channels), np.float32,
            pixel_nm,
        )
        gt = h5.create_group(run_file.GT_GROUP)
        gt_wf = run_file.create_image_dataset(
            gt, "wf", truth.wf.shape, (timepoints, n_channels), np.float32, pixel_nm
        )
        gt_sr = run_file.create_image_dataset(
            gt, "sr", truth.sr.shape, (timepoints, n_channels), np.float32, sr_pixel_nm
        )
        components = None
        if config.structure == "mix":
            components = run_file.create_image_dataset(
                gt, "components", truth.sr.shape, (timepoints, len(microscope.component_names)),
                np.float32, sr_pixel_nm,
            )
            components.attrs["component_names"] = microscope.component_names
        photon_count = h5.create_dataset(
            run_file.PHOTON_COUNT, shape=(timepoints, n_channels), dtype=np.float32
        )
        photon_count.attrs["unit"] = "e-"  # calibration.photon_count: detected photons
        calibration = h5.create_group(run_file.CALIBRATION_GROUP)
        calibration.create_dataset("offset_adu", data=offset)
        calibration.create_dataset(
            "gain_adu_per_e", data=microscope.sensor.crop(microscope.sensor.gain_map_adu_per_e)
        )
        calibration.create_dataset(
            "read_noise_e", data=microscope.sensor.crop(microscope.sensor.read_noise_map_e)
        )
        h5.attrs["channel_names"] = [f"{line:g} nm" for line in lines]
        run_file.write_metadata(h5, run_metadata(microscope, timepoints, interval_s))
        for t in range(timepoints):
            time_s = t * interval_s
            for c, line in enumerate(lines):
                frames = first if (t, c) == (0, 0) else microscope.render_set(time_s, line)
                raw[t, c] = frames
                mean = frames.astype(np.float32).mean(axis=0)
                wf[t, c] = mean
                photon_count[t, c] = average_photon_count(mean, offset, electrons_per_adu)
                reference = microscope.ground_truth(time_s, laser_nm=line)
                gt_wf[t, c] = reference.wf
                gt_sr[t, c] = reference.sr
            if components is not None:
                components[t] = microscope.ground_truth_components(time_s)
            h5.flush()
            if progress is not None:
                progress(t)
    logger.info("wrote %d time points x %d channels to %s", timepoints, n_channels, output)
    return output
