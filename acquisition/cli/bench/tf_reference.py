"""DFCAN in livesim against the authors' TensorFlow code, side by side in one run.

The authors' model code (github qc17-THU/DL-SR) runs in its own Python with TensorFlow
(``tf_reference_driver.py``, TF1 -> TF2 renames only); livesim converts the same Keras weights
file and runs its engines here. Both get the same normalised raw SIM set. Runs are interleaved
(reference, then each livesim engine, the order reversed every other repeat) so that a change
in the machine's load hits both sides alike; each repeat gives a ratio of the same moment. The
reference process waits (blocked on its stdin) while livesim runs, and the reverse.
"""

from __future__ import annotations

import json
import logging
import os
import select
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DRIVER = Path(__file__).with_name("tf_reference_driver.py")

# livesim engines compared with the reference: label -> TorchEngine keyword arguments
REFERENCE_ENGINES: dict[str, dict[str, Any]] = {
    "torch plain": {"cpu_fusion": False, "fold_spectrum": False},
    "torch fast": {"cpu_fusion": True, "fold_spectrum": True},
    "torch bf16": {"precision": "bf16", "fold_spectrum": True},  # AMX; not a parity path
}


class ReferenceError(RuntimeError):
    """The reference process failed or did not answer in time (the message says which)."""


@dataclass
class EngineTimes:
    """Wall and CPU seconds per repeat, and the output's largest difference from the
    reference (NaN for the reference itself)."""

    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    max_abs_diff: float = float("nan")
    description: str = ""


@dataclass
class ReferenceComparison:
    """One interleaved comparison: the reference's times, each engine's, and the load."""

    input_shape: tuple[int, ...]
    reference: EngineTimes
    engines: dict[str, EngineTimes]
    reference_info: dict[str, Any]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    torch_threads: int

    def speedup(self, label: str) -> list[float]:
        """Reference wall / engine wall, repeat by repeat."""
        ref, eng = self.reference.wall_s, self.engines[label].wall_s
        return [r / e for r, e in zip(ref, eng, strict=True)]

    def lines(self) -> list[str]:
        """The report: per side median/min wall, median CPU, per-repeat speed-ups, parity."""
        n = len(self.reference.wall_s)
        out = [f"DFCAN reference comparison: input {self.input_shape}, {n} interleaved repeat(s),"
               f" TensorFlow {self.reference_info.get('tensorflow')}, torch threads "
               f"{self.torch_threads}, load average before {_load(self.load_before)}, after "
               f"{_load(self.load_after)}",
               "side | median wall s | min wall s | median CPU s | speed-up per repeat "
               "(reference wall / wall) | max |diff| vs reference"]
        rows: list[tuple[str, EngineTimes, str | None]] = [
            ("authors' TF code", self.reference, None)]
        rows += [(f"{label} ({t.description})", t, label) for label, t in self.engines.items()]
        for name, times, label in rows:
            ratios: list[float] = self.speedup(label) if label else []
            ratio_text = (", ".join(f"{r:.2f}" for r in ratios)
                          + f" (median {statistics.median(ratios):.2f})") if ratios else "-"
            diff = "-" if label is None else f"{times.max_abs_diff:.2e}"
            out.append(f"{name} | {statistics.median(times.wall_s):.2f} | "
                       f"{min(times.wall_s):.2f} | {statistics.median(times.cpu_s):.2f} | "
                       f"{ratio_text} | {diff}")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"input_shape": list(self.input_shape), "reference_info": self.reference_info,
                "reference": self.reference.__dict__,
                "engines": {k: {**v.__dict__, "speedup": self.speedup(k)}
                            for k, v in self.engines.items()},
                "load_before": self.load_before, "load_after": self.load_after,
                "torch_threads": self.torch_threads}


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


class ReferenceProcess:
    """The authors' model in its own Python (driver protocol: JSON lines over stdin/stdout)."""

    def __init__(self, python: Path, checkout: Path, weights: Path, input_nhwc: Path,
                 ready_timeout_s: float = 900.0) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
        self.process = subprocess.Popen(
            [str(python), str(DRIVER), "--checkout", str(checkout), "--weights", str(weights),
             "--input", str(input_nhwc)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        self.info = self._read(ready_timeout_s, "start-up (TensorFlow import, model, warm-up)")

    def _read(self, timeout_s: float, what: str) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            self.process.wait(timeout=10)
            stderr = self.process.stderr.read()[-2000:] if self.process.stderr else ""
            reason = "no answer" if not ready else "it exited"
            raise ReferenceError(f"reference {what}: {reason} within {timeout_s:.0f} s; "
                                 f"stderr tail: {stderr}")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, command: dict[str, Any], timeout_s: float, what: str) -> dict[str, Any]:
        """Send one command and wait (at most ``timeout_s``) for its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read(timeout_s, what)

    def close(self) -> None:
        """Ask it to quit; kill it if it does not within 10 s."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"quit": True}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=10)


def reference_input(stack_path: Path) -> np.ndarray:
    """The first SIM set of a raw stack, normalised as DFCAN's input: (1, 9, Y, X) float32."""
    from inference.model_file import Normalisation
    from inference.preprocessing import normalise
    from inference.stack_io import load_raw_stack

    frames = load_raw_stack(stack_path).frames[0]
    x, _ = normalise(frames, Normalisation())
    return np.asarray(x, dtype=np.float32)[None]


def compare_with_reference(checkout: Path, python: Path, weights: Path, stack: Path,
                           repeats: int = 5, run_timeout_s: float = 600.0,
                           engines: dict[str, dict[str, Any]] | None = None
                           ) -> ReferenceComparison:
    """Run the authors' code and livesim's engines on the same input, interleaved."""
    import torch

    from inference.engines.torch_engine import TorchEngine
    from inference.keras_weights import convert_keras_weights
    from inference.model_file import LoadedModel, ModelInfo, weights_sha256
    from inference.models.dfcan import FourierChannelAttention

    for path, what in ((checkout, "DL-SR checkout"), (python, "reference Python"),
                       (weights, "Keras weights file"), (stack, "raw stack")):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
    x = reference_input(stack)
    engines = engines if engines is not None else REFERENCE_ENGINES
    built: dict[str, tuple[TorchEngine, EngineTimes]] = {}
    for label, options in engines.items():
        options = dict(options)
        fold = options.pop("fold_spectrum", True)
        module = convert_keras_weights(weights, "dfcan", int(x.shape[1])).eval()
        for sub in module.modules():
            if isinstance(sub, FourierChannelAttention):
                sub.fold_spectrum = fold
        info = ModelInfo(name=f"{weights.stem} ({label})", architecture="dfcan",
                         options=module.options.model_dump(), mode="sim",
                         weights_sha256=weights_sha256(module.state_dict()))
        engine = TorchEngine(LoadedModel(info=info, module=module), "cpu", **options)
        built[label] = (engine, EngineTimes(description=engine.description))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="livesim-tf-ref-") as scratch:
        nhwc = Path(scratch) / "input_nhwc.npy"
        np.save(nhwc, np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))))
        reference = ReferenceProcess(python, checkout, weights, nhwc)
        try:
            outputs = {label: engine.run(x) for label, (engine, _) in built.items()}  # warm-up
            ref_times = EngineTimes(description="TensorFlow, authors' DFCAN16")
            for repeat in range(repeats):
                order = ["reference", *built]
                if repeat % 2:
                    order.reverse()
                for side in order:
                    if side == "reference":
                        got = reference.ask({"run": 1}, run_timeout_s, "run")
                        ref_times.wall_s += got["seconds"]
                        ref_times.cpu_s += got["cpu_seconds"]
                        continue
                    engine, times = built[side]
                    start, cpu_start = time.perf_counter(), time.process_time()
                    outputs[side] = engine.run(x)
                    times.wall_s.append(time.perf_counter() - start)
                    times.cpu_s.append(time.process_time() - cpu_start)
                log.info("repeat %d/%d: reference %.2f s, %s", repeat + 1, repeats,
                         ref_times.wall_s[-1], ", ".join(
                             f"{k} {t.wall_s[-1]:.2f} s" for k, (_, t) in built.items()))
            saved = Path(scratch) / "reference_output.npy"
            reference.ask({"output": str(saved)}, 60.0, "output")
            expected = np.load(saved)[..., 0]
        finally:
            reference.close()
    for label, (_, times) in built.items():
        times.max_abs_diff = float(np.abs(outputs[label] - expected).max())
    return ReferenceComparison(
        input_shape=tuple(int(d) for d in x.shape), reference=ref_times,
        engines={label: times for label, (_, times) in built.items()},
        reference_info=reference.info, load_before=load_before, load_after=os.getloadavg(),
        torch_threads=torch.get_num_threads())
