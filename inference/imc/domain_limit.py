"""Each IMC-SR model's own domain limits, measured on in-domain fields it was not trained on.

The live separator (`inference.imc.live`) flags a frame whose unexplained fraction exceeds the
model's limit or whose channel shares leave the model's ranges. How well a model explains
in-domain input differs between models (a better trained model leaves less residual on the
trained structures, and on foreign ones too), so both are measured per model and stored in its
file (`ModelInfo.imc_unexplained_limit`, `ModelInfo.imc_channel_shares`). The rule, over the
SR images of in-domain held-out fields (every reconstruction method of each field):

    unexplained limit   = MARGIN x the LIMIT_PERCENTILE-th percentile of the fractions
    share range, per channel = [(1 - MARGIN_SHARE) x the SHARE_PERCENTILES[0]-th percentile,
                                (1 + MARGIN_SHARE) x the SHARE_PERCENTILES[1]-th percentile]

`livesim imc-domain-limit MODEL --fields F/calibration -o OUT.pt` measures them on live fields
(`livesim imc-live-fields`: the trained mixture through DFCAN-SIM and Wiener SIM) and writes a
copy of the model file with them (same weights, same weights SHA-256).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.domain import Range
from inference.imc.live import ImcSeparator
from inference.imc.live_data import LiveField
from inference.model_file import load_model, write_model_file

LIMIT_PERCENTILE = 99.0
MARGIN = 1.1
SHARE_PERCENTILES = (0.5, 99.5)
MARGIN_SHARE = 0.1


@dataclass
class InDomain:
    """Per in-domain SR image: the unexplained fraction and the channel shares (N, C)."""

    fractions: np.ndarray
    shares: np.ndarray


def domain_limit(in_domain_fractions: Sequence[float] | np.ndarray) -> float:
    """The unexplained limit from in-domain fractions: MARGIN x their LIMIT_PERCENTILE-th
    percentile (linear interpolation)."""
    values = np.asarray(in_domain_fractions, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("a domain limit needs at least one finite in-domain unexplained fraction")
    return float(MARGIN * np.percentile(values, LIMIT_PERCENTILE))


def share_ranges(in_domain_shares: np.ndarray) -> list[Range]:
    """Per channel, the range of its share from in-domain shares (N, C): the
    SHARE_PERCENTILES widened by MARGIN_SHARE on each side, within [0, 1]."""
    shares = np.asarray(in_domain_shares, dtype=np.float64)
    if shares.ndim != 2 or len(shares) == 0 or not np.isfinite(shares).all():
        raise ValueError("share ranges need finite in-domain channel shares (images x channels)")
    low, high = np.percentile(shares, SHARE_PERCENTILES, axis=0)
    return [Range(low=max(0.0, (1 - MARGIN_SHARE) * lo), high=min(1.0, (1 + MARGIN_SHARE) * hi))
            for lo, hi in zip(low, high, strict=True)]


def measure_in_domain(separator: ImcSeparator, fields: Sequence[LiveField]) -> InDomain:
    """Separate every SR image (each method) of `fields` as live; collect the statistics."""
    fractions, shares = [], []
    for field in fields:
        for image in field.sr.values():
            if separator.temporal:  # a still window of the one frame
                separator.reset()
                separator.push(image)
                separator.flush()
            else:
                separator.separate(image, field.widefield)
            fractions.append(separator.last_unexplained)
            shares.append(separator.last_shares.copy())
    return InDomain(np.array(fractions), np.array(shares).reshape(len(fractions), -1))


def write_domain_limits(
    model: str | Path, output: Path, limit: float, shares: list[Range] | None
) -> None:
    """Copy model file `model` (bundled name or path) to `output` with the limits recorded."""
    loaded = load_model(model)
    write_model_file(output, loaded.module, loaded.info.model_copy(
        update={"imc_unexplained_limit": limit, "imc_channel_shares": shares}))
