"""Emulator throughput: full-physics SIM sets per second and fast-path frames per second."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sim_emulator.fast_path import FastFrameSource
from sim_emulator.microscope import EmulatorConfig, Microscope


@dataclass
class EmulatorThroughput:
    """Measured rates on this machine."""

    size_px: int
    structure: str
    full_sets_per_s: float
    full_frames_per_s: float
    fast_frames_per_s: float
    n_patterns: int
    full_sets_per_cpu_s: float  # per second of this process's CPU time (busy shared machines)
    fast_frames_per_cpu_s: float


def measure_throughput(
    size_px: int = 512,
    structure: str = "microtubules",
    sets: int = 20,
    fast_frames: int = 4000,
    mode: str = "sim",
) -> EmulatorThroughput:
    """Time ``sets`` full-physics sets (a new sample state every set) and fast-path frames."""
    config = EmulatorConfig.model_validate(
        {"size_px": size_px, "structure": structure, "patterns": {"mode": mode}}
    )
    microscope = Microscope(config)
    step = config.time_resolution_s
    microscope.render_set(0.0)  # warm-up: sample built, FFT plans made
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(sets):
        microscope.render_set((i + 1) * step)
    full_s = time.perf_counter() - start
    full_cpu_s = time.process_time() - cpu
    source = FastFrameSource(microscope)
    n = microscope.n_patterns
    for pattern in range(n):  # pre-render every pattern and jitter offset
        for k in range(source.n_offsets):
            when_s = k * source.jitter_period_s / source.n_offsets
            source.frame(when_s, pattern if mode != "wf" else None, 488.0, 100.0, 10.0)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(fast_frames):
        source.frame(i * 1e-3, (i % n) if mode != "wf" else None, 488.0, 100.0, 10.0)
    fast_s = time.perf_counter() - start
    fast_cpu_s = time.process_time() - cpu
    return EmulatorThroughput(
        size_px=size_px,
        structure=structure,
        full_sets_per_s=sets / full_s,
        full_frames_per_s=sets * n / full_s,
        fast_frames_per_s=fast_frames / fast_s,
        n_patterns=n,
        full_sets_per_cpu_s=sets / full_cpu_s,
        fast_frames_per_cpu_s=fast_frames / fast_cpu_s,
    )
