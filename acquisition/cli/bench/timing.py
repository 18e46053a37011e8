"""What the benchmarks share: the timing loop (one call repeated up to a count or a time
limit) and the emulated SIM set they time Wiener SIM on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from inference.wiener import WienerSim


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


def emulated_wiener(size_px: int) -> tuple[np.ndarray, WienerSim, float]:
    """An emulated 9-frame SIM set (``size_px`` square, 300 e-, seed 1), Wiener SIM with its
    parameters estimated on that set, and the seconds the estimate and filters took."""
    from calibration.otf import OtfModel
    from inference.wiener import WienerConfig, WienerSim
    from sim_emulator.microscope import EmulatorConfig, Microscope

    config = EmulatorConfig(size_px=size_px, photon_count_e=300.0, seed=1)
    raw = Microscope(config).render_set(0.0)
    otf = OtfModel(na=config.optics.na, emission_nm=config.optics.emission_nm,
                   pixel_integration=True)
    start = time.perf_counter()
    sim = WienerSim.from_raw(raw, config.optics.pixel_size_nm, otf, WienerConfig())
    return raw, sim, time.perf_counter() - start
