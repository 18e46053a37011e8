"""The package layering of docs/architecture.md, checked on the source (runtime imports only).

Composition modules (the CLI, `*commands.py`, benchmarks) may import any package: they are
what ties the packages together. Every other module may import only the packages (or the
named leaf modules) below it, so no import cycle between packages can creep in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "settings_file", "calibration", "hardware", "sim_emulator", "inference", "acquisition", "gui"
)

# package -> project modules (prefixes) its library modules may import at run time
ALLOWED: dict[str, tuple[str, ...]] = {
    "settings_file": (),
    "calibration": ("settings_file",),
    "hardware": ("settings_file",),
    "sim_emulator": ("settings_file", "hardware", "calibration", "acquisition.run_file"),
    "inference": ("settings_file", "calibration", "sim_emulator", "acquisition.wire",
                  "acquisition.transport", "acquisition.run_file"),
    "acquisition": ("settings_file", "hardware", "calibration", "sim_emulator", "inference"),
    "gui": ("settings_file", "acquisition", "hardware", "calibration", "sim_emulator", "inference"),
}
# leaf modules other packages import: they must stay free of higher-layer imports
LEAVES = ("acquisition.wire", "acquisition.transport", "acquisition.run_file")


def is_composition(path: Path) -> bool:
    """The CLI root (commands and benchmarks), which assembles packages and may import any."""
    return path.relative_to(ROOT).parts[:2] == ("acquisition", "cli")


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skipped.update(id(n) for n in ast.walk(inner))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in PACKAGES:  # `from acquisition import run_file`
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    """Every import in `package`'s library modules that the layering does not allow."""
    bad: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if is_composition(path):
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        allowed = ALLOWED[package]
        if module in LEAVES:
            allowed = ("acquisition.wire",)
        for line, target in runtime_imports(path):
            top = target.split(".")[0]
            if top not in PACKAGES or (top == package and module not in LEAVES):
                continue
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_library_modules_import_only_lower_layers(package: str) -> None:
    assert violations(package) == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gui.app\n"
        "def f():\n    from inference.worker import run\n"
    )
    assert runtime_imports(source) == [(1, "typing"), (5, "inference.worker")]
