"""Trust records in the live pipeline: the worker checks every Nth set, the wire carries it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from acquisition import wire
from inference import live_trust
from inference.live_trust import TrustMonitor, trust_info
from inference.reconstruction import make_reconstructor
from inference.trust import TrustRecord
from inference.worker import WorkerState, _handle
from sim_emulator.microscope import EmulatorConfig, Microscope


def raw_message(raw: np.ndarray, time_point: int) -> wire.Message:
    header = wire.header_for(wire.Kind.RAW_SET, "run", time_point, raw, time_point=time_point,
                             channel=0, n_orientations=3, n_phases=3)
    return wire.decode(wire.encode(header, raw))


def test_worker_results_with_trust_pass_the_strict_schema() -> None:
    """Every 2nd set of a Wiener channel carries a trust record the wire's schema accepts
    (a field the schema lacks would make the acquisition reject every such result)."""
    scope = Microscope(EmulatorConfig(size_px=64, photon_count_e=300.0, seed=1))
    wiener = make_reconstructor("wiener")
    state = WorkerState(trust={0: TrustMonitor(wiener, every=2)})
    received: list[wire.Message] = []

    def send(fields: dict, kind: wire.Kind, array: np.ndarray | None) -> bool:
        fields = dict(fields)
        header = wire.header_for(kind, str(fields.pop("run_id")), len(received), array, **fields)
        received.append(wire.decode(wire.encode(header, array)))  # the acquisition's check
        return True

    for t in range(3):
        _handle(raw_message(scope.render_set(0.1 * t), t), {0: wiener}, state, send)
    assert [m.header.kind for m in received] == [wire.Kind.SR_RESULT] * 3
    trust = [m.header.info.get("trust") for m in received]
    assert trust[1] is None and trust[0] is not None and trust[2] is not None
    for record in (trust[0], trust[2]):
        assert 0.5 < record["raw_chi2"] < 3.0  # Wiener explains its raw data to the noise
        assert record["resolution_scaled_pearson"] > 0.9
        assert np.asarray(record["raw_chi2_map"]).shape == (8, 8)  # 64 raw px / 8


def test_schema_refuses_a_malformed_trust_record() -> None:
    image = np.zeros((8, 8), dtype=np.float32)
    good = {"raw_chi2": 1.2, "resolution_scaled_pearson": 0.99,
            "beyond_support_fraction": 0.0, "raw_chi2_map": [[1.0, 1.1], [0.9, 1.3]]}
    bad_cases = [{**good, "raw_chi2": math.nan}, {**good, "raw_chi2_map": [[1.0, math.inf]]},
                 {**good, "shift_raw_px": [0.0, 0.0]}, {**good, "resolution_scaled_pearson": 1.5},
                 {k: v for k, v in good.items() if k != "raw_chi2"}]
    header = wire.header_for(wire.Kind.SR_RESULT, "run", 0, image, info={"trust": good})
    assert wire.decode(wire.encode(header, image)).header.info["trust"] == good
    for n, trust in enumerate(bad_cases):
        bad = wire.header_for(wire.Kind.SR_RESULT, "run", n + 1, image, info={"trust": trust})
        with pytest.raises(wire.WireError):
            wire.decode(wire.encode(bad, image))


def test_non_finite_record_is_not_sent() -> None:
    record = TrustRecord(raw_chi2=math.nan, resolution_scaled_pearson=0.9, rsf_sigma_sr_px=1.0,
                         beyond_support_fraction=0.0, shift_raw_px=(0.0, 0.0))
    assert trust_info(record, np.ones((2, 2))) is None
    finite = record.model_copy(update={"raw_chi2": 1.0})
    assert trust_info(finite, np.array([[1.0, np.nan]])) is None
    assert trust_info(finite, np.ones((2, 2))) is not None


def test_networks_get_estimated_parameters_cached_between_re_estimates(monkeypatch) -> None:
    """A reconstructor without its own pattern parameters (a network): the monitor estimates
    them on the frames, keeps them, and estimates again once pattern_every_sets have passed."""
    scope = Microscope(EmulatorConfig(size_px=64, photon_count_e=300.0, seed=1))
    wiener = make_reconstructor("wiener")
    calls: list[int] = []
    real = live_trust.estimate_sim_parameters

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(live_trust, "estimate_sim_parameters", counting)

    class Network:  # SR image from Wiener, but no pattern parameters of its own
        model_name = "some-network"

        def reconstruct(self, raw):
            result = wiener.reconstruct(raw)
            result.model_name = "some-network"
            return result

    monitor = TrustMonitor(Network(), every=2, pattern_every_sets=4)
    chi2 = []
    for t in range(6):
        raw = scope.render_set(0.1 * t)
        result = Network().reconstruct(raw)
        if monitor.due():
            record, _ = monitor.check(raw, result.image, result.model_name)
            chi2.append(record.raw_chi2)
    assert len(chi2) == 3 and len(calls) == 2  # sets 0, 2 (cached), 4 (re-estimated)
    assert all(0.5 < value < 3.0 for value in chi2), chi2
    assert monitor.pixel_size_nm == 62.6


def test_reconstructors_own_parameters_are_used_and_wrong_ones_flagged() -> None:
    """A reconstructor that keeps pattern parameters (--model auto) is checked with them: its
    own estimate gives a faithful record, phases off by 1 rad a raised raw_chi2."""
    scope = Microscope(EmulatorConfig(size_px=64, photon_count_e=300.0, seed=1))
    raw = scope.render_set(0.0)
    wiener = make_reconstructor("wiener")
    image = wiener.reconstruct(raw).image

    class Auto:
        model_name = "auto"

        def __init__(self, parameters):
            self.parameters = parameters

    right = wiener.last_fit.parameters
    wrong = right.model_copy(deep=True)
    for orientation in wrong.orientations:
        orientation.phases_rad = [p + 1.0 for p in orientation.phases_rad]
    good, _ = TrustMonitor(Auto(right), every=1).check(raw, image, "dfcan-sim")
    bad, _ = TrustMonitor(Auto(wrong), every=1).check(raw, image, "dfcan-sim")
    assert good.raw_chi2 < 3.0 < bad.raw_chi2, (good.raw_chi2, bad.raw_chi2)


def _summary_chi2(output: str) -> float:
    import re

    found = re.search(r"raw_chi2 median ([0-9.]+)", output)
    assert found, output
    return float(found.group(1))


def test_reconstruct_and_predict_summaries_print_the_trust_record(tmp_path) -> None:
    """`livesim reconstruct` and `livesim predict` summaries give the trust record of every
    Nth time point: Wiener SIM is explained by its raw data, an untrained network is not."""
    import torch
    from typer.testing import CliRunner

    from acquisition.cli import build_app
    from inference.model_file import save_model
    from inference.models import Dfcan, DfcanOptions

    scope = Microscope(EmulatorConfig(size_px=64, photon_count_e=300.0, seed=1))
    stack = tmp_path / "raw.npy"
    np.save(stack, np.stack([scope.render_set(0.1 * t) for t in range(3)]))
    runner = CliRunner()
    done = runner.invoke(build_app(), [
        "reconstruct", str(stack), "-o", str(tmp_path / "sr.npy"), "--pixel-size-nm", "62.6",
        "--na", "1.35", "--wavelength-nm", "525", "--trust-every", "2"])
    assert done.exit_code == 0, done.output
    assert "trust (2 of 3 time points" in done.output, done.output
    assert _summary_chi2(done.output) < 3.0
    off = runner.invoke(build_app(), [
        "reconstruct", str(stack), "-o", str(tmp_path / "sr0.npy"), "--pixel-size-nm", "62.6",
        "--na", "1.35", "--wavelength-nm", "525", "--trust-every", "0"])
    assert off.exit_code == 0 and "trust" not in off.output

    torch.manual_seed(0)
    model = tmp_path / "untrained.pt"
    save_model(model, Dfcan(DfcanOptions(width=8, groups=1, blocks=1, reduction=4,
                                         spectrum_size=16)), architecture="dfcan", mode="sim")
    done = runner.invoke(build_app(), ["predict", str(stack), "-m", str(model),
                                       "-o", str(tmp_path / "dl.npy")])
    assert done.exit_code == 0, done.output
    assert "trust (1 of 3 time points" in done.output, done.output
    assert _summary_chi2(done.output) > 3.0  # an untrained network invents the image
