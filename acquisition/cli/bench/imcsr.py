"""IMC-SR timing for `livesim bench inference`: latency and frames/s per SR image size."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acquisition.cli.bench.timing import time_calls
from inference.imc.live import DEFAULT_MODEL, ImcSeparator

logger = logging.getLogger(__name__)


def bench_imcsr(
    sr_sizes: Sequence[int] = (256, 512),
    model: str | Path = DEFAULT_MODEL,
    device: str = "cpu",
    iterations: int = 3,
    budget_s: float = 60.0,
    threads: int = 0,
) -> dict[str, Any]:
    """Time `ImcSeparator` on random SR images of each size (square, SR pixels).

    Returns {"model", "sha256", "temporal", "device", "threads", "rows": [{"sr_size",
    "setup_s", "latency_ms" (median), "frames_per_s", "iterations"}]}. Timing per size stops
    after `budget_s` (at least one timed run after a warm-up).
    """
    if iterations < 1:
        raise ValueError(f"iterations={iterations} must be >= 1")
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    separator = ImcSeparator(model, device=device)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    rows = []
    for size in sr_sizes:
        image = rng.random((size, size), dtype=np.float32)
        widefield = rng.random((size // 2, size // 2), dtype=np.float32)  # the camera grid
        separator.reset()
        begin = time.perf_counter()
        _step(separator, image, widefield)  # warm-up (and the temporal window's first frame)
        setup_s = time.perf_counter() - begin
        timings = time_calls(partial(_step, separator, image, widefield), iterations, budget_s,
                             device)
        latency_s = float(np.median(timings))
        rows.append(
            {
                "sr_size": int(size),
                "setup_s": setup_s,
                "latency_ms": 1000.0 * latency_s,
                "frames_per_s": 1.0 / latency_s,
                "iterations": len(timings),
            }
        )
        logger.info("IMC-SR %dx%d: %.0f ms per frame", size, size, 1000 * latency_s)
    return {
        "model": separator.name,
        "sha256": separator.sha256,
        "temporal": separator.temporal,
        "device": device,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "rows": rows,
    }


def _step(separator: ImcSeparator, image: np.ndarray, widefield: np.ndarray) -> None:
    if separator.temporal:
        separator.push(image)
    else:
        separator.separate(image, widefield)
