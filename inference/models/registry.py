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


class ArchitectureRegistry:
    """A name -> Architecture table (one instance per process, see `ARCHITECTURES`)."""

    def __init__(self) -> None:
        self._entries: dict[str, Architecture] = {}

    def register(self, architecture: Architecture) -> None:
        """Add an architecture; registering the same name twice with a different one is an error."""
        existing = self._entries.get(architecture.name)
        if existing is not None and existing != architecture:
            raise ValueError(f"architecture {architecture.name!r} is already registered")
        self._entries[architecture.name] = architecture

    def get(self, name: str) -> Architecture:
        """The architecture called `name`, or a KeyError listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown architecture {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered architecture names, sorted."""
        return sorted(self._entries)


ARCHITECTURES = ArchitectureRegistry()


def register_architecture(
    name: str,
    options_model: type[BaseModel],
    build: Callable[[Any], nn.Module],
    description: str = "",
) -> None:
    """Register a network so model files and `build_model` can name it."""
    ARCHITECTURES.register(Architecture(name, options_model, build, description))


def validate_options(architecture: str, options: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate options for an architecture, with an error naming architecture and field."""
    arch = ARCHITECTURES.get(architecture)
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
    return ARCHITECTURES.get(architecture).build(validated)
