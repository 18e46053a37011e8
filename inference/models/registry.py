"""Architecture registry: name -> (options model, builder), so new networks plug in by name.

IMC-SR and training register their own architectures with `register_architecture`; the model
file stores the name and the options, and `build_model` rebuilds the network from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """A registered network: its options model and a builder taking validated options."""

    name: str
    options_model: type[BaseModel]
    build: Callable[[Any], nn.Module]
    description: str = ""


# name -> registered network (one table per process)
ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    options_model: type[BaseModel],
    build: Callable[[Any], nn.Module],
    description: str = "",
) -> None:
    """Register a network so model files and `build_model` can name it; registering the same
    name twice with a different network is an error."""
    architecture = Architecture(name, options_model, build, description)
    if ARCHITECTURES.get(name, architecture) != architecture:
        raise ValueError(f"architecture {name!r} is already registered")
    ARCHITECTURES[name] = architecture


def _architecture(name: str) -> Architecture:
    """The architecture called `name`, or a KeyError listing the known names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise KeyError(f"unknown architecture {name!r}; known: {known}") from None


def validate_options(architecture: str, options: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate options for an architecture, with an error naming architecture and field."""
    arch = _architecture(architecture)
    if isinstance(options, arch.options_model):
        return options
    raw = options.model_dump() if isinstance(options, BaseModel) else dict(options)
    try:
        return arch.options_model.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid options for architecture {architecture!r}: {exc}") from exc


def build_model(
    architecture: str, options: Mapping[str, Any] | BaseModel | None = None
) -> nn.Module:
    """Build the named network from its options (defaults when None)."""
    validated = validate_options(architecture, options or {})
    return _architecture(architecture).build(validated)
