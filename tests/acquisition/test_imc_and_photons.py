"""IMC-SR in the live pipeline and photon counts of emulator runs (real worker, real HDF5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from acquisition import run_file
from acquisition.protocol import Protocol
from acquisition.session import RunSession, SessionOptions
from hardware.sequencing import ChannelSpec, SequencePlan
from inference.imc.live import ImcSeparator
from inference.model_file import save_model
from inference.models.imcsr import Imcsr, ImcsrOptions
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.rig import emulated_rig, photon_calibration
from sim_emulator.samples import Dynamics

LIVESIM = [sys.executable, "-m", "acquisition.cli"]
# still and photostable: bleaching is dose-driven, and a camera calibration's long exposures
# would otherwise bleach the specimen before the run counts its photons
STILL = Dynamics(drift_nm_per_s=(0.0, 0.0), diffusion_nm2_per_s=0.0, growth_nm_per_s=0.0,
                 bleach_rate_per_s=0.0, bleach_per_dose=0.0)
FAST = SessionOptions(heartbeat_s=0.2, heartbeat_timeout_s=5.0, fsync=False, drain_idle_s=20.0)


def tiny_imc_model(path: Path, frames: int) -> Path:
    """A small IMC-SR model file (random weights: the pipeline, not the network, is tested)."""
    torch.manual_seed(5)
    options = ImcsrOptions.model_validate(
        {"input_frames": frames, "width": 4, "groups": 1, "blocks": 1, "reduction": 2})
    module = Imcsr(options)
    save_model(path, module, architecture="imcsr", mode="imc", options=module.options)
    return path


def test_run_with_imc_writes_three_channels_for_every_time_point(tmp_path: Path) -> None:
    model = tiny_imc_model(tmp_path / "imc3.pt", frames=3)
    output = tmp_path / "run.h5"
    done = subprocess.run([*LIVESIM, "run", "--emulator", "--imc", "--imc-model", str(model),
                           "--time-points", "10", "--size-px", "64", "--no-fsync",
                           "--output", str(output)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with h5py.File(output, "r") as h5:
        imc = h5["imc"][()]
        sr = run_file.read_sr(h5, next(iter(h5["sr"])), channel=0)
        names = [str(n) for n in h5["imc"].attrs["channel_names"]]
        pixel_um = h5["imc"].attrs["element_size_um"]
        meta = run_file.read_metadata(h5)
        kinds = [e["kind"].decode() for e in h5[run_file.EVENTS][()]]
    assert imc.shape == (10, 3, 128, 128)
    # every time point, the last one included (temporal model: flushed at the end of the run)
    assert np.isfinite(imc).all(), "IMC missing for time points " + str(
        np.flatnonzero(~np.isfinite(imc).all(axis=(1, 2, 3))))
    assert names == ["microtubules", "er", "lysosomes"] and "imc_failed" not in kinds
    # random weights explain little of the SR image: every time point is flagged by the domain
    # check and recorded, with the reason, as an imc_out_of_domain event
    assert kinds.count(run_file.IMC_OUT_OF_DOMAIN) == 10
    assert pixel_um[-1] == pytest.approx(0.0626 / 2, rel=1e-3)
    assert meta["emulator"]["structure"] == "mix"
    assert meta["models"]["imc"]["model_name"] == "imc3" and meta["models"]["imc"]["temporal"]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not np.allclose(imc[:, a], imc[:, b], rtol=0, atol=1e-7)
    assert np.abs(imc).max(axis=(0, 2, 3)).min() > 0
    # Each /imc[t] is the model on the window (t-1, t, t+1) of the recorded SR: no time point
    # shifted by the one-frame latency, the edges repeated.
    separator = ImcSeparator(model)
    expected = [out[1] for t in range(10) if (out := separator.push(sr[t])) is not None]
    last = separator.flush()
    assert last is not None
    np.testing.assert_allclose(imc, np.stack([*expected, last[1]]), rtol=1e-4, atol=1e-6)


def test_photon_count_matches_the_emulator_and_scales_with_exposure(tmp_path: Path) -> None:
    """Two colours, 10 and 20 ms: each set's photon count is the emulator's injected count."""
    config = EmulatorConfig(size_px=48, seed=3, structure="mix",
                            mix_structures=("microtubules", "ccps", "f-actin"),
                            labels_nm={"microtubules": 488, "ccps": 560, "f-actin": 560},
                            dynamics=STILL)  # a moving sample changes its own photon count
    exposures_ms = (10.0, 20.0)
    rig = emulated_rig(config)
    try:
        protocol = Protocol.parse_checked({
            "channels": [{"laser_nm": laser, "power_pct": 20.0, "exposure_ms": exposure,
                          "reconstruction": "wiener"}
                         for laser, exposure in zip((488, 560), exposures_ms, strict=True)],
            "timepoints": 2, "output": str(tmp_path / "photons.h5")})
        plan = SequencePlan(channels=tuple(
            ChannelSpec(laser_nm=c.laser_nm, power_pct=c.power_pct, exposure_ms=c.exposure_ms)
            for c in protocol.channels), mode="sim")
        summary = RunSession(rig, plan, protocol, (48, 48), 62.6, options=FAST,
                             photon_calibration=photon_calibration(rig, (48, 48))).run()
    finally:
        rig.close()
    assert summary.error == "" and summary.sr_frames == 4, summary
    with h5py.File(protocol.output, "r") as h5:
        offset = h5["calibration/offset_adu"][()]
        photons = h5["photon_count"][()]  # (T, C)
    assert offset.shape == (48, 48) and abs(float(offset.mean()) - 100) < 1
    # the emulator scales each colour's wide-field photon count to `photons` at 100 %, 10 ms
    injected = np.array([config.photon_count_e * 0.20 * e / config.reference_exposure_ms
                         for e in exposures_ms])
    assert np.all(np.abs(photons / injected - 1) < 0.10), (photons, injected)
    ratio = photons[:, 1] / photons[:, 0]
    assert np.all((ratio > 1.8) & (ratio < 2.2)), photons


def test_display_stream_carries_imc_splits(tmp_path: Path) -> None:
    import threading

    import zmq

    from acquisition.transport import DisplaySubscriber

    from .conftest import ScriptedSource

    model = tiny_imc_model(tmp_path / "imc1.pt", frames=1)
    protocol = Protocol.parse_checked({
        "channels": [{"laser_nm": 488, "reconstruction": "passthrough"}], "timepoints": 12,
        "imc": True, "imc_model": str(model), "output": str(tmp_path / "run.h5")})
    session = RunSession(ScriptedSource(frame_delay_s=0.002), None, protocol, (16, 16), 62.6,
                         options=FAST)
    context = zmq.Context()
    subscriber = DisplaySubscriber(context, session.endpoints.display, "imc")
    seen: list[tuple[int, tuple[int, ...], str]] = []

    def watch() -> None:
        while len(seen) < 1:
            message = subscriber.latest(timeout_ms=100)
            if message is not None:
                seen.append((message.header.time_point, message.array.shape,
                             str(message.array.dtype)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = session.run()
        watcher.join(10)
    finally:
        subscriber.close()
        context.term()
    assert summary.error == "" and summary.imc_frames == 12
    assert seen and seen[0][1:] == ((3, 32, 32), "float32") and 0 <= seen[0][0] < 12


def test_protocol_camera_calibration_gives_photo_electron_counts(tmp_path: Path) -> None:
    """A real rig's path: `livesim calibrate camera` maps in the protocol -> /calibration and
    photon counts in photo-electrons, the emulator's own unit: one definition on both paths."""
    from calibration.camera_calibration import calibrate_camera

    config = EmulatorConfig(size_px=48, seed=3, dynamics=STILL)
    rig = emulated_rig(config)
    # a calibration need not wait out the emulated exposures (up to 1 s darks x 30 frames)
    rig.backend.set_property(rig.camera.label, "HoldExposure", "No")
    try:
        exposures_ms = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
        calibrate_camera(rig, 488, n_frames=30, flat_exposures_ms=exposures_ms).save(
            tmp_path / "camera.h5")
        protocol = Protocol.parse_checked({
            "channels": [{"laser_nm": 488, "reconstruction": "wiener"}], "timepoints": 2,
            "calibration": str(tmp_path / "camera.h5"), "output": str(tmp_path / "cal.h5")})
        plan = SequencePlan(channels=(ChannelSpec(laser_nm=488, power_pct=20.0,
                                                  exposure_ms=10.0),), mode="sim")
        summary = RunSession(rig, plan, protocol, (48, 48), 62.6, options=FAST).run()
    finally:
        rig.close()
    assert summary.error == "" and summary.sr_frames == 2
    with h5py.File(protocol.output, "r") as h5:
        assert set(h5["calibration"]) == {"offset_adu", "gain_adu_per_e", "read_noise_e",
                                          "defect_mask"}
        electrons = h5["photon_count"][:, 0]
        sim_params = h5["sim_params"][:, 0]  # the pattern Wiener used, every time point
    assert sim_params.shape == (2, 3, 4) and np.isfinite(sim_params).all()
    assert np.all((sim_params[:, :, 3] > 0) & (sim_params[:, :, 3] <= 1))
    expected_e = config.photon_count_e * 0.20
    assert np.all(np.abs(electrons / expected_e - 1) < 0.10), (electrons, expected_e)
