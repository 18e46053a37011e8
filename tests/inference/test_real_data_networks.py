"""The trust issue's real-data figures (inference/real_data.py, `livesim evaluate-real`): the
real TIRF-SIM microtubule stack and the T-SIM ER regions in ../shared (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition.cli import build_app
from inference.real_data import er_report, microtubule_report

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(scope="module")
def shared() -> Path:
    if not (SHARED / "dlsr_assets").is_dir() or not (SHARED / "real_sim").is_dir():
        pytest.skip(f"real data (dlsr_assets/, real_sim/) not found in {SHARED}")
    return SHARED


def test_wiener_rows_on_the_real_microtubule_stack(shared: Path) -> None:
    """Wiener SIM on the per-orientation electron conversion: 1.5x narrower filaments,
    consistent with the wide-field, and a blur of the wide-field correlates with it less."""
    blurred = microtubule_report(shared, {"wide-field x2": _upsampled_wide_field})
    wiener, wide_field = blurred
    assert wiener.method == "wiener" and wiener.fine_correlation_with_wiener == pytest.approx(1.0)
    assert wiener.narrowing >= 1.5 and wiener.n_profiles >= 100
    assert wiener.resolution_scaled_pearson >= 0.9
    # the wide-field itself, offered as an "SR" method, is as wide as the wide-field
    assert wide_field.narrowing == pytest.approx(1.0, abs=0.1)
    assert wide_field.fine_correlation_with_wiener == pytest.approx(
        wide_field.wide_field_fine_correlation_with_wiener, abs=0.01
    )


def _upsampled_wide_field(raw: np.ndarray) -> np.ndarray:
    from inference.assessment import upsample_widefield

    return upsample_widefield(raw.mean(axis=0), 2)


def test_evaluate_real_names_a_missing_data_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["evaluate-real", "--shared", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no dlsr_assets/ and real_sim/" in result.output


def test_er_report_scores_wiener_above_wide_field(shared: Path) -> None:
    rows = {r.method: r for r in er_report(shared, [3], {})}
    assert rows["wiener"].pearson > rows["wide-field"].pearson + 0.05
    assert rows["wiener"].nrmse < 0.85 * rows["wide-field"].nrmse


@pytest.fixture(scope="module")
def default_network():  # type: ignore[no-untyped-def]
    from inference.model_file import load_model
    from inference.reconstruction import ModelReconstructor

    reconstructor = ModelReconstructor(load_model("dfcan-sim"), None, device="cpu")
    return lambda raw: np.asarray(reconstructor.reconstruct(raw).image)


def test_default_network_on_the_real_microtubule_stack(shared: Path, default_network) -> None:
    """Done-when (#18): filaments >= 1.5x narrower than wide-field (measured 1.65x; Wiener SIM
    1.60x), resolution-scaled Pearson with the wide-field >= 0.9 over the whole field, no
    invented texture (at fine scale it agrees with the Wiener SIM of the same stack better than
    the wide-field does). With the authors' min-max normalisation the same weights drew 1.43x:
    one -40 e- pixel of this stack set the input scale (docs/assessment.md)."""
    _, network = microtubule_report(shared, {"dfcan-sim": default_network})
    assert network.narrowing >= 1.5, network
    assert network.n_profiles >= 100
    assert network.resolution_scaled_pearson >= 0.9, network
    assert network.fine_correlation_with_wiener > network.wide_field_fine_correlation_with_wiener


def test_default_network_beats_wiener_on_the_held_out_er_region(
    shared: Path, default_network
) -> None:
    """Done-when (#18): on ER_3 (never trained on; ER_1 and ER_2 were) the network beats
    wide-field and Wiener SIM in Pearson and NRMSE against the high-SNR reference."""
    rows = {r.method: r for r in er_report(shared, [3], {"dfcan-sim": default_network})}
    network = rows["dfcan-sim"]
    for other in ("wide-field", "wiener"):
        assert network.pearson > rows[other].pearson, (network, rows[other])
        assert network.nrmse < rows[other].nrmse, (network, rows[other])


def test_raw_consistency_on_the_real_stack_rises_on_known_failures(shared: Path) -> None:
    """On the real microtubule set (about 12 e- per pixel and frame) Wiener SIM explains the
    raw frames to the noise (chi2 ~1.07); wrong pattern phases and an invented texture each
    raise chi2 by far more than its sampling noise (~0.002 for 9 x 256 x 256 pixels), though
    at this light level by 2-15 %, not the 3-20x of a 300 e- emulator field (docs/trust.md)."""
    from calibration.otf import MeasuredOtf
    from inference.real_data import MICROTUBULE_OTF, microtubule_electrons
    from inference.trust import trust_record
    from inference.wiener import WienerConfig, WienerSim

    electrons, pixel_nm = microtubule_electrons(shared)
    otf = MeasuredOtf.from_mrc(shared / MICROTUBULE_OTF)
    sim = WienerSim.from_raw(electrons, pixel_nm, otf,
                             WienerConfig(background_adu=float(np.percentile(electrons, 0.5))))
    parameters, wiener = sim.parameters, sim.reconstruct(electrons)
    faithful = trust_record(wiener, electrons, parameters, otf).raw_chi2
    assert 0.9 < faithful < 1.15
    wrong = parameters.model_copy(deep=True)
    for orientation in wrong.orientations:
        orientation.phases_rad = [phase + 1.0 for phase in orientation.phases_rad]
    assert trust_record(wiener, electrons, wrong, otf).raw_chi2 > faithful + 0.05
    yy, xx = np.mgrid[: wiener.shape[0], : wiener.shape[1]]
    texture = np.cos(2 * np.pi * (0.05 * xx + 0.015 * yy))
    texture += np.cos(2 * np.pi * (0.05 * yy - 0.02 * xx))
    textured = wiener + 0.3 * wiener.std() * texture
    assert trust_record(textured, electrons, parameters, otf).raw_chi2 > faithful + 0.02


def test_bundled_dfgan_holds_on_the_real_stacks(shared: Path) -> None:
    """The GAN fine-tune of dfcan-sim keeps the real filaments whole and narrow (measured 1.60x,
    the previous idealised-emulator dfgan-sim 1.46x) and stays level with Wiener SIM on the
    held-out ER region (measured 0.912 / 0.0263 against Wiener's 0.912 / 0.0263; the previous
    model 0.889 / 0.0294)."""
    from inference.model_file import load_model
    from inference.reconstruction import ModelReconstructor

    reconstructor = ModelReconstructor(load_model("dfgan-sim"), None, device="cpu")
    gan = {"dfgan-sim": lambda raw: np.asarray(reconstructor.reconstruct(raw).image)}
    _, network = microtubule_report(shared, gan)
    assert network.narrowing >= 1.5, network
    assert network.resolution_scaled_pearson >= 0.9, network
    assert network.fine_correlation_with_wiener > network.wide_field_fine_correlation_with_wiener
    rows = {r.method: r for r in er_report(shared, [3], gan)}
    assert rows["dfgan-sim"].pearson > rows["wide-field"].pearson + 0.05
    assert rows["dfgan-sim"].nrmse <= 1.02 * rows["wiener"].nrmse, rows
