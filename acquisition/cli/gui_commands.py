"""`livesim` sub-commands contributed by the `gui` package: `livesim gui`, `livesim bench gui`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquisition.cli import options as opt


def gui_command(
    protocol_file: Path | None = typer.Argument(None, help="Protocol TOML to load."),
    emulator: opt.Emulator = False,
    config: Path | None = typer.Option(None, "--config", help="Micro-Manager rig .cfg."),
    roles: opt.Roles = None,
    size_px: Annotated[int | None, opt.SIZE_PX] = None,
    structure: str = typer.Option("microtubules", "--structure", help="Emulated sample."),
    model: str | None = typer.Option(
        None, "--model", help="Reconstruction: auto (the default), dfcan-sim, dfgan-sim, "
                            "dfcan-sisr, wiener, none."),
    imc: bool = typer.Option(False, "--imc", help="Turn IMC-SR on at start."),
    live: bool = typer.Option(False, "--live", help="Start live view at once."),
    screenshot: Path | None = typer.Option(None, "--screenshot", help="Save a PNG and exit."),
    time_limit_s: float = typer.Option(0.0, "--time-limit-s", help="Quit after this long."),
    settings_file: Path | None = typer.Option(None, "--settings", help="Settings .ini file."),
    attach: Path | None = typer.Option(
        None, "--attach", help="Watch a running `livesim run` (its .h5 file), read-only."),
    niceness: int = typer.Option(
        0, "--niceness", min=0, max=19,
        help="Lower the window's CPU priority (acquisition wins; the display drops frames)."),
) -> None:
    """The live-session window (pyqtgraph): live raw/SR/IMC views, pattern check, recording."""
    from gui.app import GuiOptions, offscreen_if_headless, run_gui
    from gui.protocol_editor import RECONSTRUCTIONS

    if emulator and config is not None:
        raise typer.BadParameter("give --emulator or --config, not both")
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"--config {config}: no such file")
    if roles is not None:
        from hardware.errors import ConfigError
        from hardware.roles import RoleMap

        try:
            RoleMap.load(roles)
        except ConfigError as exc:
            raise typer.BadParameter(f"--roles: {exc}") from exc
    if protocol_file is not None and not protocol_file.is_file():
        raise typer.BadParameter(f"{protocol_file}: no such protocol file")
    if model is not None and model not in RECONSTRUCTIONS.values():
        raise typer.BadParameter(f"--model {model!r}: choose one of "
                                 f"{', '.join(RECONSTRUCTIONS.values())}")
    endpoint = None
    if attach is not None:
        from gui.host_link import display_endpoint_of_run

        try:
            endpoint = display_endpoint_of_run(attach)
        except ValueError as exc:
            raise typer.BadParameter(f"--attach: {exc}") from exc
    if screenshot is not None:
        offscreen_if_headless()
    code = run_gui(GuiOptions(rig=str(config) if config else "emulator", roles=roles,
                              protocol_file=protocol_file, size_px=size_px, structure=structure,
                              screenshot=screenshot, run_seconds=time_limit_s,
                              settings_file=settings_file, autostart=live, imc=imc,
                              model=model, attach=endpoint, niceness=niceness))
    if screenshot is not None:
        typer.echo(f"screenshot: {screenshot}")
    raise typer.Exit(code)


def bench_gui_command(
    seconds: float = typer.Option(10.0, "--time-limit-s", help="How long to measure."),
    sr_px: int = typer.Option(1024, "--sr-px", help="SR view size (square)."),
    niceness: int | None = typer.Option(
        None, "--niceness", min=0, max=19,
        help="Window CPU priority below the pipeline (default: as `livesim gui`, 0)."),
) -> None:
    """Offscreen display updates/s of a 1024x1024 SR view plus the raw view."""
    from acquisition.cli.bench.display import run_display_bench
    from gui.app import offscreen_if_headless

    offscreen_if_headless()
    result = run_display_bench(seconds, sr_px, niceness=niceness)
    for line in result.lines():
        typer.echo(line)
