"""The timing loop of the benchmarks: one call repeated up to a count or a time limit."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_calls(call: Callable[[], object], runs: int, budget_s: float = float("inf"),
               device: str = "cpu") -> list[float]:
    """Seconds of each call of ``call``, up to ``runs`` calls or until ``budget_s`` is spent
    (at least one); on a CUDA ``device`` each call is timed until the device has finished."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times
