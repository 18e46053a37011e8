"""The inference worker: results carry identity and timings, garbage is counted, heartbeats flow."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from acquisition.transport import Endpoints, MessageReceiver, open_socket
from acquisition.wire import Kind, Message, encode, header_for
from inference.reconstruction import make_reconstructor
from inference.worker import (
    WorkerOptions,
    WorkerState,
    build_reconstructors,
    describe_models,
    resolve_method,
    serve,
)


class HalfMean:
    """Stand-in reconstructor with a checkable output: the 2x-upsampled mean / 1000."""

    def reconstruct(self, raw: np.ndarray):
        from inference.reconstruction import SrResult

        mean = raw.mean(axis=0, dtype=np.float32) / 1000
        image = np.kron(mean, np.ones((2, 2), np.float32))
        return SrResult(image, float(raw.mean()), "half-mean", "ab" * 32, {"total": 1.5},
                        ["low_photons"])


@pytest.fixture
def rig_side(tmp_path: Path):
    """The acquisition side: bound raw PUSH and results PULL on private ipc endpoints."""
    context = zmq.Context()
    endpoints = Endpoints.ipc(tmp_path)
    push = open_socket(context, zmq.PUSH, endpoints.raw, bind=True, SNDHWM=8)
    pull = open_socket(context, zmq.PULL, endpoints.results, bind=True)
    yield context, endpoints, push, MessageReceiver(pull, "results")
    push.close(0)
    pull.close(0)
    context.term()


def start_worker(context, endpoints, reconstructors) -> tuple[WorkerState, threading.Thread]:
    options = WorkerOptions(endpoints.raw, endpoints.results, heartbeat_s=0.1)
    state = WorkerState()
    thread = threading.Thread(target=serve, args=(options, reconstructors, {"channels": {}}),
                              kwargs={"context": context, "state": state}, daemon=True)
    thread.start()
    return state, thread


def next_of(receiver: MessageReceiver, kind: Kind, timeout_s: float = 10) -> Message:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = receiver.receive(100)
        if message is not None and message.header.kind is kind:
            return message
    raise AssertionError(f"no {kind} within {timeout_s} s")


def test_results_carry_image_photons_timings_and_model_identity(rig_side) -> None:
    context, endpoints, push, results = rig_side
    state, thread = start_worker(context, endpoints, {0: HalfMean()})
    try:
        hello = next_of(results, Kind.HEARTBEAT)
        assert "hello" in hello.header.info
        raw = np.random.default_rng(0).integers(100, 3000, (9, 8, 6), dtype=np.uint16)
        header = header_for(Kind.RAW_SET, "run-x", 1, raw, time_point=7, channel=0,
                            n_orientations=3, n_phases=3, laser_nm=488,
                            frame_sequences=tuple(range(63, 72)))
        push.send_multipart(encode(header, raw), copy=False)
        result = next_of(results, Kind.SR_RESULT)
        head = result.header
        assert (head.run_id, head.time_point, head.channel) == ("run-x", 7, 0)
        assert head.frame_sequences == tuple(range(63, 72))
        assert result.array.shape == (16, 12) and result.array.dtype == np.float32
        np.testing.assert_allclose(result.array[::2, ::2], raw.mean(axis=0) / 1000, rtol=1e-5)
        info = head.info
        assert info["model_name"] == "half-mean" and info["model_sha256"] == "ab" * 32
        assert info["photon_count_e"] == pytest.approx(float(raw.mean()))
        assert info["timings_ms"] == {"total": 1.5} and info["flags"] == ["low_photons"]
        assert info["raw_sent_s"] == pytest.approx(header.sent_s)
        beat = next_of(results, Kind.HEARTBEAT)
        assert beat.header.info["processed"] == 1
    finally:
        state.stop.set()
        thread.join(5)


def test_garbage_and_wrong_sets_are_counted_not_fatal(rig_side) -> None:
    context, endpoints, push, results = rig_side
    state, thread = start_worker(context, endpoints, {0: HalfMean()})
    try:
        next_of(results, Kind.HEARTBEAT)
        rng = np.random.default_rng(3)
        for _ in range(25):
            push.send_multipart([rng.bytes(int(rng.integers(0, 40))) for _ in range(2)])
        wrong = np.zeros((4, 8, 8), np.uint16)  # 4 frames, but 3 x 3 patterns announced
        push.send_multipart(encode(header_for(Kind.RAW_SET, "r", 2, wrong, channel=0,
                                              n_orientations=3, n_phases=3), wrong), copy=False)
        event = next_of(results, Kind.EVENT)
        assert "does not match" in event.header.info["error"]
        unknown = np.zeros((9, 8, 8), np.uint16)
        push.send_multipart(encode(header_for(Kind.RAW_SET, "r", 3, unknown, channel=5,
                                              n_orientations=3, n_phases=3), unknown),
                            copy=False)
        assert "channel 5" in next_of(results, Kind.EVENT).header.info["error"]
        good = np.ones((9, 8, 8), np.uint16)
        push.send_multipart(encode(header_for(Kind.RAW_SET, "r", 4, good, channel=0,
                                              n_orientations=3, n_phases=3), good), copy=False)
        assert next_of(results, Kind.SR_RESULT).header.sequence >= 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            beat = next_of(results, Kind.HEARTBEAT)
            if beat.header.info["rejected"] == 25:
                break
        assert beat.header.info["rejected"] == 25 and beat.header.info["failed"] == 2
        assert thread.is_alive()
    finally:
        state.stop.set()
        thread.join(5)


def test_passthrough_is_announced_with_its_sr_shape() -> None:
    reconstructors, notes = build_reconstructors(["passthrough", "none"], mode="sim")
    assert set(reconstructors) == {0} and notes == {}
    hello = describe_models(reconstructors, (9, 10, 12), notes)
    assert hello["channels"]["0"]["sr_shape"] == [20, 24]
    assert hello["channels"]["0"]["model_name"] == "passthrough"
    nl = make_reconstructor("passthrough", mode="nlsim")
    assert nl.reconstruct(np.zeros((25, 4, 4), np.uint16)).image.shape == (12, 12)


def test_default_method_is_auto_or_falls_back_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import inference.worker as worker

    method, note = resolve_method("default")
    if (worker.BUNDLED_DIR / "dfcan-sim.pt").is_file():
        assert (method, note) == ("auto", "")  # the bundled network under the domain guard
    else:
        assert method == "wiener" and "not installed" in note
    # an explicit name means exactly that model, no guard
    assert resolve_method("wiener") == ("wiener", "")
    assert resolve_method("dfcan-sim") == ("dfcan-sim", "")
    assert resolve_method("auto:dfcan-sisr") == ("auto:dfcan-sisr", "")
    monkeypatch.setattr(worker, "BUNDLED_DIR", tmp_path)  # the bundled model not installed
    method, note = resolve_method("default")
    assert method == "wiener" and "'dfcan-sim' is not installed" in note


def test_auto_refuses_a_non_sim_mode() -> None:
    with pytest.raises(ValueError, match=r"mode 'sisr' needs a sisr model"):
        make_reconstructor("auto", mode="sisr")


def test_missing_imc_model_is_a_clear_error(tmp_path: Path) -> None:
    from inference.worker import ImcStage

    # a bundled name that is not installed (as 'imcsr' was before it landed), and a bad path
    with pytest.raises(RuntimeError, match=r"'imcsr-x' cannot be loaded.*neither a bundled name"):
        ImcStage("imcsr-x", channel=0)
    with pytest.raises(RuntimeError, match="cannot be loaded"):
        ImcStage(str(tmp_path / "absent.pt"), channel=0)


def test_imc_results_follow_their_time_points_and_flush_sends_the_last(rig_side,
                                                                       tmp_path: Path) -> None:
    import torch

    from inference.imc.live import ImcSeparator
    from inference.model_file import save_model
    from inference.models.imcsr import Imcsr, ImcsrOptions
    from inference.worker import ImcStage

    torch.manual_seed(1)
    module = Imcsr(ImcsrOptions.model_validate(
        {"input_frames": 3, "width": 4, "groups": 1, "blocks": 1, "reduction": 2}))
    path = tmp_path / "imc.pt"
    save_model(path, module, architecture="imcsr", mode="imc", options=module.options)
    context, endpoints, push, results = rig_side
    options = WorkerOptions(endpoints.raw, endpoints.results, heartbeat_s=0.1)
    state = WorkerState()
    thread = threading.Thread(target=serve, args=(options, {0: HalfMean()}, {"channels": {}}),
                              kwargs={"context": context, "state": state,
                                      "imc": ImcStage(str(path), 0)}, daemon=True)
    thread.start()
    try:
        next_of(results, Kind.HEARTBEAT)
        rng = np.random.default_rng(2)
        raws = [rng.integers(100, 3000, (9, 6, 6), dtype=np.uint16) for _ in range(3)]
        for t, raw in enumerate(raws):
            push.send_multipart(encode(header_for(Kind.RAW_SET, "r", t, raw, time_point=t,
                                                  channel=0, n_orientations=3, n_phases=3),
                                       raw), copy=False)
        got, flags = {}, {}
        for _ in range(2):  # one frame of latency: t = 0, 1 come with sets 1, 2
            message = next_of(results, Kind.IMC_RESULT)
            got[message.header.time_point] = np.array(message.array)
            flags[message.header.time_point] = message.header.info.get("flags", [])
        assert sorted(got) == [0, 1]
        push.send_multipart(encode(header_for(Kind.EVENT, "r", 9, None, time_point=2, channel=0,
                                              info={"command": "flush"})), copy=False)
        message = next_of(results, Kind.IMC_RESULT)
        got[message.header.time_point] = np.array(message.array)
        flags[message.header.time_point] = message.header.info.get("flags", [])
        assert next_of(results, Kind.EVENT).header.info["flushed"] == 1
        separator = ImcSeparator(path)
        srs = [HalfMean().reconstruct(raw).image for raw in raws]
        expected = [out[1] for sr in srs if (out := separator.push(sr)) is not None]
        expected.append(separator.flush()[1])  # type: ignore[index]
        for t in range(3):
            assert got[t].shape == (3, 12, 12)
            np.testing.assert_allclose(got[t], expected[t], rtol=1e-5, atol=1e-7)
        # an untrained model explains little of its input: each result carries the domain flag
        assert flags[2] and flags[2][0].startswith("imc_out_of_domain: ")
        assert all(len(f) == 1 for f in flags.values())
    finally:
        state.stop.set()
        thread.join(5)


def test_imc_stage_gives_a_widefield_model_the_sets_mean_in_electrons(tmp_path: Path) -> None:
    import torch

    from inference.model_file import save_model
    from inference.models.imcsr import Imcsr, ImcsrOptions
    from inference.worker import ImcStage, PhotonCalibration

    torch.manual_seed(2)
    paths = {}
    for context in (False, True):
        module = Imcsr(ImcsrOptions.model_validate(
            {"width": 4, "groups": 1, "blocks": 1, "reduction": 2, "widefield_input": context}))
        paths[context] = tmp_path / f"imc-{context}.pt"
        save_model(paths[context], module, architecture="imcsr", mode="imc",
                   options=module.options)
    rng = np.random.default_rng(3)
    raw = rng.integers(100, 3000, (9, 6, 6), dtype=np.uint16)
    offset = np.full((6, 6), 100.0, np.float32)
    offset[0, 0] = 90.0
    calibration = PhotonCalibration(offset, np.full((6, 6), 2.0, np.float32))
    assert ImcStage(str(paths[False]), 0, calibration=calibration).widefield(raw) is None
    stage = ImcStage(str(paths[True]), 0, calibration=calibration)
    expected = ((raw.astype(np.float64) - offset) / 2.0).mean(axis=0)
    np.testing.assert_allclose(stage.widefield(raw), expected, rtol=1e-6)
    sr = np.kron(expected, np.ones((2, 2))).astype(np.float32)
    ready = stage.stream.process(0, sr, stage.widefield(raw))
    assert len(ready) == 1 and ready[0][1].shape == (3, 12, 12)
    with pytest.raises(ValueError, match="wide-field"):
        stage.stream.process(1, sr)


def test_uint16_sr_encoding_is_within_half_a_step() -> None:
    from inference.worker import SR_UINT16_SCALE, encode_sr

    image = np.random.default_rng(4).uniform(-0.2, 1.2, (64, 48)).astype(np.float32)
    stored, info = encode_sr(image, "uint16")
    assert stored.dtype == np.uint16 and info == {"sr_scale": SR_UINT16_SCALE}
    error = stored * SR_UINT16_SCALE - np.clip(image, 0, 1)
    assert np.abs(error).max() <= 0.5 * SR_UINT16_SCALE + 1e-7
    assert encode_sr(image, "float32")[0] is image
    with pytest.raises(ValueError, match="sr_encoding"):
        encode_sr(image, "float16")
    # encoded in row bands: the same integers as the whole-image formula, every pixel
    big = np.random.default_rng(5).uniform(-0.2, 1.2, (700, 513)).astype(np.float32)
    big[3, :7] = [0.0, 1.0, 0.5 / 65535, 1.5 / 65535, np.inf, -np.inf, 1e-12]
    whole = np.clip(big * np.float32(65535.0), 0.0, np.float32(65535.0)) + np.float32(0.5)
    np.testing.assert_array_equal(encode_sr(big, "uint16")[0], whole.astype(np.uint16))
    assert encode_sr(big[0], "uint16")[0].shape == (513,)


def test_sr_payload_buffers_are_reused_only_once_nothing_holds_them() -> None:
    import zmq

    from acquisition.wire import Kind, encode, header_for
    from inference.worker import SrBuffers, encode_sr

    image = np.random.default_rng(6).uniform(0, 1, (300, 256)).astype(np.float32)
    buffers = SrBuffers(keep=2)

    def address(array: np.ndarray) -> int:
        return int(array.__array_interface__["data"][0])

    payload, _ = encode_sr(image, "uint16", buffers.take(image.shape))
    np.testing.assert_array_equal(payload, encode_sr(image, "uint16")[0])  # same integers
    first = address(payload)
    assert address(buffers.take(image.shape)) != first  # the payload (a view) still held
    del payload
    assert address(buffers.take(image.shape)) == first  # let go: reused, no fresh array
    with pytest.raises(ValueError, match="uint16"):
        encode_sr(image, "uint16", np.empty((300, 255), np.uint16))
    # a payload handed to ZeroMQ (copy=False) stays out of reach until it has been sent
    context = zmq.Context()
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    try:
        push.bind("inproc://sr-buffers")
        pull.connect("inproc://sr-buffers")  # queued for it, unread: ZeroMQ holds the payload
        payload, _ = encode_sr(image, "uint16", buffers.take(image.shape))
        in_flight = address(payload)
        push.send_multipart(encode(header_for(Kind.SR_RESULT, "run", 1, payload), payload),
                            copy=False)
        del payload
        for _ in range(3):  # ZeroMQ holds it: never handed out (overwritten) before it is read
            held = buffers.take(image.shape)
            assert address(held) != in_flight
            held[...] = 0
        assert pull.poll(5000)
        received = np.frombuffer(pull.recv_multipart()[1], np.uint16).reshape(image.shape)
        np.testing.assert_array_equal(received, encode_sr(image, "uint16")[0])
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        context.term()
