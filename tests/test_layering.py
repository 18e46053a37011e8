"""The package layering of design.md as contracts, checked on every import of every module.

Every import counts: module level, inside functions, under ``if TYPE_CHECKING:``, relative
imports and ``importlib.import_module("...")`` with a literal name. Only the composition root,
the CLI package ``acquisition.cli`` (its commands and the ``bench`` folder), may import every
package. An exception is one (module, imported module) pair with the reason it is allowed;
there are none by file name or pattern.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "settings_file", "calibration", "hardware", "sim_emulator", "inference", "acquisition", "gui"
)
COMPOSITION_ROOT = "acquisition.cli"
# acquisition's format modules (wire header, transport, run-file layout): what the worker and
# the emulator share with acquisition; they import only each other
# the wire, its transport (the shared-memory raw ring and the workers' result rings are part
# of it) and run-file names
FORMAT_MODULES = ("acquisition.wire", "acquisition.transport", "acquisition.raw_ring",
                  "acquisition.result_ring", "acquisition.run_file")

# package -> the packages (or modules) its modules may import; their own package is implied
CONTRACTS: dict[str, tuple[str, ...]] = {
    "settings_file": (),
    "hardware": ("settings_file",),
    "calibration": ("settings_file", "hardware"),
    "sim_emulator": ("settings_file", "hardware", "calibration", *FORMAT_MODULES),
    "inference": ("settings_file", "calibration", "sim_emulator", *FORMAT_MODULES),
    "acquisition": ("settings_file", "hardware", "calibration"),
    "gui": ("settings_file", "acquisition"),
}

# (importing module, imported module) -> why this one import is allowed
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("gui.pattern_check", "calibration.sim_parameters"):
        "the pattern check estimates pattern parameters of the set on screen in the window "
        "process, with the same estimator a recording uses; acquisition has no use for it",
    ("gui.main_window", "calibration.photon_count"):
        "the photon-count readout of the displayed set uses the one photon-count definition",
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _inside(target: str, allowed: str) -> bool:
    return target == allowed or target.startswith(allowed + ".")


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every project import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base in PACKAGES or base.endswith(".cli") or base.endswith(".bench"):
                # `from acquisition import run_file`: the names may be modules
                found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, base))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in {"importlib.import_module", "import_module",
                                              "__import__"}):
            found.append((node.lineno, node.args[0].value))
    return sorted((line, name) for line, name in found if name.split(".")[0] in PACKAGES)


def allowed(module: str, target: str) -> bool:
    """True when ``module`` may import ``target`` under the contracts."""
    if _inside(module, COMPOSITION_ROOT):
        return True
    if _inside(target, COMPOSITION_ROOT):
        return False  # nothing imports the CLI root
    if (module, target) in EXCEPTIONS:
        return True
    if module in FORMAT_MODULES:
        return any(_inside(target, f) for f in FORMAT_MODULES)
    package = module.split(".")[0]
    if target.split(".")[0] == package:
        return True
    return any(_inside(target, a) for a in CONTRACTS[package])


def violations(package: str, root: Path = ROOT) -> list[str]:
    """Every import in ``package`` that the contracts do not allow."""
    bad: list[str] = []
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(path, root)
        for line, target in imports(path, root):
            if not allowed(module, target):
                bad.append(f"{path.relative_to(root).as_posix()}:{line} imports {target}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_every_import_keeps_to_the_layering(package: str) -> None:
    assert violations(package) == []


def test_every_exception_is_still_used() -> None:
    used = {(module_name(p), t) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            for _, t in imports(p)}
    assert set(EXCEPTIONS) <= used, set(EXCEPTIONS) - used


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "hardware" / "probe.py"
    source.parent.mkdir()
    source.write_text(
        "import numpy\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gui.app\n"
        "def f():\n    from inference.worker import run\n"
        "from acquisition import run_file\nfrom . import rig\n"
        "import importlib\nimportlib.import_module('sim_emulator.devices')\n")
    assert imports(source, tmp_path) == [(4, "gui.app"), (6, "inference.worker"),
                               (7, "acquisition.run_file"), (8, "hardware.rig"),
                               (10, "sim_emulator.devices")]
    assert violations("hardware", tmp_path) == [
        "hardware/probe.py:4 imports gui.app", "hardware/probe.py:6 imports inference.worker",
        "hardware/probe.py:7 imports acquisition.run_file",
        "hardware/probe.py:10 imports sim_emulator.devices"]


def test_the_contracts_match_the_design() -> None:
    assert not allowed("gui.main_window", "hardware.rig")
    assert not allowed("gui.app", "sim_emulator.microscope")
    assert not allowed("acquisition.session", "inference.worker")
    assert not allowed("acquisition.recorder", "sim_emulator.microscope")
    assert not allowed("acquisition.session", "acquisition.cli.run_commands")
    assert not allowed("sim_emulator.emulated_run", "acquisition.session")
    assert allowed("sim_emulator.emulated_run", "acquisition.run_file")
    assert not allowed("acquisition.wire", "acquisition.session")
    assert allowed("acquisition.cli.bench.display", "gui.main_window")
