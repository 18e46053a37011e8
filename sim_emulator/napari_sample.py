"""napari sample data (npe2 ``sample_data`` of the ``livesim`` plugin): one emulated SIM set.

Raw patterns, their wide-field mean and the ground-truth SR image of the emulator's default
sample, scaled in micrometres. Imports neither napari nor Qt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim_emulator.microscope import EmulatorConfig, Microscope

SAMPLE_SIZE_PX = 128


def emulated_sim_set(size_px: int = SAMPLE_SIZE_PX, seed: int = 0
                     ) -> list[tuple[Any, dict[str, Any], str]]:
    """Layer data: raw (pattern, y, x) uint16, wide-field mean, ground-truth SR (2x grid)."""
    config = EmulatorConfig(size_px=size_px, seed=seed)
    microscope = Microscope(config)
    laser_nm = microscope.laser_lines_nm[0]
    raw = microscope.render_set(0.0, laser_nm=laser_nm)
    truth = microscope.ground_truth(0.0, laser_nm=laser_nm)
    pixel_um = config.optics.pixel_size_nm * config.sensor.binning / 1000.0
    sr_pixel_um = pixel_um * raw.shape[-1] / truth.sr.shape[-1]
    common = {"blending": "additive", "metadata": {"source": "livesim emulator", "seed": seed}}
    return [
        (raw, {**common, "name": f"raw {laser_nm:g} nm", "colormap": "gray", "visible": False,
               "scale": (1.0, pixel_um, pixel_um), "axis_labels": ("pattern", "y", "x")},
         "image"),
        (raw.astype(np.float32).mean(axis=0),
         {**common, "name": "wide-field", "colormap": "green", "scale": (pixel_um, pixel_um),
          "axis_labels": ("y", "x")}, "image"),
        (truth.sr, {**common, "name": "ground truth SR", "colormap": "magenta",
                    "scale": (sr_pixel_um, sr_pixel_um), "axis_labels": ("y", "x")}, "image"),
    ]
