"""Typed settings files: TOML read into a pydantic model, every error naming file, field and value.

One loader for every configuration a microscopist writes (protocols, emulator, Wiener, training,
SLM sequence plans, device roles), so a bad file reads the same way wherever it is loaded.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Model = TypeVar("Model", bound=BaseModel)

__all__ = ["StrictModel", "describe_validation_error", "load_settings", "read_toml",
           "validate_settings"]


class StrictModel(BaseModel):
    """A settings or record model that refuses unknown fields (a misspelt key is an error)."""

    model_config = ConfigDict(extra="forbid")


def read_toml(path: str | Path, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The TOML mapping in `path`; a missing, unreadable or bad file raises `error` naming it."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise error(f"{path}: {what} file not found") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read {what} file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: {what} file is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                    f"at offset {exc.start}); save it as UTF-8") from exc


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``source: field 'a.b' = value: reason``."""
    lines = []
    for problem in exc.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "<root>"
        value = problem.get("input")
        shown = "{...}" if isinstance(value, dict) else repr(value)
        lines.append(f"{source}: field '{field}' = {shown}: {problem['msg']}")
    return "\n".join(lines)


def validate_settings(
    model: type[Model], data: Any, source: str, error: type[Exception] = ValueError
) -> Model:
    """`data` validated as `model`; a failure raises `error` with one line per bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(describe_validation_error(exc, source)) from exc


def load_settings(
    model: type[Model],
    path: str | Path,
    what: str,
    table: str | None = None,
    error: type[Exception] = ValueError,
) -> Model:
    """Read `path` and validate it (or its `[table]`, when present) as `model`."""
    data = read_toml(path, what, error)
    if table is not None:
        data = data.get(table, data)
    return validate_settings(model, data, f"{path} ({what})", error)
