"""`livesim` sub-commands contributed by the `calibration` package.

`livesim calibrate camera`. (`livesim calibrate pattern`, `livesim reconstruct` and `livesim bench
wiener` live in `acquisition/cli/wiener_commands.py`, beside the stack readers and Wiener SIM
they use.) Heavy imports live inside the command functions so `livesim --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_output, exit_on, fail

SAFE_POWER_PCT = 5.0  # default flat-series power: enough on a fluorescent slide, eye-safe-ish
MAX_UNCONFIRMED_POWER_PCT = 20.0  # above this a real rig's calibration asks first


def calibrate_camera_command(
    output: Path = typer.Option(..., "--output", "-o", help="calibration file (.h5)"),
    emulator: opt.Emulator = False,
    config: Path = typer.Option(None, "--config", "-c", help="Micro-Manager .cfg of the rig"),
    roles: opt.Roles = None,
    laser_nm: int = typer.Option(488, "--laser-nm", help="laser line for the flat series"),
    power_pct: float | None = typer.Option(
        None, "--power-pct",
        help=f"laser power for the flat series (default {SAFE_POWER_PCT:g} % on a rig, 100 % "
             f"on the emulator; above {MAX_UNCONFIRMED_POWER_PCT:g} % a rig asks first)"),
    confirm_power: bool = typer.Option(
        False, "--confirm-power", help="allow a --power-pct above the cap without asking"),
    frames: int = typer.Option(200, "--frames", help="frames per exposure level"),
    size_px: opt.SizePx = 64,  # the emulated sensor (--emulator only)
    plot: Path = typer.Option(
        None, "--plot", help="photon-transfer PNG (default: next to the output)"
    ),
    overwrite: opt.Overwrite = False,
) -> None:
    """EMVA-style photon-transfer calibration: dark + flat series, per-pixel maps, PTC plot.

    On a real rig the flat series needs a still, bright specimen (a fluorescent slide).
    """
    check_output(output, overwrite, inputs=[config], suffixes=(".h5", ".hdf5"))
    import logging

    from calibration.camera_calibration import calibrate_camera, plot_photon_transfer
    from hardware.errors import RigError
    from hardware.rig import Rig
    from sim_emulator.rig import emulated_rig

    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    if emulator == (config is not None):
        fail("give exactly one of --emulator or --config RIG.cfg")
    if power_pct is None:
        power_pct = 100.0 if emulator else SAFE_POWER_PCT
    capped = power_pct > MAX_UNCONFIRMED_POWER_PCT and not confirm_power and not emulator
    if capped and not typer.confirm(f"{laser_nm} nm at {power_pct:g} % laser power is above "
                                    f"the {MAX_UNCONFIRMED_POWER_PCT:g} % cap: is the light "
                                    "path safe?"):
            fail("laser power not confirmed (use --confirm-power)")
    if frames < 2:
        fail(f"--frames {frames} must be >= 2")
    with exit_on(RigError, ValueError, FileNotFoundError):
        if emulator:
            from sim_emulator.microscope import EmulatorConfig
            from sim_emulator.optics import Optics
            from sim_emulator.samples import Dynamics

            still = Dynamics(
                drift_nm_per_s=(0.0, 0.0),
                diffusion_nm2_per_s=0.0,
                growth_nm_per_s=0.0,
                bleach_rate_per_s=0.0,
                bleach_per_dose=0.0,  # a photostable slide
            )
            emulated = EmulatorConfig(
                size_px=size_px,
                structure="er",  # a still, hazy ER network lights every pixel
                optics=Optics(background_fraction=1.0),
                dynamics=still,
            )
            rig = emulated_rig(emulated)
            # the emulated camera need not wait out its exposures for a calibration: the
            # ladder's long flats (up to ~1 s x frames) would take minutes of idle waiting
            rig.backend.set_property(rig.camera.label, "HoldExposure", "No")
        else:
            from hardware.roles import RoleMap

            rig = Rig.from_config(config, RoleMap.load(roles) if roles else None)
        with rig:
            calibration = calibrate_camera(rig, laser_nm, power_pct, n_frames=frames)
    calibration.save(output)
    png = plot_photon_transfer(calibration, plot or output.with_suffix(".png"))
    typer.echo(
        f"{output}: {calibration.shape[1]}x{calibration.shape[0]} px, "
        f"gain {calibration.median_gain_adu_per_e:.4f} ADU/e, "
        f"read noise {calibration.median_read_noise_e:.2f} e, "
        f"dark current {calibration.median_dark_current_e_per_s:.3f} e/s, "
        f"full well {calibration.full_well_e:.0f} e, "
        f"linearity {calibration.linearity_error_pct:.2f} %, "
        f"{int(calibration.defect_mask.sum())} defect pixels; plot {png}"
    )
