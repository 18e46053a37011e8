"""Photon calibration of a run's camera: offset map and photons per count, for photon counts.

An emulated camera's calibration is known exactly (its sensor model), so every emulator run
records it in ``/calibration`` and hands it to the inference worker, which then reports the
average photon count (DFCAN definition) of every raw set in incident photons. Real rigs use
the protocol's camera calibration file (`livesim calibrate camera`) instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# the file format the inference worker reads (inference.worker.load_calibration)
PHOTON_CALIBRATION_FORMAT = "livesim photon calibration"


@dataclass(frozen=True)
class PhotonCalibration:
    """Offset map (ADU), incident photons per offset-subtracted ADU and defective pixels."""

    offset_adu: np.ndarray
    photons_per_count: float
    defect_mask: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.photons_per_count > 0:
            raise ValueError(f"photons_per_count={self.photons_per_count} must be > 0")
        if self.defect_mask is not None and self.defect_mask.shape != self.offset_adu.shape:
            raise ValueError(f"defect_mask {self.defect_mask.shape} and offset_adu "
                             f"{self.offset_adu.shape} differ in shape")

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X) of the maps."""
        return (int(self.offset_adu.shape[0]), int(self.offset_adu.shape[1]))

    def maps(self) -> dict[str, np.ndarray]:
        """What the run file records under ``/calibration``."""
        out: dict[str, np.ndarray] = {"offset_adu": np.asarray(self.offset_adu, np.float32),
               "photons_per_count": np.asarray(self.photons_per_count, np.float64)}
        if self.defect_mask is not None:
            out["defect_mask"] = np.asarray(self.defect_mask, np.uint8)
        return out

    def save(self, path: Path) -> Path:
        """Write the file the inference worker loads with ``--calibration``."""
        import h5py

        with h5py.File(path, "w") as h5:
            h5.attrs["format"] = PHOTON_CALIBRATION_FORMAT
            h5.attrs["source"] = self.source
            for name, array in self.maps().items():
                h5.create_dataset(name, data=array)
        return path


def emulator_photon_calibration(source: Any, frame_shape: tuple[int, int]
                                ) -> PhotonCalibration | None:
    """The emulated camera's exact calibration, or None when ``source`` is not the emulator.

    Maps come from the sensor model (offset map, hot pixels); if the camera reads out a
    different shape than the modelled sensor (a device ROI), the model's mean offset is used.
    """
    from hardware.errors import CapabilityError

    hub_of = getattr(source, "emulator_hub", None)
    if hub_of is None:
        return None
    try:
        microscope = hub_of().bench.microscope("sim")
    except CapabilityError:
        return None
    sensor = microscope.sensor
    model = sensor.model
    offset = sensor.offset_map_out_adu()
    defects = sensor.crop(sensor.hot_pixel_mask)
    if model.binning > 1 or defects.shape != tuple(frame_shape):
        defects = None
    if offset.shape != tuple(frame_shape):
        logger.info("emulated camera reads %s of a %s sensor: using its mean offset",
                    frame_shape, offset.shape)
        offset = np.full(frame_shape, model.offset_adu * model.binning**2, np.float32)
    return PhotonCalibration(offset, float(model.photons_per_count), defects,
                             source="emulator sensor model")
