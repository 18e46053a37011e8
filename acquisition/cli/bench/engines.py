"""`livesim bench inference`: SR frames/s and latency per engine, model and image size."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from acquisition.cli.bench.timing import time_calls
from inference.engines import BackendUnavailableError, make_engine, resolve_device
from inference.model_file import BUNDLED_NAMES, LoadedModel, ModelInfo, load_model, weights_sha256
from inference.models import build_model

log = logging.getLogger(__name__)

# Full-size random-weight stand-ins ('<name>-full', or a bundled name that is not installed):
# the authors' architecture at full cost; architecture, options, mode.
RANDOM_STANDINS = {
    "dfcan-sim": ("dfcan", {"input_channels": 9}, "sim"),
    "dfcan-sisr": ("dfcan", {"input_channels": 1}, "sisr"),
    "dfgan-sim": ("dfgan", {"input_channels": 9}, "sim"),
}


@dataclass
class BenchRow:
    """One benchmark case; figures are None when the case could not run (see note)."""

    model: str
    engine: str
    size: int
    setup_s: float | None = None
    latency_ms: float | None = None
    frames_per_s: float | None = None
    runs: int = 0
    note: str = ""


def benchmark_model(name: str) -> LoadedModel:
    """A bundled / file model, or a full-size random-weight stand-in ('dfcan-sim-full', ...)."""
    base = name.removesuffix("-full")
    if name == base:
        try:
            return load_model(name)
        except ValueError:
            if name not in RANDOM_STANDINS:
                raise
    if base not in RANDOM_STANDINS:
        raise ValueError(f"no full-size stand-in {name!r}; known: {sorted(RANDOM_STANDINS)}")
    arch, options, mode = RANDOM_STANDINS[base]
    torch.manual_seed(0)
    module = build_model(arch, options).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    info = ModelInfo(
        name=f"{base} (full size, random weights)",
        architecture=arch,
        options=options,
        mode=mode,  # type: ignore[arg-type]
        weights_sha256=weights_sha256(module.state_dict()),
    )
    return LoadedModel(info=info, module=module)


def time_case(
    engine_run: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    iterations: int,
    budget_s: float,
) -> BenchRow:
    """First run = setup (export, build, allocation); then up to `iterations` timed runs."""
    row = BenchRow("", "", int(batch.shape[-1]))
    start = time.perf_counter()
    engine_run(batch)
    row.setup_s = time.perf_counter() - start
    latencies = time_calls(lambda: engine_run(batch), max(iterations, 1), budget_s)
    latency = statistics.median(latencies)
    row.latency_ms = latency * 1e3
    row.frames_per_s = batch.shape[0] / latency
    row.runs = len(latencies)
    return row


def run_inference_benchmark(
    sizes: list[int],
    backends: list[str],
    models: list[str],
    device: str = "auto",
    iterations: int = 3,
    budget_s: float = 60.0,
    threads: int = 0,
    batch: int = 1,
) -> list[BenchRow]:
    """Every (model, backend, size) case; unavailable backends give a row with the reason.

    A backend may carry '+matmul' (e.g. 'onnxruntime+matmul') for the DFT-as-matmul attention.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    rows: list[BenchRow] = []
    rng = np.random.default_rng(0)
    for model_name in models:
        if model_name not in RANDOM_STANDINS and model_name not in BUNDLED_NAMES:
            log.info("benchmarking model file %s", model_name)
        loaded = benchmark_model(model_name)
        channels = int(loaded.info.options.get("input_channels", 1))
        for backend_spec in backends:
            backend, _, variant = backend_spec.partition("+")
            try:
                engine = make_engine(
                    loaded, backend=backend, device=device, matmul_attention=variant == "matmul"
                )
            except BackendUnavailableError as exc:
                for size in sizes:
                    rows.append(
                        BenchRow(loaded.name, backend_spec, size, note=f"unavailable: {exc}")
                    )
                continue
            for size in sizes:
                data = rng.random((batch, channels, size, size), dtype=np.float32)
                row = time_case(engine.run, data, iterations, budget_s)
                row.model, row.engine = loaded.name, engine.description
                row.note = f"{row.runs} timed run(s), batch {batch}"
                log.info("%s %s %d: %.0f ms", row.model, row.engine, size, row.latency_ms or 0)
                rows.append(row)
    return rows
