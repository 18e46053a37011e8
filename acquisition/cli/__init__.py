"""The `livesim` command line: the composition root that gathers every package's commands.

Each package contributes its sub-commands through a ``register(app, bench)`` function in the
modules of ``COMMAND_MODULES``; the imports happen here, inside ``build_app``, so the layering
of the packages stays one-way.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os

import typer

# OpenMP threads (torch's CPU kernels) sleep instead of spinning while they wait for each other.
# On a loaded machine a spinning thread holds a core its descheduled partner needs: DFCAN on the
# CPU took ~40 % more CPU per frame and 2-3x the time (docs/benchmarks.md). Read when torch loads,
# so it is set here, before any command module imports torch; worker processes inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMAND_MODULES = (
    "acquisition.cli.emulator_commands",
    "acquisition.cli.rig_commands",
    "acquisition.cli.calibration_commands",
    "acquisition.cli.inference_commands",
    "acquisition.cli.wiener_commands",
    "acquisition.cli.training_commands",
    "acquisition.cli.imc_commands",
    "acquisition.cli.reprocess_commands",
    "acquisition.cli.run_commands",
    "acquisition.cli.export_commands",
    "acquisition.cli.gui_commands",
    "acquisition.cli.bench.soak",
    "acquisition.cli.bench.all_benchmarks",
    "acquisition.cli.bench.gpu",
    "acquisition.cli.bench.workers",
    "acquisition.cli.bench.autopilot",
)


def build_app() -> typer.Typer:
    """Build the CLI with every package's commands and the `bench` group."""
    root = typer.Typer(
        name="livesim",
        help="Live structured-illumination microscopy: acquisition, DL super-resolution, GUI.",
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,  # plain help: flags without a value placeholder, [required] shown
    )
    bench = typer.Typer(help="Benchmarks: each times a stage beside its bare limit.",
                        no_args_is_help=True, rich_markup_mode=None)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(root, bench)
    root.add_typer(bench, name="bench")

    @root.callback()
    def _main(
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
        _version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                      help="Print the livesim version and exit."),
    ) -> None:
        level = logging.DEBUG if verbose else logging.INFO
        # The level sits on the handler too: importing pymmcore-plus lowers the root logger
        # to DEBUG, which would otherwise flood the console.
        console = logging.StreamHandler()
        console.setLevel(level)
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            handlers=[console],
        )
        if not verbose:  # pymmcore-plus also logs at DEBUG through its own handler
            logging.getLogger("pymmcore-plus").setLevel(logging.INFO)

    return root


def _print_version(value: bool) -> None:
    if value:
        try:
            version = importlib.metadata.version("livesim")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        typer.echo(f"livesim {version}")
        raise typer.Exit()


def app() -> None:
    """Console-script entry point."""
    build_app()()


