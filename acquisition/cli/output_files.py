"""How a command refuses and writes: the check on its output before any work, ``error:``.

An existing output is replaced only with ``--overwrite``; a command never writes onto one of
its own inputs, not even with ``--overwrite``; the output's folder must exist and its suffix
must be one the command writes. Failures, and bad input found later, print ``error: ...`` on
stderr and exit with code 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def exit_on(*errors: type[Exception], code: int = 2) -> Iterator[None]:
    """Inside: any of ``errors`` ends the command as :func:`fail` does, with its message."""
    try:
        yield
    except errors as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code) from exc


def output_problem(output: Path, overwrite: bool, inputs: Iterable[Path | None] = (),
                   suffixes: Sequence[str] | None = None) -> str:
    """What is wrong with writing ``output`` ('' when nothing is)."""
    if suffixes is not None and output.suffix.lower() not in suffixes:
        return (f"{output}: cannot write format {output.suffix or '(no suffix)'!r}; "
                f"use one of {', '.join(suffixes)}")
    for source in inputs:
        if source is not None and _same_file(output, source):
            return f"{output}: is this command's input {source}; write the result elsewhere"
    if output.is_dir():
        return f"{output}: is a folder; give a file name"
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        return f"{output}: folder {folder} does not exist (create it first)"
    if not os.access(folder, os.W_OK):
        return f"{output}: folder {folder} is not writable"
    if output.exists() and not overwrite:
        return f"{output}: exists; add --overwrite to replace it"
    return ""


def check_output(output: Path, overwrite: bool, inputs: Iterable[Path | None] = (),
                 suffixes: Sequence[str] | None = None) -> None:
    """Exit 2 with a clear message when ``output`` must not be written (see the module)."""
    problem = output_problem(output, overwrite, inputs, suffixes)
    if problem:
        fail(problem)


def check_json_output(json_out: Path | None, overwrite: bool) -> None:
    """The ``--json`` report of a command: the same check (exit 2) when one is asked for."""
    if json_out is not None:
        check_output(json_out, overwrite)


def write_json(json_out: Path | None, report: object, indent: int = 2) -> None:
    """Write the ``--json`` report when one is asked for (values JSON lacks as text)."""
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=indent, default=str))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()
