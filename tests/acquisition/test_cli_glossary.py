"""docs/cli.md's glossary is the CLI's vocabulary: shared options are listed, retired names gone."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import typer

from acquisition.cli import build_app

GLOSSARY = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
RETIRED = ("--size", "--timepoints", "--emulator-size", "--init-from", "--max-minutes",
           "--max-seconds", "--run-seconds", "--minutes", "--budget-s", "--seconds")


def options() -> Iterator[tuple[str, tuple[str, ...]]]:
    """(command path, option names) of every option of every command."""
    def walk(command: object, path: str) -> Iterator[tuple[str, tuple[str, ...]]]:
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}".strip())
        for param in getattr(command, "params", []):
            if type(param).__name__.endswith("Option"):
                yield path, tuple(param.opts) + tuple(param.secondary_opts)
    yield from walk(typer.main.get_command(build_app()), "")


def test_every_shared_option_is_in_the_glossary() -> None:
    listed = set(re.findall(r"`(--?[a-z0-9-]+)`", GLOSSARY.read_text(encoding="utf-8")))
    uses = Counter(name for _, names in options() for name in names if name.startswith("--"))
    shared = {name for name, n in uses.items() if n >= 2 and name != "--help"}
    assert shared - listed == set()


def test_retired_names_and_double_meanings_are_gone() -> None:
    found = list(options())
    assert [(path, names) for path, names in found if set(names) & set(RETIRED)] == []
    # a short flag means one long option everywhere (-m is --model only, -t --time-points)
    meaning: dict[str, set[str]] = {}
    for _, names in found:
        longs = [n for n in names if n.startswith("--")]
        for short in (n for n in names if re.fullmatch(r"-[a-zA-Z]", n)):
            meaning.setdefault(short, set()).update(longs[:1])
    assert {s: m for s, m in meaning.items() if len(m) > 1} == {}
    assert meaning["-m"] == {"--model"} and meaning["-t"] == {"--time-points"}
