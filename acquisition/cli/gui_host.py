"""``python -m acquisition.cli.gui_host``: the GUI's acquisition process (started by the GUI).

The composition root opens the rig (the emulator or a Micro-Manager .cfg) and hands it to
acquisition's :class:`~acquisition.session_host.SessionHost`, which answers the GUI.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

import zmq

from acquisition.session_host import (
    CameraInfo,
    LogRecordRelay,
    OpenedRig,
    RigOpener,
    SessionHost,
    serve,
)

logger = logging.getLogger(__name__)


def rig_opener(rig_spec: str, seed: int = 0, structure: str = "microtubules",
               faults_json: str = "", roles: str | None = None) -> RigOpener:
    """Opens the emulated rig (``rig_spec == 'emulator'``, optionally with injected faults as
    FaultPlan JSON) or a Micro-Manager config's rig, at a frame size."""
    if rig_spec != "emulator":
        if faults_json:
            raise ValueError("faults can only be injected into the emulator")

        def open_config(_size_px: tuple[int, int]) -> OpenedRig:
            from hardware.rig import Rig
            from hardware.roles import RoleMap

            rig = Rig.from_config(rig_spec, RoleMap.load(roles) if roles else None)
            return OpenedRig(rig, camera_constants(rig, rig_spec, 100.0, 1.0,
                                                   _core_bit_depth(rig)))
        return open_config

    def open_emulator(size_px: tuple[int, int]) -> OpenedRig:
        from sim_emulator.devices_faults import FaultPlan
        from sim_emulator.microscope import EmulatorConfig
        from sim_emulator.rig import emulated_rig, photon_calibration

        config = EmulatorConfig(size_px=size_px, seed=seed, structure=structure)  # type: ignore[arg-type]
        faults = FaultPlan.model_validate_json(faults_json) if faults_json else None
        from hardware.roles import RoleMap

        rig = emulated_rig(config, faults, RoleMap.load(roles) if roles else None)
        sensor = config.sensor
        return OpenedRig(rig, camera_constants(rig, rig_spec, sensor.offset_adu,
                                               sensor.electrons_per_adu, sensor.bit_depth),
                         photon_calibration(rig, (int(rig.camera.shape[0]),
                                                  int(rig.camera.shape[1]))))
    return open_emulator


def _core_bit_depth(rig: object) -> int:
    """The camera's ADC bit depth as Micro-Manager reports it (16 when it cannot say)."""
    core = getattr(getattr(rig, "backend", None), "core", None)
    try:
        return int(core.getImageBitDepth()) if core is not None else 16
    except (RuntimeError, ValueError, TypeError):
        return 16


def camera_constants(rig: object, rig_spec: str, offset_adu: float, electrons_per_adu: float,
                     bit_depth: int = 16) -> CameraInfo:
    """What the GUI needs for the photon count (e-): offset and electrons per ADU; and the
    camera's bit depth (its saturation value is 2**bit_depth - 1 ADU)."""
    from hardware.rig import Rig

    assert isinstance(rig, Rig)
    return CameraInfo(shape=[int(n) for n in rig.camera.shape],
                      pixel_size_nm=float(rig.camera.pixel_size_nm),
                      lines_nm=[int(n) for n in rig.aotf.lines_nm], offset_adu=float(offset_adu),
                      electrons_per_adu=float(electrons_per_adu), bit_depth=int(bit_depth),
                      rig=rig_spec)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m acquisition.cli.gui_host``."""
    parser = argparse.ArgumentParser(description="livesim GUI acquisition process")
    parser.add_argument("--control", required=True, help="REP endpoint to bind")
    parser.add_argument("--display", required=True, help="display PUB endpoint to bind")
    parser.add_argument("--folder", required=True, type=Path, help="scratch folder (ipc)")
    parser.add_argument("--rig", default="emulator", help="'emulator' or a Micro-Manager .cfg")
    parser.add_argument("--size-px", default="128,128", help="emulator frame Y,X")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--structure", default="microtubules")
    parser.add_argument("--live-interval-s", type=float, default=0.05)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--faults", default="", help="emulator FaultPlan as JSON (tests)")
    parser.add_argument("--roles", default=None,
                        help="role map: shipped profiles and/or TOML files, '+'-joined")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ny, nx = (int(n) for n in args.size_px.split(","))
    emulator = args.rig == "emulator"
    try:
        host = SessionHost(rig_opener(args.rig, args.seed, args.structure, args.faults,
                                      args.roles),
                           args.folder, (ny, nx), resizable=emulator,
                           live_interval_s=args.live_interval_s, display_endpoint=args.display,
                           metadata={"emulator_seed": args.seed if emulator else None})
    except (RuntimeError, OSError, ValueError, zmq.ZMQError) as exc:
        # the cause is the log's last error line (the GUI shows it); _exit skips the teardown
        # of the rig's half-started C++ threads, which aborted the process now and then
        logger.error("cannot start the acquisition process: %s.%s: %s",
                     type(exc).__module__, type(exc).__name__, exc)
        logging.shutdown()
        os._exit(1)
    logging.getLogger().addHandler(LogRecordRelay(host.events))
    free = shutil.disk_usage(args.folder).free
    logger.info("acquisition process ready (camera %s, %.1f GB free)", host.camera["shape"],
                free / 1e9)
    serve(host, args.control, args.parent_pid)


if __name__ == "__main__":
    main()
