"""`livesim bench gpu` (`make gpu-check`): the prepared GPU check, one command, JSON out.

Stages, in order, each inside its own time budget and the whole inside ``budget_s`` (the
device machine gives 8 minutes): the environment (versions, CUDA device, missing packages),
the GPU tests (``pytest -m gpu`` on the files that hold them), full-size DFCAN-SIM (the
authors' architecture, random weights) at 9 x 512 x 512 in fp32 / bf16 / fp16 with CUDA graphs
and with ``torch.compile``, CuPy preprocessing, Wiener SIM in torch on the GPU, the pipeline
with a GPU SR worker, and ``bench pipeline`` at 256, 512, 1024 and 2048 px (issue #20's
sizes, on a host with more cores than the pipeline keeps busy). The JSON file is rewritten
after every stage, so a run stopped at its limit still leaves what it measured. A stage that
fails is recorded with its error and the next one runs.

``--dry-run`` rehearses the same code on the CPU at tiny sizes (what needs CUDA is recorded as
unavailable, with the reason), checks that the wheel folder carries every package the GPU
image lacks, and is what CI runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer

from acquisition.cli import options as opt
from acquisition.cli.bench.timing import emulated_wiener, time_calls
from acquisition.cli.output_files import check_json_output, exit_on

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]  # the checkout (its tests/ folder)

# What the device machine's Python already holds (its image, 'cuda'; see the device notes):
# distributions the check must not carry. Normalised names (PEP 503).
_GPU_IMAGE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
GPU_IMAGE_PACKAGES = frozenset(_GPU_IMAGE_LIST.split())

# The device machine: Python 3.12 on x86-64 Linux (its markers decide which requirements count)
GPU_PYTHON = "3.12"
_GPU_MARKERS = {
    "python_version": GPU_PYTHON, "python_full_version": f"{GPU_PYTHON}.3",
    "platform_python_implementation": "CPython", "implementation_name": "cpython",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "os_name": "posix", "extra": "",
}

TARGETS = {"sr_frames_per_s": 200.0, "sr_p99_ms": 50.0, "wiener_sets_per_s": 500.0,
           "pipeline_ratio": 0.8}
PIPELINE_TARGET_SIZES = (256, 512, 1024)  # the sizes the pipeline target names (#20)


def normalise_name(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(root: str = "livesim") -> list[str]:
    """livesim's run-time requirements: from the checkout's pyproject.toml when there is one
    (an editable install's metadata lags behind it), else from the installed metadata."""
    import tomllib

    pyproject = ROOT / "pyproject.toml"
    if root == "livesim" and pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        return list(project.get("dependencies", []))
    return list(importlib.metadata.distribution(root).requires or [])


def dependency_closure(root: str = "livesim") -> dict[str, str]:
    """Every distribution ``root`` needs at run time on the device machine (its markers),
    with the version installed here ('?' where it is not installed): name -> version."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name_now = todo.pop()
        texts = (project_requirements(root) if name_now == root
                 else importlib.metadata.distribution(name_now).requires or [])
        for text in texts:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(_GPU_MARKERS):
                continue
            name = normalise_name(req.name)
            if name in found:
                continue
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = "?"
                continue
            todo.append(name)
    return found


def wheels_to_carry(root: str = "livesim") -> dict[str, str]:
    """The run-time distributions the GPU image lacks (name -> version to carry)."""
    return {n: v for n, v in sorted(dependency_closure(root).items())
            if n not in GPU_IMAGE_PACKAGES}


def wheel_folder_gaps(folder: Path, needed: dict[str, str]) -> list[str]:
    """``name==version`` of each needed distribution with no wheel in ``folder``."""
    present: set[tuple[str, str]] = set()
    for wheel in folder.glob("*.whl"):
        parts = wheel.name.split("-")
        if len(parts) >= 2:
            present.add((normalise_name(parts[0]), parts[1]))
    return [f"{n}=={v}" for n, v in needed.items() if (n, v) not in present]


@dataclass
class CheckPlan:
    """Sizes, repeats and budgets of one check (``dry_run``: tiny, on the CPU)."""

    dry_run: bool
    device: str
    sr_size: int
    batches: tuple[int, ...]
    latency_runs: int
    preprocessing_size: int
    wiener_size: int
    wiener_runs: int
    pipeline_size: int
    pipeline_time_points: int
    limit_sizes: tuple[int, ...]
    limit_time_points: dict[int, int]
    budget_s: float
    limit_repeats: int = 1
    stage_budget_s: dict[str, float] = field(default_factory=dict)
    compile_backend: str = "inductor"

    @classmethod
    def for_run(cls, dry_run: bool, budget_s: float) -> CheckPlan:
        if dry_run:
            return cls(dry_run=True, device="cpu", sr_size=24, batches=(1, 2), latency_runs=3,
                       preprocessing_size=32, wiener_size=64, wiener_runs=3, pipeline_size=32,
                       pipeline_time_points=3, limit_sizes=(32,), limit_time_points={32: 3},
                       budget_s=budget_s, compile_backend="eager",
                       stage_budget_s={"gpu_tests": 120, "dfcan": 60, "preprocessing": 20,
                                       "wiener": 30, "pipeline_gpu_worker": 90,
                                       "pipeline_limits": 90})
        return cls(dry_run=False, device="cuda", sr_size=512, batches=(1, 4, 8),
                   latency_runs=100, preprocessing_size=512, wiener_size=512, wiener_runs=200,
                   pipeline_size=512, pipeline_time_points=150,
                   limit_sizes=(256, 512, 1024, 2048),
                   limit_time_points={256: 200, 512: 100, 1024: 30, 2048: 10}, limit_repeats=3,
                   budget_s=budget_s,
                   stage_budget_s={"gpu_tests": 60, "dfcan": 180, "preprocessing": 10,
                                   "wiener": 15, "pipeline_gpu_worker": 60,
                                   "pipeline_limits": 120})


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def stage_environment(plan: CheckPlan, wheels: Path | None) -> dict[str, Any]:
    """Python, torch, CUDA device, CuPy, ONNX Runtime providers; packages the image lacks."""
    import torch

    out: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(), "load_average": os.getloadavg(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    for module, key in (("cupy", "cupy"), ("onnxruntime", "onnxruntime")):
        try:
            imported = __import__(module)
            out[key] = getattr(imported, "__version__", "?")
        except ImportError as exc:
            out[key] = f"not importable: {exc}"
    if not str(out["onnxruntime"]).startswith("not"):
        import onnxruntime

        out["onnxruntime_providers"] = onnxruntime.get_available_providers()
    try:
        needed = wheels_to_carry()
        out["carried_packages"] = needed
        if wheels is not None:
            out["wheel_folder"] = str(wheels)
            out["wheel_folder_gaps"] = wheel_folder_gaps(wheels, needed)
    except importlib.metadata.PackageNotFoundError:
        out["carried_packages"] = "livesim is not installed here (run from the checkout)"
    return out


def gpu_test_files(root: Path = ROOT) -> list[Path]:
    """Test files holding a ``pytest.mark.gpu`` test (none outside a checkout)."""
    if not (root / "tests").is_dir():
        return []
    return sorted(p for p in (root / "tests").rglob("test_*.py")
                  if "mark.gpu" in p.read_text(encoding="utf-8"))


def stage_gpu_tests(plan: CheckPlan) -> dict[str, Any]:
    """``pytest -m gpu`` on the files that hold GPU tests (they skip without CUDA)."""
    files = gpu_test_files()
    if not files:
        return {"error": f"no GPU tests found under {ROOT / 'tests'} (run from the checkout)"}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu",
               *[str(f.relative_to(ROOT)) for f in files]]
    timeout_s = plan.stage_budget_s["gpu_tests"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return {"files": [f.name for f in files], "error": f"timed out after {timeout_s:.0f} s",
                "output_tail": tail[-2000:]}
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|"
                                                r"deselected)", summary)}
    return {"files": [f.name for f in files], "returncode": done.returncode,
            "summary": summary, "counts": counts, "seconds": time.perf_counter() - start,
            "output_tail": (done.stdout + done.stderr)[-3000:] if done.returncode else ""}


# (label, precision, CUDA graphs, torch.compile mode)
DFCAN_VARIANTS: tuple[tuple[str, str, bool, str | None], ...] = (
    ("fp32 eager", "fp32", False, None),
    ("fp32 graphs", "fp32", True, None),
    ("bf16 graphs", "bf16", True, None),
    ("fp16 graphs", "fp16", True, None),
    ("bf16 compile", "bf16", False, "default"),
    ("bf16 compile+graphs", "bf16", False, "reduce-overhead"),
)


def dfcan_under_test(dry_run: bool) -> Any:
    """Full-size DFCAN-SIM with random weights; in a dry run a tiny DFCAN of the same code
    (width 8, one group of two blocks, 16^2 spectrum) so the rehearsal takes seconds."""
    from acquisition.cli.bench.engines import benchmark_model

    if not dry_run:
        return benchmark_model("dfcan-sim-full")
    import torch

    from inference.model_file import LoadedModel, ModelInfo, weights_sha256
    from inference.models import build_model

    options = {"input_channels": 9, "width": 8, "groups": 1, "blocks": 2, "reduction": 4,
               "spectrum_size": 16}
    torch.manual_seed(0)
    module = build_model("dfcan", options).eval()
    info = ModelInfo(name="dfcan (dry-run size)", architecture="dfcan", options=options,
                     mode="sim", weights_sha256=weights_sha256(module.state_dict()))
    return LoadedModel(info=info, module=module)


def latency_figures(times: list[float]) -> dict[str, float]:
    """Runs and latency p50/p99 (ms) of timed calls."""
    return {"runs": len(times), "latency_p50_ms": statistics.median(times) * 1e3,
            "latency_p99_ms": _percentile(times, 99) * 1e3}


def time_engine(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, runs: int,
                budget_s: float) -> dict[str, float]:
    """First call = setup; then timed calls (output back on the host, so each call is
    complete): latency p50/p99 and frames/s of the median."""
    start = time.perf_counter()
    run(batch)
    setup_s = time.perf_counter() - start
    timed = latency_figures(time_calls(lambda: run(batch), runs, budget_s))
    return {"setup_s": setup_s, **timed,
            "frames_per_s": batch.shape[0] / timed["latency_p50_ms"] * 1e3}


def stage_dfcan(plan: CheckPlan) -> dict[str, Any]:
    """Full-size DFCAN-SIM (random weights) at 9 x size^2: each variant's latency at batch 1,
    frames/s at each batch, and its largest difference from fp32 eager on the same input."""
    import torch

    from inference.engines import BackendUnavailableError
    from inference.engines.torch_engine import TorchEngine

    model = dfcan_under_test(plan.dry_run)
    rng = np.random.default_rng(0)
    probe = rng.random((1, 9, plan.sr_size, plan.sr_size), dtype=np.float32)
    reference: np.ndarray | None = None
    rows: list[dict[str, Any]] = []
    stage_end = time.perf_counter() + plan.stage_budget_s["dfcan"]
    per_variant_s = plan.stage_budget_s["dfcan"] / (len(DFCAN_VARIANTS) * len(plan.batches))
    for label, precision, graphs, compile_mode in DFCAN_VARIANTS:
        row: dict[str, Any] = {"variant": label, "size": plan.sr_size}
        rows.append(row)
        if time.perf_counter() > stage_end:
            row["note"] = "not run: stage budget spent"
            continue
        on_cpu = not plan.device.startswith("cuda")
        if on_cpu and compile_mode is not None:  # rehearse torch.compile in fp32
            precision = "fp32"
            row["note"] = f"CPU rehearsal: fp32, compile backend {plan.compile_backend}"
        try:
            if on_cpu and graphs:
                raise BackendUnavailableError("CUDA graphs need a CUDA device")
            engine = TorchEngine(model, plan.device, precision,  # type: ignore[arg-type]
                                 cuda_graphs=graphs, compile_mode=compile_mode,
                                 compile_backend=plan.compile_backend)
        except BackendUnavailableError as exc:
            row["note"] = f"unavailable: {exc}"
            continue
        row["engine"] = engine.description
        try:
            out = engine.run(probe)
            if reference is None:
                reference = out
            row["max_abs_diff_vs_fp32"] = float(np.abs(out - reference).max())
            for batch in plan.batches:
                data = rng.random((batch, 9, plan.sr_size, plan.sr_size), dtype=np.float32)
                row[f"batch{batch}"] = time_engine(engine.run, data, plan.latency_runs,
                                                   per_variant_s)
        except Exception as exc:  # a variant that fails (compile, OOM) must not stop the rest
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        del engine
        if not on_cpu:
            torch.cuda.empty_cache()
    best = max((r[f"batch{b}"]["frames_per_s"] for r in rows for b in plan.batches
                if f"batch{b}" in r), default=float("nan"))
    p99 = min((r["batch1"]["latency_p99_ms"] for r in rows if "batch1" in r),
              default=float("nan"))
    return {"model": model.name, "rows": rows, "best_frames_per_s": best,
            "best_batch1_p99_ms": p99}


def stage_preprocessing(plan: CheckPlan) -> dict[str, Any]:
    """CuPy (NumPy in a dry run) preprocessing of 9 x size^2 uint16 sets: sets/s and the
    largest difference from the NumPy path."""
    from inference.preprocessing import Preprocessor, array_module

    size = plan.preprocessing_size
    rng = np.random.default_rng(1)
    raw = rng.integers(90, 4000, (9, size, size), dtype=np.uint16)

    @dataclass(frozen=True)
    class Maps:
        offset_adu: np.ndarray
        gain_adu_per_e: np.ndarray
        defect_mask: np.ndarray

    mask = np.zeros((size, size), dtype=bool)
    mask[size // 3, size // 4] = True
    maps = Maps(np.full((size, size), 100.0, np.float32), np.full((size, size), 2.0, np.float32),
                mask)
    xp = array_module(plan.device)
    pre = Preprocessor("sim", calibration=maps, device=plan.device)
    cpu = Preprocessor("sim", calibration=maps).prepare(raw)
    got = pre.prepare(raw)
    inputs = got.inputs.get() if hasattr(got.inputs, "get") else np.asarray(got.inputs)
    timed = latency_figures(time_calls(lambda: pre.prepare(raw), max(plan.latency_runs, 3),
                                       plan.stage_budget_s["preprocessing"], plan.device))
    return {"array_module": xp.__name__, "size": size, **timed,
            "sets_per_s": 1e3 / timed["latency_p50_ms"],
            "max_abs_diff_vs_numpy": float(np.abs(inputs - cpu.inputs).max()),
            "flags_equal": got.flags == cpu.flags}


def stage_wiener(plan: CheckPlan) -> dict[str, Any]:
    """Wiener SIM in torch on the device (precomputed filters): sets/s, and the largest
    difference from the NumPy path relative to its peak."""
    import torch

    raw, sim, setup_s = emulated_wiener(plan.wiener_size)
    expected = sim.reconstruct(raw)
    tensor = torch.from_numpy(raw.astype(np.float32)).to(plan.device)
    got = sim.reconstruct_torch(tensor).cpu().numpy()
    for _ in range(3):
        sim.reconstruct_torch(tensor)
    _sync(plan.device)
    timed = latency_figures(time_calls(lambda: sim.reconstruct_torch(tensor), plan.wiener_runs,
                                       plan.stage_budget_s["wiener"], plan.device))
    # back to back, as a stream of sets: the device queue stays full
    start = time.perf_counter()
    count = int(timed["runs"])
    for _ in range(count):
        sim.reconstruct_torch(tensor)
    _sync(plan.device)
    streamed_s = (time.perf_counter() - start) / count
    return {"size": plan.wiener_size, "device": plan.device, "setup_s": setup_s, **timed,
            "sets_per_s": 1e3 / timed["latency_p50_ms"],
            "streamed_sets_per_s": 1.0 / streamed_s,
            "max_rel_diff_vs_numpy": float(np.abs(got - expected).max() / expected.max())}


def stage_pipeline_gpu_worker(plan: CheckPlan, scratch: Path) -> dict[str, Any]:
    """The pipeline (bank source -> engine -> ZeroMQ -> SR worker -> recorder) with a
    full-size DFCAN-SIM worker on the device (the bundled CPU model in a dry run): raw
    frames/s, SR frames and skips, SR latency, raw lost."""
    from acquisition.cli.bench.engines import benchmark_model
    from acquisition.cli.bench.pipeline import check_lossless, frame_bank, measure_pipeline
    from inference.model_file import save_model

    if plan.dry_run:
        reconstruction = "dfcan-sim"
    else:
        model = benchmark_model("dfcan-sim-full")
        path = scratch / "dfcan-sim-full.pt"
        save_model(path, model.module, architecture=model.info.architecture, mode="sim",
                   name="dfcan-sim-full", options=model.info.options)
        reconstruction = str(path)
    bank = frame_bank(plan.pipeline_size)
    folder = scratch / "pipeline"
    folder.mkdir()
    m = measure_pipeline(bank, plan.pipeline_time_points, folder, fsync=True,
                         reconstruction=reconstruction)
    lost, mismatched = check_lossless(m.path, bank, plan.pipeline_time_points)
    s = m.summary
    return {"size": plan.pipeline_size, "time_points": plan.pipeline_time_points,
            "reconstruction": "dfcan-sim-full" if not plan.dry_run else reconstruction,
            "raw_frames_per_s": m.fps, "sr_frames": s.sr_frames,
            "sr_frames_per_s": s.sr_frames / s.recorded_s if s.recorded_s else 0.0,
            "sr_skips": s.events.get("sr_skip", 0), "raw_lost": lost,
            "raw_mismatched": mismatched, "sr_latency_p50_ms": s.latency_percentile_ms(50),
            "sr_latency_p99_ms": s.latency_percentile_ms(99),
            "cpu_ms_per_raw_frame": (m.acquisition_cpu_s + m.worker_cpu_s) * 1e3
            / (plan.pipeline_time_points * 9)}


def stage_pipeline_limits(plan: CheckPlan, scratch: Path) -> dict[str, Any]:
    """``bench pipeline`` (passthrough worker) at each size, ``limit_repeats`` interleaved
    repeats: pipeline vs the composite limit, with the host's core count."""
    from acquisition.cli.bench.pipeline import run_pipeline_bench

    rows = []
    for size in plan.limit_sizes:
        result = run_pipeline_bench(plan.limit_time_points[size], size, scratch, fsync=True,
                                    repeats=plan.limit_repeats)
        rows.append({"size": size, "repeats": plan.limit_repeats, "cores": os.cpu_count(),
                     "pipeline_fps": result.pipeline_fps,
                     "zmq_fps": result.zmq_fps, "h5py_fps": result.h5py_fps,
                     "h5py_same_bytes_fps": result.h5py_same_bytes_fps,
                     "composite_limit_fps": result.composite_limit,
                     "ratio": result.ratio, "raw_lost": result.raw_lost,
                     "cpu_ms_per_frame": result.cpu_ms_per_frame})
    return {"rows": rows}


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Each target against what was measured (None where the stage gave no figure)."""
    stages = report["stages"]
    dfcan = stages.get("dfcan", {})
    wiener = stages.get("wiener", {})
    fps, p99 = dfcan.get("best_frames_per_s"), dfcan.get("best_batch1_p99_ms")
    sets = wiener.get("streamed_sets_per_s")
    limits = {row["size"]: row for row in stages.get("pipeline_limits", {}).get("rows", [])}
    named = [limits[size] for size in PIPELINE_TARGET_SIZES if size in limits]
    ratios = {row["size"]: row["ratio"] for row in named}
    applies = not report["dry_run"]

    def met(ok: bool | None) -> bool | None:
        return ok if applies else None  # CPU rehearsal figures say nothing about the GPU

    fps_ok = None if fps is None else fps >= TARGETS["sr_frames_per_s"]
    p99_ok = None if p99 is None else p99 < TARGETS["sr_p99_ms"]
    sets_ok = None if sets is None else sets >= TARGETS["wiener_sets_per_s"]
    pipeline_ok = (None if len(named) < len(PIPELINE_TARGET_SIZES) else all(
        row["ratio"] >= TARGETS["pipeline_ratio"] and row["raw_lost"] == 0 for row in named))
    return {
        "sr_frames_per_s": {"target": f">= {TARGETS['sr_frames_per_s']:.0f}", "measured": fps,
                            "met": met(fps_ok)},
        "sr_p99_ms": {"target": f"< {TARGETS['sr_p99_ms']:.0f}", "measured": p99,
                      "met": met(p99_ok)},
        "wiener_sets_per_s": {"target": f">= {TARGETS['wiener_sets_per_s']:.0f}",
                              "measured": sets, "met": met(sets_ok)},
        "pipeline_ratio": {"target": f">= {TARGETS['pipeline_ratio']} at "
                                     f"{', '.join(map(str, PIPELINE_TARGET_SIZES))} px, 0 lost",
                           "measured": ratios or None, "met": met(pipeline_ok)},
        "applies": applies,
    }


STAGES = ("environment", "gpu_tests", "dfcan", "preprocessing", "wiener",
          "pipeline_gpu_worker", "pipeline_limits")


def run_gpu_check(json_path: Path, dry_run: bool = False, budget_s: float = 420.0,
                  skip: tuple[str, ...] = (), wheels: Path | None = None) -> dict[str, Any]:
    """Run every stage (but ``skip``) and write the report to ``json_path`` after each one.

    Raises RuntimeError when not a dry run and no CUDA device is present."""
    import torch

    unknown = set(skip) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(STAGES)}")
    if not dry_run and not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU here: run the check on a GPU machine, or --dry-run")
    plan = CheckPlan.for_run(dry_run, budget_s)
    report: dict[str, Any] = {
        "dry_run": dry_run, "device": plan.device, "started_utc": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_s": budget_s, "stages": {}}
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="livesim-gpu-check-"))
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": lambda: stage_environment(plan, wheels),
        "gpu_tests": lambda: stage_gpu_tests(plan),
        "dfcan": lambda: stage_dfcan(plan),
        "preprocessing": lambda: stage_preprocessing(plan),
        "wiener": lambda: stage_wiener(plan),
        "pipeline_gpu_worker": lambda: stage_pipeline_gpu_worker(plan, scratch),
        "pipeline_limits": lambda: stage_pipeline_limits(plan, scratch),
    }
    try:
        for name in STAGES:
            elapsed = time.perf_counter() - started
            if name in skip:
                report["stages"][name] = {"skipped": "--skip"}
                continue
            if elapsed + plan.stage_budget_s.get(name, 5.0) > budget_s:
                report["stages"][name] = {"skipped": f"check budget ({budget_s:.0f} s) spent"}
                continue
            log.info("gpu check: %s", name)
            stage_start = time.perf_counter()
            try:
                result = runners[name]()
            except Exception as exc:  # stage edge: record it, run the next stage
                log.exception("gpu check stage %s failed", name)
                result = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
            result["stage_s"] = round(time.perf_counter() - stage_start, 2)
            report["stages"][name] = result
            report["elapsed_s"] = round(time.perf_counter() - started, 2)
            report["verdict"] = verdict(report)
            json_path.write_text(json.dumps(report, indent=2, default=str))
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short human summary of the report."""
    lines = [f"gpu check ({'dry run, CPU' if report['dry_run'] else report['device']}), "
             f"{report.get('elapsed_s', 0):.0f} s"]
    for name, stage in report["stages"].items():
        if "error" in stage:
            lines.append(f"  {name}: ERROR {stage['error']}")
        elif "skipped" in stage:
            lines.append(f"  {name}: skipped ({stage['skipped']})")
        else:
            lines.append(f"  {name}: ok ({stage.get('stage_s', 0):.1f} s)")
    for key, item in report.get("verdict", {}).items():
        if isinstance(item, dict):
            met = item["met"] if report["verdict"]["applies"] else "n/a (dry run)"
            lines.append(f"  target {key} {item['target']}: measured {item['measured']}, "
                         f"met {met}")
    return lines


def bench_gpu_command(
    json_out: Path = typer.Option(Path("gpu_check.json"), "--json",
                                  help="report file (rewritten after every stage)"),
    overwrite: opt.Overwrite = False,
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="rehearse on the CPU at tiny sizes"),
    budget_s: float = typer.Option(420.0, "--time-limit-s",
                                   help="whole-check time limit; late stages are skipped"),
    skip: str = typer.Option("", "--skip", help=f"stages to skip: {', '.join(STAGES)}"),
    wheels: Path | None = typer.Option(None, "--wheels",
                                       help="wheel folder to check for carried packages"),
    list_wheels: bool = typer.Option(False, "--list-wheels",
                                     help="print NAME==VERSION the GPU image lacks, exit"),
) -> None:
    """The prepared GPU check: GPU tests, DFCAN-SIM 9x512x512, CuPy preprocessing,
    Wiener, pipeline with a GPU worker (JSON). Targets: >= 200 SR frames/s,
    p99 < 50 ms, Wiener >= 500 sets/s (H100)."""
    if list_wheels:
        for name, version in wheels_to_carry().items():
            typer.echo(f"{name}=={version}")
        return
    check_json_output(json_out, overwrite)
    with exit_on(RuntimeError, ValueError):
        report = run_gpu_check(json_out, dry_run, budget_s,
                               tuple(s for s in skip.split(",") if s), wheels)
    for line in summary_lines(report):
        typer.echo(line)
    failed = [n for n, s in report["stages"].items() if "error" in s]
    gaps = report["stages"].get("environment", {}).get("wheel_folder_gaps")
    if gaps:
        typer.echo(f"wheel folder lacks: {' '.join(gaps)}", err=True)
    if failed or gaps:
        raise typer.Exit(1)
