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
