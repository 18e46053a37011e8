"""`livesim bench all`: every benchmark in one run, written to docs/benchmarks.md (stub)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add `livesim bench all`."""
