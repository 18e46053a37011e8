"""sim_emulator.training_pairs: pair folders for `pairs:` training data."""

from __future__ import annotations

import numpy as np
import pytest


def test_pair_folder_keeps_the_haze_as_a_smooth_background(tmp_path) -> None:
    """`livesim training-pairs`: raw in e-, the target = in-focus SR + the haze (smooth, as
    much light as the wide-field's haze), pair i a pure function of i (resumable)."""
    from scipy.ndimage import gaussian_filter
    from typer.testing import CliRunner

    from acquisition.cli import build_app

    args = ["training-pairs", "-o", str(tmp_path / "hazy"), "--count", "2", "--size-px", "64"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    CliRunner().invoke(build_app(), [*args[:2], str(tmp_path / "clear"), *args[3:],
                                     "--no-keep-haze"])
    for i in range(2):
        hazy = np.load(tmp_path / "hazy" / f"pair_{i:05d}.npz")
        clear = np.load(tmp_path / "clear" / f"pair_{i:05d}.npz")
        np.testing.assert_array_equal(hazy["raw"], clear["raw"])
        haze = hazy["gt"] - clear["gt"]
        assert haze.min() >= 0 and haze.mean() > 0.1 * clear["gt"].mean()
        assert np.std(haze - gaussian_filter(haze, 6)) < 0.02 * haze.mean()  # smooth
        # the target holds the wide-field's light: SR pixels sum to the raw frames' mean
        assert hazy["gt"].sum() == pytest.approx(hazy["raw"].mean(axis=0).sum(), rel=0.1)
    again = CliRunner().invoke(build_app(), args)
    assert "wrote 0 pair(s), 2 already present" in again.output
