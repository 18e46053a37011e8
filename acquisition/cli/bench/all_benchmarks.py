"""`livesim bench all`: every benchmark in one run, each beside its bare limit, into one report.

Each stage of the pipeline is timed with the package's own benchmark function and, in the
same run and on the same data, against the bare operation it cannot beat (the library call
underneath: pyzmq, h5py, numpy noise, an FFT, a plain torch forward, the headless pipeline).
The figures go to a JSON file; with ``--docs FILE`` also to one section of that Markdown
report (between markers), every other section of it left as it is.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer

from acquisition.cli import options as opt
from acquisition.cli.bench.timing import emulated_wiener, time_calls
from acquisition.cli.output_files import check_json_output

logger = logging.getLogger(__name__)

SECTION_START = "<!-- bench-all:start (written by `livesim bench all`; edit outside it) -->"
SECTION_END = "<!-- bench-all:end -->"


@dataclass(frozen=True)
class BenchSettings:
    """Sizes and counts; ``quick`` shrinks everything to a few minutes on 2 cores."""

    quick: bool = True
    size_px: int = 256  # raw frame size for emulator, camera, transport, recorder, pipeline
    time_points: int = 200  # fewer and start-up/close dominate the pipeline figure
    model_sizes: tuple[int, ...] = (128,)
    engines: tuple[str, ...] = ("torch", "onnxruntime")
    gui_seconds: float = 5.0
    fsync: bool = True

    @classmethod
    def make(cls, quick: bool) -> BenchSettings:
        """Quick settings, or the full sizes of the individual benchmark commands."""
        if quick:
            return cls()
        return cls(quick=False, size_px=512, time_points=100, model_sizes=(256, 512),
                   engines=("torch", "onnxruntime", "tensorrt"), gui_seconds=10.0)


@dataclass
class Figure:
    """One measured figure beside its bare limit (ratio = figure / bare, both higher-better)."""

    section: str
    what: str
    value: float
    unit: str
    bare_what: str = ""
    bare_value: float = float("nan")
    note: str = ""

    @property
    def ratio(self) -> float:
        """This figure over its bare limit, measured in the same run."""
        if not self.bare_value or self.bare_value != self.bare_value:
            return float("nan")
        return self.value / self.bare_value


@dataclass
class BenchReport:
    """All figures of one run and the machine they were measured on."""

    settings: BenchSettings
    figures: list[Figure] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    started_utc: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"settings": asdict(self.settings), "machine": self.machine,
                "started_utc": self.started_utc, "seconds": self.seconds,
                "failures": self.failures,
                "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures]}


def machine_description() -> dict[str, Any]:
    """CPU, cores, load, GPU (if torch sees one), library versions."""
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(), "gpu": gpu,
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "platform": platform.platform()}


def _median_rate(run: Callable[[], Any], count: int, repeats: int, budget_s: float = 20.0
                 ) -> float:
    """Items per second of ``run`` (which handles ``count`` items) at its median time, after
    one untimed call; at most ``repeats`` timed calls and about ``budget_s``."""
    run()
    return count / statistics.median(time_calls(run, repeats, budget_s))


def _forward_rate(module: Any, frames: int, size: int, repeats: int) -> float:
    """Forwards/s of a plain torch forward (inference_mode) of ``module`` on one random
    ``frames`` x ``size`` x ``size`` input: the bare limit of a network's stage."""
    import numpy as np
    import torch

    data = torch.from_numpy(np.random.default_rng(0).random((1, frames, size, size),
                                                            dtype=np.float32))

    def forward() -> None:
        with torch.inference_mode():
            module(data)

    return _median_rate(forward, 1, repeats, budget_s=60.0)


# --- the stages ------------------------------------------------------------------------------


def bench_emulator(s: BenchSettings) -> list[Figure]:
    """Fast-path frames/s vs copying a finished frame (the least any frame source does)."""
    import numpy as np

    from acquisition.cli.bench.emulator import measure_throughput

    result = measure_throughput(s.size_px, sets=5 if s.quick else 20,
                                fast_frames=1000 if s.quick else 4000)
    frame = np.ones((s.size_px, s.size_px), np.uint16)
    out = np.empty_like(frame)
    bare = _median_rate(lambda: np.copyto(out, frame), 1, 200)
    return [
        Figure("emulator", f"fast path {s.size_px} px frames", result.fast_frames_per_s,
               "frames/s", "numpy copy of one pre-rendered frame", bare),
        Figure("emulator", f"full physics {s.size_px} px 9-frame sets", result.full_sets_per_s,
               "sets/s", note=f"{result.full_sets_per_cpu_s:.1f} sets per CPU-s"),
    ]


def bench_camera(s: BenchSettings, fast_path_fps: float) -> list[Figure]:
    """Frames through pymmcore-plus (triggered, tagged) vs the emulator alone."""
    from acquisition.cli.bench.camera import measure_camera_throughput

    n = 900 if s.quick else 3000
    fast = measure_camera_throughput(n, s.size_px, "fast")
    replay = measure_camera_throughput(n, s.size_px, "replay")
    return [
        Figure("camera", f"core, fast render, {s.size_px} px", fast.frames_per_s, "frames/s",
               "emulator fast path alone (this run)", fast_path_fps),
        Figure("camera", f"core, replay render, {s.size_px} px", replay.frames_per_s,
               "frames/s", "core + fast render (this run)", fast.frames_per_s,
               note="replay repeats noise: the core path's own ceiling"),
    ]


def _pump(receive: Callable[[], Any], send: Callable[[int], None], n: int) -> float:
    """Messages/s: a sender thread sends ``n``, this thread receives them."""

    def send_all() -> None:
        for i in range(n):
            send(i)

    sender = threading.Thread(target=send_all, daemon=True)
    start = time.perf_counter()
    sender.start()
    for _ in range(n):
        receive()
    elapsed = time.perf_counter() - start
    sender.join(10.0)
    return n / elapsed


def _transport_rate(context: Any, endpoint: str, bank: Any, n: int, wire: bool) -> float:
    """Sets/s over one PUSH/PULL pair: bare buffers, or our encode + validated receive."""
    import zmq

    from acquisition.transport import MessageReceiver, open_socket
    from acquisition.wire import Kind, encode, header_for

    pull = open_socket(context, zmq.PULL, endpoint, bind=True, RCVHWM=8)
    push = open_socket(context, zmq.PUSH, endpoint, bind=False, SNDHWM=8)
    receiver = MessageReceiver(pull, "bench")
    header = bytes(encode(header_for(Kind.RAW_SET, "b", 0, bank[0]), bank[0])[0])

    def send(i: int) -> None:
        frames = bank[i % len(bank)]
        if wire:
            push.send_multipart(encode(header_for(Kind.RAW_SET, "b", i, frames), frames),
                                copy=False)
        else:
            push.send_multipart([header, frames], copy=False)

    def receive() -> None:
        if not wire:
            pull.recv_multipart(copy=False)
        elif receiver.receive(timeout_ms=10_000) is None:
            raise RuntimeError("bench transport: a message was lost or rejected")

    try:
        return _pump(receive, send, n)
    finally:
        push.close(0)
        pull.close(0)


def bench_transport(s: BenchSettings, bank: Any) -> list[Figure]:
    """Raw sets through our wire (encode, MessageReceiver with full validation) vs bare pyzmq."""
    import zmq

    from acquisition.transport import Endpoints

    n = max(300, s.time_points * 4)
    folder = Path(tempfile.mkdtemp(prefix="livesim-bench-wire-"))
    context = zmq.Context()
    try:
        rates = {}
        for mode in ("bare", "wire"):
            (folder / mode).mkdir()
            rates[mode] = _transport_rate(context, Endpoints.ipc(folder / mode).raw, bank, n,
                                          wire=mode == "wire")
    finally:
        context.term()
    frames = bank.shape[1]
    return [Figure("transport", f"wire raw sets, ipc, 9 x {s.size_px} px", rates["wire"] * frames,
                   "frames/s", "bare pyzmq send/recv of the same buffers", rates["bare"] * frames,
                   note="one process, sender thread -> receiver; wire = encode + decode + checks")]


def bench_recorder(s: BenchSettings, bank: Any) -> list[Figure]:
    """RunRecorder (writer thread, SWMR, events, timestamps) raw-only vs bare h5py, same bytes."""
    import numpy as np

    from acquisition.cli.bench.pipeline import bare_h5py_fps
    from acquisition.recorder import RunLayout, RunRecorder

    folder = Path(tempfile.mkdtemp(prefix="livesim-bench-rec-"))
    bare = bare_h5py_fps(bank, s.time_points, folder, s.fsync)
    bare_fps = float(bare[0] if isinstance(bare, tuple) else bare)
    layout = RunLayout(n_channels=1, n_orientations=3, n_phases=3,
                       frame_shape=(s.size_px, s.size_px),
                       sr_shape=(2 * s.size_px, 2 * s.size_px), pixel_size_nm=62.6)
    path = folder / "recorder.h5"
    start = time.perf_counter()
    recorder = RunRecorder(path, layout, {"bench": True}, fsync=s.fsync)
    n = bank.shape[1]
    for t in range(s.time_points):
        recorder.write_raw_set(t, 0, bank[t % len(bank)], np.zeros(n), np.arange(n) + t * n)
        recorder.end_time_point(t)
    recorder.close()
    fps = s.time_points * n / (time.perf_counter() - start)
    path.unlink()
    folder.rmdir()
    return [Figure("recorder", f"RunRecorder raw + wide-field, {s.size_px} px", fps,
                   "frames/s", "bare h5py raw only, written as the recorder writes", bare_fps,
                   note=f"fsync per time point: {s.fsync}")]


def bench_preprocessing(s: BenchSettings, bank: Any) -> list[Figure]:
    """Preprocessor.prepare (checks, flags, normalisation) vs a bare numpy min-max."""
    import numpy as np

    from inference.preprocessing import Preprocessor

    raw = bank[0]
    pre = Preprocessor("sim")

    def bare() -> None:
        x = raw.astype(np.float32)
        lo, hi = x.min(), x.max()
        (x - lo) / (hi - lo)

    return [Figure("preprocessing", f"9 x {s.size_px} px set, CPU", _median_rate(
        lambda: pre.prepare(raw), 1, 30), "sets/s", "numpy float32 min-max of the set",
        _median_rate(bare, 1, 30))]


def bench_inference(s: BenchSettings) -> list[Figure]:
    """Each engine on the bundled DFCAN-SIM vs a plain torch forward of the same module."""
    from acquisition.cli.bench.engines import benchmark_model, run_inference_benchmark

    loaded = benchmark_model("dfcan-sim")
    figures = []
    for size in s.model_sizes:
        bare = _forward_rate(loaded.module, 9, size, 5)
        rows = run_inference_benchmark([size], list(s.engines), ["dfcan-sim"], device="auto",
                                       iterations=5,
                                       budget_s=30.0 if s.quick else 60.0)
        for row in rows:
            if row.frames_per_s is None:
                figures.append(Figure("inference", f"{row.engine} {size} px", float("nan"),
                                      "SR frames/s", note=row.note[:120]))
                continue
            figures.append(Figure("inference", f"dfcan-sim, {row.engine}, 9 x {size} px",
                                  row.frames_per_s, "SR frames/s",
                                  "plain torch forward (inference_mode)", bare,
                                  note=f"latency {row.latency_ms:.0f} ms"))
    return figures


def bench_wiener(s: BenchSettings) -> list[Figure]:
    """WienerSim.reconstruct (fixed parameters) vs the FFTs any Wiener SIM must do."""
    import numpy as np
    import scipy.fft

    raw, sim, _ = emulated_wiener(s.size_px)
    frames = raw.astype(np.float32)
    big = np.zeros((2 * s.size_px, 2 * s.size_px), np.complex64)

    def bare() -> None:
        scipy.fft.fft2(frames, workers=2)
        scipy.fft.ifft2(big, workers=2)

    return [Figure("wiener", f"9 x {s.size_px} px set, CPU", _median_rate(
        lambda: sim.reconstruct(raw), 1, 20), "SR frames/s",
        "9 forward FFTs + 1 inverse 2x FFT (scipy, 2 workers)", _median_rate(bare, 1, 20))]


def bench_imcsr(s: BenchSettings) -> list[Figure]:
    """IMC-SR separation (ImcSeparator) vs a plain torch forward of its module."""
    import torch

    from acquisition.cli.bench.imcsr import bench_imcsr as run_imcsr
    from inference.imc.live import ImcSeparator
    from inference.model_file import bundled_models, save_model
    from inference.models.imcsr import Imcsr, ImcsrOptions

    sizes = [2 * n for n in s.model_sizes]
    model: str | Path = "imcsr"
    note = ""
    if "imcsr" not in bundled_models():  # time the default architecture with random weights
        torch.manual_seed(0)
        module = Imcsr(ImcsrOptions())
        model = Path(tempfile.mkdtemp(prefix="livesim-bench-imc-")) / "imcsr-random.pt"
        save_model(model, module, architecture="imcsr", mode="imc", options=module.options)
        note = "bundled imcsr not installed: default architecture, random weights"
    result = run_imcsr(sizes, model, iterations=3)
    separator = ImcSeparator(model, device="cpu")
    figures = []
    for row in result["rows"]:
        size = int(row["sr_size"])
        bare = _forward_rate(separator.model.module, separator.input_channels, size, 3)
        figures.append(Figure("imc-sr", f"{result['model']} {size} px SR image",
                              float(row["frames_per_s"]), "frames/s",
                              "plain torch forward of the module", bare, note=note))
    return figures


def bench_pipeline(s: BenchSettings) -> tuple[list[Figure], Any]:
    """The whole raw path vs the composite limit of the same work (bare zmq, bare h5py writing
    the run file's bytes, and the CPU both need); also gives bare h5py writing the raw bytes."""
    from acquisition.cli.bench.pipeline import run_pipeline_bench

    repeats = 3  # interleaved: one run of each moved 4x with the disk's write-back state
    r = run_pipeline_bench(s.time_points, s.size_px, None, fsync=s.fsync, repeats=repeats)
    per_repeat = ", ".join(f"{x:.2f}" for x in r.repeat_ratios)
    return [
        Figure("pipeline", f"engine -> zmq -> worker -> recorder, {s.size_px} px, median of "
               f"{repeats} interleaved", r.pipeline_fps, "raw frames/s",
               "composite limit: min(bare zmq, bare h5py same bytes, cores / CPU of both)",
               r.composite_limit,
               note=(f"lost {r.raw_lost}, differing {r.raw_mismatched}, SR {r.sr_frames}, "
                     f"skips {r.sr_skips}, SR latency p50 {r.latency_p50_ms:.0f} ms p99 "
                     f"{r.latency_p99_ms:.0f} ms; per repeat pipeline / composite limit "
                     f"{per_repeat}")),
        Figure("pipeline", "same runs vs bare h5py writing the raw bytes only (medians)",
               r.pipeline_fps, "raw frames/s", "bare h5py raw", r.h5py_fps),
    ], r


def bench_gui(s: BenchSettings) -> list[Figure]:
    """The pipeline with the window drawing its display stream vs headless."""
    from acquisition.cli.bench.display import run_display_bench
    from gui.app import offscreen_if_headless

    offscreen_if_headless()
    r = run_display_bench(s.gui_seconds, 2 * s.size_px)
    return [
        Figure("gui", f"pipeline with the window, SR view {2 * s.size_px} px",
               r.with_display_fps, "raw frames/s", "same pipeline headless", r.headless_fps,
               note=f"SR / raw view {r.during.sr_per_s:.1f} / {r.during.raw_per_s:.1f} new "
                    f"images drawn/s (pipeline made {r.during.sr_made_per_s:.1f} SR/s); "
                    f"display path {r.display_path_ms_per_pair:.1f} ms CPU per pair"),
    ]


def run_all(settings: BenchSettings, only: tuple[str, ...] = ()) -> BenchReport:
    """Run every stage (or ``only`` those named); a failing stage is recorded, not fatal."""
    from acquisition.cli.bench.pipeline import frame_bank

    report = BenchReport(settings, machine=machine_description(),
                         started_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    start = time.perf_counter()
    bank = frame_bank(settings.size_px)
    fast_path = [float("nan")]

    def emulator() -> list[Figure]:
        figures = bench_emulator(settings)
        fast_path[0] = figures[0].value
        return figures

    stages: list[tuple[str, Callable[[], list[Figure]]]] = [
        ("emulator", emulator),
        ("camera", lambda: bench_camera(settings, fast_path[0])),
        ("transport", lambda: bench_transport(settings, bank)),
        ("recorder", lambda: bench_recorder(settings, bank)),
        ("preprocessing", lambda: bench_preprocessing(settings, bank)),
        ("inference", lambda: bench_inference(settings)),
        ("wiener", lambda: bench_wiener(settings)),
        ("imc-sr", lambda: bench_imcsr(settings)),
        ("pipeline", lambda: bench_pipeline(settings)[0]),
        ("gui", lambda: bench_gui(settings)),
    ]
    for name, stage in stages:
        if only and name not in only:
            continue
        logger.info("bench all: %s", name)
        began = time.perf_counter()
        try:
            report.figures.extend(stage())
        except Exception as exc:
            logger.exception("bench %s failed", name)
            report.failures[name] = f"{type(exc).__name__}: {exc}"
        logger.info("bench all: %s took %.0f s", name, time.perf_counter() - began)
    report.seconds = time.perf_counter() - start
    report.machine["load_average_end"] = os.getloadavg()
    return report


def _number(value: float) -> str:
    if value != value:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown_section(report: BenchReport, command: str) -> str:
    """The report as the bench-all section of docs/benchmarks.md."""
    m = report.machine
    s = report.settings
    lines = [
        SECTION_START,
        "## All benchmarks in one run (`livesim bench all`)",
        "",
        "What it measures: every stage beside its bare limit, measured in the same run on the "
        "same data; ratio = figure / bare limit (higher is better; 1.0 = no overhead). Run: "
        "`livesim bench all --json OUT.json [--full] [--docs docs/benchmarks.md]`.",
        "",
        "| command | machine | date | duration | settings | load (1, 5, 15 min) at start / end |",
        "|---|---|---|---|---|---|",
        f"| `{command}` | {m.get('cpu')}, {m.get('cores')} cores, GPU: {m.get('gpu')} | "
        f"{report.started_utc} | {report.seconds / 60:.1f} min | "
        f"{'quick' if s.quick else 'full'}: {s.size_px} px frames, {s.time_points} time "
        f"points, models at {', '.join(str(n) for n in s.model_sizes)} px, fsync {s.fsync} | "
        f"{', '.join(f'{v:.1f}' for v in m.get('load_average', ()))} / "
        f"{', '.join(f'{v:.1f}' for v in m.get('load_average_end', ()))} |",
        "",
        "| stage | figure | value | bare limit (same run) | bare value | ratio | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report.figures:
        ratio = "-" if f.ratio != f.ratio else f"{f.ratio:.2f}"
        lines.append(f"| {f.section} | {f.what} | {_number(f.value)} {f.unit} | "
                     f"{f.bare_what or '-'} | {_number(f.bare_value)} | {ratio} | {f.note} |")
    for name, error in report.failures.items():
        lines.append(f"| {name} | failed: {error[:150]} | - | - | - | - | |")
    lines += ["", "Reading the ratios: below 1 is the stage's overhead over the bare operation; "
              "above 1 means the bare operation as measured is a baseline rather than a ceiling "
              "(e.g. the transport's wire encode beside bare pyzmq of the same buffers). "
              "Pipeline and GUI rows come from separate processes started in this run."]
    if m.get("gpu") == "none":
        lines += ["", "GPU figures: none (no GPU on this machine; TensorRT/CUDA rows are "
                  "absent or marked unavailable)."]
    lines += [SECTION_END, ""]
    return "\n".join(lines)


def write_docs(report: BenchReport, command: str, path: Path) -> Path:
    """Replace (or append) the bench-all section; every other section stays as it is."""
    section = markdown_section(report, command)
    text = path.read_text() if path.exists() else "# livesim benchmarks\n\n"
    if SECTION_START in text and SECTION_END in text:
        before = text[: text.index(SECTION_START)]
        after = text[text.index(SECTION_END) + len(SECTION_END):].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return path


def bench_all_command(
    json_out: Path = typer.Option(..., "--json", help="Write every figure here (required)."),
    overwrite: opt.Overwrite = False,
    full: bool = typer.Option(False, "--full", help="Full sizes (slow on 2 cores)."),
    only: str = typer.Option("", "--only", help="Comma-separated stages (default: all)."),
    docs_file: Path | None = typer.Option(
        None, "--docs", help="Also replace the bench-all section of this Markdown report "
        "(e.g. docs/benchmarks.md); nothing else is written unless asked."),
) -> None:
    """Every benchmark with its bare limit in the same run, written as JSON."""
    check_json_output(json_out, overwrite)
    settings = BenchSettings.make(quick=not full)
    stages = tuple(x.strip() for x in only.split(",") if x.strip())
    report = run_all(settings, stages)
    json_out.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    for f in report.figures:
        ratio = "" if f.ratio != f.ratio else f"  ratio {f.ratio:.2f}"
        typer.echo(f"{f.section:13s} {f.what}: {_number(f.value)} {f.unit}"
                   f"{'  vs ' + _number(f.bare_value) if f.bare_what else ''}{ratio}")
    for name, error in report.failures.items():
        typer.echo(f"{name}: FAILED {error}", err=True)
    if docs_file is not None:
        command = "livesim bench all --json OUT.json" + (" --full" if full else "") + (
            f" --only {only}" if only else "")
        typer.echo(f"wrote {write_docs(report, command, docs_file)}")
    if report.failures:
        raise typer.Exit(1)

