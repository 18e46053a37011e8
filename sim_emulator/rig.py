"""The emulated rig: a `hardware.rig.Rig` loaded from the emulator's own Micro-Manager .cfg.

The .cfg (``sim_emulator/configs/emulator.cfg``) loads the Python devices of
`sim_emulator.devices` through ``#py`` lines, so the rig runs the same code path as a real one;
hardware never names the emulator. The helpers here reach the emulator's parts through the rig:
its hub device, the optical bench the devices share, and the camera's exact photon calibration.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from calibration.photon_calibration import PhotonCalibration
from hardware.core_adapter import UniCoreBackend
from hardware.errors import CapabilityError
from hardware.rig import Rig
from hardware.roles import RoleMap
from sim_emulator.devices import EmulatorHub
from sim_emulator.devices_faults import FaultPlan
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.optical_bench import OpticalBench

logger = logging.getLogger(__name__)

EMULATOR_CFG = Path(__file__).resolve().parent / "configs" / "emulator.cfg"


def emulated_rig(config: EmulatorConfig | None = None, faults: FaultPlan | None = None,
                 roles: RoleMap | None = None) -> Rig:
    """The emulated rig (its .cfg) with a forward-model configuration and injected faults."""
    rig = Rig.from_config(EMULATOR_CFG, roles, find_adapters=False)
    emulator_hub(rig).configure(config, faults)
    return rig


def emulator_hub(rig: Rig) -> EmulatorHub:
    """The rig's emulator hub device (CapabilityError on a rig that is not the emulator)."""
    if not isinstance(rig.backend, UniCoreBackend):
        raise CapabilityError("this rig is not the emulator (no Python devices)")
    hub = rig.backend.python_device(rig.roles.trigger or "Emulator")
    if not isinstance(hub, EmulatorHub):
        raise CapabilityError(f"device {rig.roles.trigger!r} is not an emulator hub")
    return hub


def optical_bench(rig: Rig) -> OpticalBench:
    """The optical bench of an emulated rig (display log, forward model, faults)."""
    return emulator_hub(rig).bench


def photon_calibration(rig: Rig, frame_shape: tuple[int, int]) -> PhotonCalibration:
    """The emulated camera's exact calibration (offset map, electrons per ADU, hot pixels).

    Maps come from the sensor model; if the camera reads out a different shape than the
    modelled sensor (a device ROI), the model's mean offset is used.
    """
    sensor = optical_bench(rig).microscope("sim").sensor
    model = sensor.model
    offset = sensor.offset_map_out_adu()
    defects: np.ndarray | None = sensor.crop(sensor.hot_pixel_mask)
    if model.binning > 1 or defects is None or defects.shape != tuple(frame_shape):
        defects = None
    if offset.shape != tuple(frame_shape):
        logger.info("emulated camera reads %s of a %s sensor: using its mean offset",
                    frame_shape, offset.shape)
        offset = np.full(frame_shape, model.offset_adu * model.binning**2, np.float32)
    return PhotonCalibration(offset, float(model.electrons_per_adu), defects,
                             source="emulator sensor model")
