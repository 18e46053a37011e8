"""The emulated XY stage and focus drive: moving the stage moves the sample, z defocuses it."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from hardware.errors import RigError
from sim_emulator.microscope import EmulatorConfig
from sim_emulator.rig import emulated_rig, optical_bench

PIXEL_UM = 0.0626


def test_stage_moves_the_sample_and_focus_blurs_it() -> None:
    rig = emulated_rig(EmulatorConfig(size_px=128, photon_count_e=2000.0, seed=3))
    try:
        rig.aotf.set_line(488)
        home = np.mean(rig.snap(4), axis=0)
        assert rig.move_stage(1.5, -1.0) == (1.5, -1.0, 0.0)
        moved = np.mean(rig.snap(4), axis=0)
        rig.move_stage(z_um=1.0)
        defocused = np.mean(rig.snap(4), axis=0)
        with pytest.raises(RigError, match="outside the travel"):
            rig.move_stage(x_um=1e6)
        assert rig.move_stage() == (1.5, -1.0, 1.0)  # a refused move leaves the stage put
        sensor = optical_bench(rig).microscope("sim").sensor
    finally:
        rig.close()
    # flat-field first, as a calibrated rig would: the camera's gain map (1 % spread) times the
    # out-of-focus haze is a fixed pattern that does not move with the stage and would pin the
    # whitened cross-correlation at zero shift
    home, moved, defocused = (
        (image - sensor.offset_map_adu) / sensor.gain_map_adu_per_e
        for image in (home, moved, defocused)
    )
    shift, _, _ = phase_cross_correlation(home, moved, upsample_factor=10)
    # the stage went +x, -y: the sample (and the image) moved -x, +y
    np.testing.assert_allclose(shift, [-1.0 / PIXEL_UM, 1.5 / PIXEL_UM], atol=0.5)

    def detail(image: np.ndarray) -> float:
        return float(np.var(np.diff(image, axis=1)))

    assert detail(defocused) < 0.5 * detail(moved)
    assert defocused.mean() == pytest.approx(moved.mean(), rel=0.05)  # same light, spread out
