"""The `livesim` command line: the composition root that gathers every package's commands.

``COMMANDS`` is the whole CLI: every command, the group it sits in and the function that runs
it. The command modules are imported here, inside ``build_app``, so the layering of the
packages stays one-way.
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

GROUPS = {  # group -> its help; "" is the root
    "rig": "The rig: conformance checks of its devices.",
    "calibrate": "Calibrations: camera photon transfer (offset, gain, noise maps); SIM pattern.",
    "bench": "Benchmarks: each times a stage beside its bare limit.",
}
COMMANDS = (  # (group, command, "module:function" under acquisition.cli), in help order
    ("", "emulate", "emulator_commands:emulate_command"),
    ("", "stack-statistics", "emulator_commands:stack_statistics_command"),
    ("", "training-pairs", "emulator_commands:training_pairs_command"),
    ("bench", "emulator", "emulator_commands:bench_emulator_command"),
    ("rig", "check", "rig_commands:rig_check"),
    ("bench", "camera", "rig_commands:bench_camera"),
    ("calibrate", "camera", "calibration_commands:calibrate_camera_command"),
    ("", "convert-weights", "inference_commands:convert_weights"),
    ("", "predict", "inference_commands:predict"),
    ("bench", "inference", "inference_commands:bench_inference"),
    ("", "reconstruct", "wiener_commands:reconstruct_command"),
    ("bench", "wiener", "wiener_commands:bench_wiener_command"),
    # in `calibrate`, not in the calibration package: it reads stacks (inference)
    ("calibrate", "pattern", "wiener_commands:calibrate_pattern_command"),
    ("", "train", "training_commands:train"),
    ("", "models", "training_commands:models"),
    ("", "evaluate", "training_commands:evaluate"),
    ("", "evaluate-real", "training_commands:evaluate_real"),
    ("", "imc-live-fields", "imc_commands:imc_live_fields"),
    ("", "imc-assess-live", "imc_commands:imc_assess_live"),
    ("", "imc-domain-limit", "imc_commands:imc_domain_limit"),
    ("", "imc-assess", "imc_commands:imc_assess"),
    ("", "imc-cross-talk", "imc_commands:imc_cross_talk"),
    ("bench", "imcsr", "imc_commands:bench_imcsr_command"),
    ("", "reprocess", "reprocess_commands:reprocess_command"),
    ("", "run", "run_commands:run_command"),
    ("", "infer", "run_commands:infer_command"),
    ("", "demo", "run_commands:demo_command"),
    ("", "recover", "run_commands:recover_command"),
    ("bench", "pipeline", "run_commands:bench_pipeline_command"),
    ("", "export", "export_commands:export_command"),
    ("", "gui", "gui_commands:gui_command"),
    ("bench", "gui", "gui_commands:bench_gui_command"),
    ("", "soak", "bench.soak:soak_command"),
    ("bench", "all", "bench.all_benchmarks:bench_all_command"),
    ("bench", "gpu", "bench.gpu:bench_gpu_command"),
    ("bench", "workers", "bench.workers:bench_workers_command"),
    ("bench", "autopilot", "bench.autopilot:bench_autopilot_command"),
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
    groups = {"": root} | {name: typer.Typer(help=text, no_args_is_help=True,
                                             rich_markup_mode=None)
                           for name, text in GROUPS.items()}
    for group, command, target in COMMANDS:
        module, function = target.split(":")
        groups[group].command(command)(
            getattr(importlib.import_module(f"acquisition.cli.{module}"), function))
    for name in GROUPS:
        root.add_typer(groups[name], name=name)

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


