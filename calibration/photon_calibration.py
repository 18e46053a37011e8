"""Photon calibration of a run's camera: offset map and electrons per ADU, for photon counts.

A run records it in ``/calibration`` and hands it to the inference worker, which then reports
the average photon count (calibration.photon_count) of every raw set in photo-electrons (e-).
A real rig's comes from the protocol's camera calibration file (`livesim calibrate camera`);
an emulated camera's is known exactly (`sim_emulator.rig.photon_calibration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the file format the inference worker reads (inference.worker.load_calibration)
PHOTON_CALIBRATION_FORMAT = "livesim photon calibration"


@dataclass(frozen=True)
class PhotonCalibration:
    """Offset map (ADU), photo-electrons per offset-subtracted ADU and defective pixels."""

    offset_adu: np.ndarray
    electrons_per_adu: float
    defect_mask: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.electrons_per_adu > 0:
            raise ValueError(f"electrons_per_adu={self.electrons_per_adu} must be > 0")
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
               "electrons_per_adu": np.asarray(self.electrons_per_adu, np.float64)}
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

