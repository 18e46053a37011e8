"""The CLI's vocabulary: every option that several commands take, defined once.

docs/cli.md's glossary lists them. A command module imports this one as ``opt`` and declares
``overwrite: opt.Overwrite = False``: the name, short flag and help come from here, the default
stays with the command (it differs between commands). Where a command needs another type
(``int | None``), it uses the option itself: ``Annotated[int | None, opt.TIME_POINTS] = None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OVERWRITE = typer.Option("--overwrite", help="Replace an existing output.")
JSON = typer.Option("--json", help="Also write the figures as JSON to this file.")
SIZE_PX = typer.Option("--size-px", min=8, max=8192,
                       help="Frame edge in pixels (square), 8 to 8192.")
TIME_POINTS = typer.Option("--time-points", "-t", min=1, help="Time points (SIM sets).")
THREADS = typer.Option("--threads", help="Torch CPU threads (0: leave as is).")
RECONSTRUCTION = typer.Option(
    "--model", "-m", help="Reconstruction: auto (the network inside its training domain, Wiener "
                          "SIM elsewhere), auto:NAME, a bundled model name or .pt file, wiener "
                          "or none.")
DEVICE = typer.Option("--device", help="cpu, cuda or auto.")
ROLES = typer.Option("--roles", help="Role map: shipped profiles and/or TOML files, '+'-joined "
                                     "(e.g. hamamatsu-dcam+triggerscope).")
FSYNC = typer.Option("--fsync/--no-fsync", help="fsync the run file at every time point.")
TRUST_EVERY = typer.Option("--trust-every", min=0,
                           help="Trust record (/qc) of every Nth SR image per channel; 0: off.")
SEED = typer.Option("--seed", help="Random seed.")
EMULATOR = typer.Option("--emulator", help="Use the emulated rig (bundled defaults).")
CHANNEL = typer.Option("--channel", help="Colour channel of a .h5 run file (0-based).")
SCRATCH_FOLDER = typer.Option("--folder", exists=True, file_okay=False, dir_okay=True,
                              writable=True, help="An existing folder for the run files (a "
                                                  "temporary folder when not given).")

Overwrite = Annotated[bool, OVERWRITE]
JsonOut = Annotated[Path | None, JSON]
SizePx = Annotated[int, SIZE_PX]
TimePoints = Annotated[int, TIME_POINTS]
Threads = Annotated[int, THREADS]
Reconstruction = Annotated[str, RECONSTRUCTION]
Device = Annotated[str, DEVICE]
Roles = Annotated[str | None, ROLES]
Fsync = Annotated[bool, FSYNC]
TrustEvery = Annotated[int, TRUST_EVERY]
Seed = Annotated[int, SEED]
Emulator = Annotated[bool, EMULATOR]
Channel = Annotated[int, CHANNEL]
ScratchFolder = Annotated[Path | None, SCRATCH_FOLDER]
RawStackPath = Annotated[Path, typer.Argument(help="Raw stack: .mrc, .tif, .npy or livesim .h5.")]

# a raw stack's optics: from its file unless given (resolve_optics in wiener_commands)
StackNa = Annotated[float | None, typer.Option(
    "--na", help="Detection NA (default: from the file; an error when it has none).")]
StackOtf = Annotated[Path | None, typer.Option(
    "--otf", help="Measured radial OTF (.mrc, e.g. the rig's *_OTF2d.mrc) instead of --na.")]
StackWavelengthNm = Annotated[float | None, typer.Option(
    "--wavelength-nm", help="Emission wavelength (default: from the file's laser line).")]
StackPixelSizeNm = Annotated[float | None, typer.Option(
    "--pixel-size-nm", help="Raw pixel size (default: from the file).")]
