"""calibration.photon_count.average_photon_count: the DFCAN definition, vectorised."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.photon_count import average_photon_count, foreground_mask


def _blob_image(level_adu: float, offset_adu: float = 100.0) -> np.ndarray:
    image = np.full((96, 96), offset_adu, dtype=np.float32)
    image[30:70, 20:60] += level_adu  # the structure: one bright square
    return image


def test_counts_only_the_structure_and_converts_to_electrons() -> None:
    image = _blob_image(50.0)
    # structure pixels hold 50 ADU above offset; at 0.5 e-/ADU that is 25 e-
    value = average_photon_count(image, 100.0, 0.5)
    assert isinstance(value, float)
    mask = foreground_mask(image - 100.0)
    # the sigma-5 low-pass crosses 0.2 of the step 0.84 sigma = 4.2 px outside the square
    assert (40 + 2 * 4.2) ** 2 * 0.93 < mask.sum() < (40 + 2 * 4.2) ** 2
    assert mask[50, 40] and mask[30 - 3, 40] and not mask[30 - 6, 40] and not mask[5, 90]
    # the unfiltered counts of the masked pixels are averaged: 1600 px at 25 e-
    assert value == pytest.approx(25.0 * 1600 / mask.sum(), rel=1e-5)


def test_batch_matches_single_images_and_accepts_offset_maps() -> None:
    images = np.stack([_blob_image(20.0), _blob_image(80.0), _blob_image(300.0)])
    batch = average_photon_count(images, np.full((96, 96), 100.0), 2.0)
    singles = [average_photon_count(image, 100.0, 2.0) for image in images]
    assert isinstance(batch, np.ndarray) and batch.shape == (3,)
    assert batch == pytest.approx(singles, rel=1e-6)
    assert batch[2] / batch[0] == pytest.approx(15.0, rel=0.01)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="electrons_per_adu"):
        average_photon_count(_blob_image(10.0), 100.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        average_photon_count(np.zeros(10), 0.0, 1.0)
