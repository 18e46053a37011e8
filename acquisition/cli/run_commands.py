"""`livesim` sub-commands contributed by the `acquisition` package.

run (headless time-lapse), infer (the inference worker), demo, recover, and `bench pipeline`.
Heavy imports stay inside the command functions so `livesim --help` stays fast.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from acquisition.cli import options as opt
from acquisition.cli.output_files import check_output, exit_on, fail

if TYPE_CHECKING:
    from acquisition.protocol import Protocol
    from acquisition.session import Progress, RunSummary
    from calibration.photon_calibration import PhotonCalibration
    from hardware.rig import Rig

logger = logging.getLogger(__name__)

EMULATOR_DEFAULT_SIZE_PX = 128  # default emulator ROI: small enough for CPU reconstruction


def run_command(
    protocol_file: Path | None = typer.Argument(None, help="Protocol TOML (or use --emulator)."),
    emulator: opt.Emulator = False,
    output: Path | None = typer.Option(None, "--output", "-o", help="Run file (.h5) to write."),
    timepoints: Annotated[int | None, opt.TIME_POINTS] = None,
    model: str | None = typer.Option(
        None, "--model", "-m", help="Reconstruction for every channel: auto (the default: the "
        "network inside its training domain, Wiener SIM elsewhere), bundled name, path, wiener, "
        "none."),
    imc: bool | None = typer.Option(None, "--imc/--no-imc", help="IMC-SR three-colour split."),
    imc_model: str | None = typer.Option(
        None, "--imc-model", help="IMC-SR model: bundled name or .pt path (default: imcsr)."
    ),
    interval_s: float | None = typer.Option(None, "--interval-s", help="Seconds between starts."),
    size_px: opt.SizePx = EMULATOR_DEFAULT_SIZE_PX,  # the emulator's ROI when none is given
    overwrite: opt.Overwrite = False,
    roles: str | None = typer.Option(
        None, "--roles", help="Role map: shipped profiles and/or TOML files, '+'-joined "
                              "(e.g. hamamatsu-dcam+triggerscope); overrides the protocol's."),
    fsync: opt.Fsync = True,
    workers: int = typer.Option(
        1, "--workers", min=0, help="Inference worker processes, each supervised on its own."),
    worker_endpoint: list[str] = typer.Option(
        [], "--worker-endpoint",
        help="tcp://HOST:PORT for a worker on another machine (raw at PORT, results at PORT+1; "
             "repeatable); needs --curve-secret."),
    curve_secret: Path | None = typer.Option(
        None, "--curve-secret", help="This run's CurveZMQ secret key file (server side)."),
    curve_clients: Path | None = typer.Option(
        None, "--curve-clients", help="Folder of the remote workers' public key files: only "
                                      "they may connect."),
    trust_every: opt.TrustEvery = 10,
) -> None:
    """Record a SIM time-lapse: raw to HDF5, SR by supervised inference workers."""
    protocol = _load_protocol(protocol_file, emulator, output, timepoints, model, imc,
                              interval_s, overwrite, imc_model, roles)
    check_output(protocol.output, protocol.overwrite, inputs=[protocol_file],
                 suffixes=(".h5", ".hdf5"))
    remote = _remote_options(worker_endpoint, curve_secret, curve_clients)
    summary = _record(protocol, size_px, fsync=fsync, workers=workers, remote=remote,
                      trust_every=trust_every)
    _print_summary(summary)
    if summary.error:
        raise typer.Exit(1)


def infer_command(
    raw_endpoint: str = typer.Option(..., "--raw-endpoint", help="Raw-set PUSH to connect to."),
    results_endpoint: str = typer.Option(..., "--results-endpoint", help="Results PULL."),
    method: list[str] = typer.Option(
        ["default"], "--method",
        help="Per channel, in order: default (auto), auto, model name/path, wiener, passthrough."
    ),
    mode: str = typer.Option("sim", "--mode", help="wf | sim | nlsim"),
    raw_shape: str = typer.Option("9,128,128", "--raw-shape", help="P,Y,X of one raw set."),
    heartbeat_s: float = typer.Option(0.5, "--heartbeat-s", help="Heartbeat period."),
    parent_pid: int = typer.Option(0, "--parent-pid", help="Exit when this process is gone."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Camera calibration."),
    pattern_parameters: Path | None = typer.Option(
        None, "--pattern-parameters", help="Wiener: rig pattern calibration (calibrate pattern)."
    ),
    imc_model: str | None = typer.Option(
        None, "--imc-model", help="IMC-SR model (bundled name or path) for the first SR channel."
    ),
    sr_encoding: str = typer.Option(
        "float32", "--sr-encoding", help="SR payload: float32 in [0, 1] or uint16 (x 1/65535)."
    ),
    curve_secret: Path | None = typer.Option(None, "--curve-secret", help="Our Curve key file."),
    curve_server: Path | None = typer.Option(None, "--curve-server", help="Server public key."),
    run_id: str = typer.Option("", "--run-id", help="Serve only this run (set by the session)."),
    worker_id: str = typer.Option("", "--worker-id", help="This worker's id (set by the session)."),
    trust_every: opt.TrustEvery = 10,
    raw_ring_fd: int | None = typer.Option(
        None, "--raw-ring-fd", min=0,
        help="Inherited read-only descriptor of the run's shared-memory raw ring (set by the "
             "session)."),
    result_ring_fd: int | None = typer.Option(
        None, "--result-ring-fd", min=0,
        help="Inherited descriptor of this worker's shared-memory result ring (set by the "
             "session)."),
) -> None:
    """The inference worker: reconstruct raw sets from ZeroMQ and push results back."""
    from acquisition.transport import CurveKeys, TransportSecurityError
    from inference.worker import WorkerOptions, run_worker

    try:
        shape = tuple(int(n) for n in raw_shape.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"--raw-shape {raw_shape!r}: expected P,Y,X") from exc
    if len(shape) != 3 or min(shape) <= 0:
        raise typer.BadParameter(f"--raw-shape {raw_shape!r}: expected three positive numbers")
    keys = CurveKeys.from_files(curve_secret, curve_server) if curve_secret else None
    options = WorkerOptions(raw_endpoint, results_endpoint, tuple(method),
                            (shape[0], shape[1], shape[2]), mode=mode, heartbeat_s=heartbeat_s,
                            parent_pid=parent_pid, calibration=calibration, curve=keys,
                            imc_model=imc_model, sr_encoding=sr_encoding, run_id=run_id,
                            worker_id=worker_id, pattern_parameters=pattern_parameters,
                            trust_every=trust_every, raw_ring_fd=raw_ring_fd,
                            result_ring_fd=result_ring_fd)
    with exit_on(TransportSecurityError):  # a non-local endpoint without Curve keys
        state = run_worker(options)
    logger.info("worker done: %d processed, %d failed", state.processed, state.failed)


def demo_command(
    output: Path = typer.Option(Path("demo_run.h5"), "--output", "-o", help="Run file to write."),
    timepoints: opt.TimePoints = 10,
    size_px: opt.SizePx = EMULATOR_DEFAULT_SIZE_PX,
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Reconstruction (default: auto)."),
    overwrite: opt.Overwrite = False,
) -> None:
    """An emulated SIM time-lapse with the default model; prints a summary and SR quality."""
    check_output(output, overwrite, suffixes=(".h5",))
    protocol = _load_protocol(None, True, output, timepoints, model, None, None, overwrite)
    summary = _record(protocol, size_px, fsync=False, static_sample=True)
    _print_summary(summary)
    quality = _demo_quality(protocol.output)
    if quality:
        typer.echo(quality)
    if summary.error:
        raise typer.Exit(1)


def recover_command(
    path: Path = typer.Argument(..., help="Run file left by a killed or crashed recording."),
) -> None:
    """Clear a killed writer's SWMR state so any HDF5 reader opens the file; report content."""
    from acquisition.recovery import RecoveryError, recover_run_file

    with exit_on(RecoveryError, code=1):
        report = recover_run_file(path)
    for line in report.lines():
        typer.echo(line)


def bench_pipeline_command(
    timepoints: opt.TimePoints = 100,
    size_px: opt.SizePx = 512,
    folder: opt.ScratchFolder = None,
    fsync: opt.Fsync = True,
    repeats: int = typer.Option(3, "--repeats", min=1,
                                help="Interleaved repeats of bare zmq, bare h5py raw, bare "
                                     "h5py same bytes and the pipeline (medians reported)."),
    viewer: bool = typer.Option(False, "--viewer/--headless",
                                help="Attach a display viewer process (every topic, as the "
                                     "window subscribes) to the pipeline runs."),
    shared_memory: bool = typer.Option(True, "--shared-memory/--inline",
                                       help="Raw sets to the worker and SR images back "
                                            "through shared-memory rings, or inline over "
                                            "ZeroMQ."),
) -> None:
    """Emulator fast path -> engine -> ZeroMQ -> passthrough worker -> recorder, vs bare limits."""
    from acquisition.cli.bench.pipeline import run_pipeline_bench

    result = run_pipeline_bench(timepoints, size_px, folder, fsync=fsync, repeats=repeats,
                                viewer=viewer, shared_memory=shared_memory)
    for line in result.lines():
        typer.echo(line)
    if result.raw_lost:
        raise typer.Exit(1)


# --- helpers ---------------------------------------------------------------------------------


def _load_protocol(protocol_file: Path | None, emulator: bool, output: Path | None,
                   timepoints: int | None, model: str | None, imc: bool | None,
                   interval_s: float | None, overwrite: bool, imc_model: str | None = None,
                   roles: str | None = None) -> Protocol:
    from acquisition.protocol import Protocol, ProtocolError

    if (protocol_file is None) == (not emulator):
        raise typer.BadParameter("give a protocol TOML file or --emulator (not both)")
    overrides: dict[str, Any] = {"timepoints": timepoints, "imc": imc, "interval_s": interval_s,
                                 "overwrite": overwrite or None, "imc_model": imc_model,
                                 "roles": roles}
    if output is not None:
        overrides["output"] = str(output)
    try:
        if protocol_file is not None:
            protocol = Protocol.from_toml(protocol_file, **overrides)
        else:
            if output is None:
                raise typer.BadParameter("--output FILE.h5 is required")
            data = {"channels": [{"laser_nm": 488, "power_pct": 20.0, "exposure_ms": 10.0}],
                    **{k: v for k, v in overrides.items() if v is not None}}
            protocol = Protocol.parse_checked(data, source="--emulator defaults")
        if model is not None:
            data = protocol.model_dump()
            for channel in data["channels"]:
                channel["reconstruction"] = model
            protocol = Protocol.parse_checked(data, source="--model")
    except ProtocolError as exc:
        fail(str(exc))
    return protocol


def _open_rig(protocol: Protocol, size_px: int, static_sample: bool = False
              ) -> tuple[Rig, dict[str, Any], PhotonCalibration | None]:
    """The rig for a protocol, the metadata describing it (optics, camera, lasers, seed) and,
    for the emulator, its camera's exact photon calibration."""
    from hardware.rig import Rig
    from sim_emulator.rig import emulated_rig, photon_calibration

    metadata: dict[str, Any] = {}
    if protocol.rig == "emulator":
        from sim_emulator.microscope import EmulatorConfig
        from sim_emulator.samples import Dynamics

        roi = protocol.roi
        size = (roi.height, roi.width) if roi else (size_px, size_px)
        config = EmulatorConfig(size_px=size, seed=protocol.emulator_seed)
        if protocol.imc:  # the three-structure mix the IMC-SR model was trained to separate
            from inference.imc.mixtures import DEFAULT_STRUCTURES

            config = config.model_copy(update={"structure": "mix",
                                               "mix_structures": DEFAULT_STRUCTURES})
        if static_sample:  # the demo compares SR with one ground truth: hold the sample still
            config = config.model_copy(update={"dynamics": Dynamics(
                drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0,
                bleach_rate_per_s=0.0, bleach_per_dose=0.0)})
        rig = emulated_rig(config, roles=protocol.role_map())
        photons = photon_calibration(rig, (int(rig.camera.shape[0]), int(rig.camera.shape[1])))
        metadata["emulator"] = config.model_dump(mode="json")
        metadata["emulator_seed"] = protocol.emulator_seed
        metadata["optics"] = config.optics.model_dump(mode="json")
    else:
        photons = None
        rig = Rig.from_config(protocol.rig, protocol.role_map())
        if protocol.roi is not None:
            r = protocol.roi
            rig.camera.set_roi(r.x, r.y, r.width, r.height)
    metadata["camera"] = {"label": rig.camera.label, "shape": list(rig.camera.shape),
                          "pixel_size_nm": rig.camera.pixel_size_nm}
    metadata["lasers"] = {"aotf": rig.aotf.label, "lines_nm": list(rig.aotf.lines_nm),
                          "channels": [c.model_dump() for c in protocol.channels]}
    return rig, metadata, photons


def _remote_options(endpoints: list[str], secret: Path | None, clients: Path | None
                    ) -> dict[str, Any]:
    """SessionOptions fields for remote workers; errors name the option."""
    if not endpoints:
        return {}
    if secret is None:
        raise typer.BadParameter("remote workers need CurveZMQ keys: give --curve-secret",
                                 param_hint="--worker-endpoint")
    import zmq.auth

    from acquisition.transport import CurveKeys

    try:
        keys = CurveKeys.from_files(secret)
        allowed = tuple(zmq.auth.load_certificates(str(clients)).keys()) if clients else ()
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--curve-secret/--curve-clients") from exc
    if clients is not None and not allowed:
        raise typer.BadParameter(f"{clients}: no public key files", param_hint="--curve-clients")
    return {"remote_workers": tuple(endpoints), "curve": keys, "curve_clients": allowed}


def _record(protocol: Protocol, size_px: int, fsync: bool, static_sample: bool = False,
            workers: int = 1, remote: dict[str, Any] | None = None,
            trust_every: int = 10) -> RunSummary:
    """Open the rig, check the plan, run the session with a progress display."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    from acquisition.protocol import sequence_plan
    from acquisition.session import RunSession, SessionError, SessionOptions, check_memory
    from hardware.errors import RigError

    options = SessionOptions(fsync=fsync, workers=workers, trust_every=trust_every,
                             **(remote or {}))
    roi = protocol.roi
    planned = (roi.height, roi.width) if roi else (size_px, size_px)
    # before the rig allocates anything: a too-large ROI is refused, not a MemoryError
    with exit_on(SessionError):
        check_memory(planned, protocol.n_patterns, len(protocol.channels), options,
                     emulator=protocol.rig == "emulator")

    plan = sequence_plan(protocol)
    try:
        rig, metadata, photons = _open_rig(protocol, size_px, static_sample)
        rig.check_plan(plan)
    except (RigError, ValueError) as exc:
        fail(f"rig cannot run this protocol: {exc}")
    frame_shape = tuple(rig.camera.shape)
    worker_log = protocol.output.with_suffix(".worker.log")
    session = RunSession(rig, plan, protocol, (int(frame_shape[0]), int(frame_shape[1])),
                         float(rig.camera.pixel_size_nm), metadata=metadata,
                         options=options, worker_log=worker_log, photon_calibration=photons)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn())
    previous = signal.getsignal(signal.SIGINT)

    interrupts = [0]

    def on_interrupt(_signum: int, _frame: object) -> None:
        interrupts[0] += 1
        if interrupts[0] == 1:
            typer.echo("\nstopping after this time point, then waiting for the SR still on "
                       "its way (Ctrl-C again to stop waiting)", err=True)
            session.stop()
        elif interrupts[0] == 2:  # no more waiting, but the file is still sealed properly
            typer.echo("\nnot waiting for SR: sealing the run file with what is recorded "
                       "(Ctrl-C a third time to abandon it unsealed)", err=True)
            session.stop(finish_within_s=0.0)
        else:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        with RichProgress(*columns, transient=False) as bar:
            task = bar.add_task("SIM sets", total=protocol.n_events, stats="starting")

            def show(p: Progress) -> None:
                bar.update(task, completed=p.time_points_done, stats=(
                    f"{p.raw_fps:7.1f} raw fps  SR lag {p.sr_lag_time_points}  "
                    f"{p.mb_per_s:6.1f} MB/s  skips {p.skips}  gaps {p.gaps}"))

            summary = session.run(progress=show)
    except SessionError as exc:
        fail(str(exc))
    finally:
        signal.signal(signal.SIGINT, previous)
        rig.close()
    return summary


def _print_summary(summary: RunSummary) -> None:
    engine = summary.engine
    typer.echo(f"run file        {summary.path}")
    typer.echo(f"time points     {engine.time_points} ({engine.stopped_reason})")
    typer.echo(f"raw frames      {summary.raw_frames}")
    typer.echo(f"SR frames       {summary.sr_frames}")
    if summary.imc_frames:
        typer.echo(f"IMC-SR frames   {summary.imc_frames}")
    for channel, model in summary.models.items():
        typer.echo(f"  channel {channel}: {model.get('model_name')} "
                   f"sha256 {str(model.get('model_sha256'))[:16] or '-'} {model.get('note', '')}")
    typer.echo(f"events          {summary.events or 'none'}")
    typer.echo(f"drift           mean {engine.mean_drift_s * 1e3:.1f} ms, "
               f"max {engine.max_drift_s * 1e3:.1f} ms")
    typer.echo(f"SR latency      p50 {summary.latency_percentile_ms(50):.1f} ms, "
               f"p99 {summary.latency_percentile_ms(99):.1f} ms")
    reasons = ", ".join(f"{why}: {n}" for why, n in sorted(summary.rejected_by_reason.items()))
    typer.echo(f"worker restarts {summary.worker_restarts}; rejected messages "
               f"{summary.rejected_messages}" + (f" ({reasons})" if reasons else ""))
    if len(summary.sr_per_worker) > 1:
        typer.echo("SR per worker   " + ", ".join(
            f"{w}: {n}" for w, n in sorted(summary.sr_per_worker.items())))
    if summary.error:
        typer.echo(f"error: {summary.error}", err=True)


def _demo_quality(path: Path) -> str:
    """Which method made each SR image (counts per method), then SR and wide-field of the
    last time point scored against the emulator's ground truth."""
    from acquisition.cli.ground_truth_quality import (
        methods_per_time_point,
        score_against_ground_truth,
    )

    rows = score_against_ground_truth(path)
    if not rows:
        return ""
    counts = methods_per_time_point(path)
    methods = ("SR method per time point: "
               + ", ".join(f"{name} {n}" for name, n in counts.items()) + "\n") if counts else ""
    return (methods + "quality vs emulator ground truth (last time point):\n"
            + "\n".join(row.line() for row in rows))
