"""`livesim` training, bundled-model and assessment sub-commands (inference package)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this package's commands to the root CLI and its benchmarks to `livesim bench`."""
