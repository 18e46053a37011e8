"""Training data: noisy raw SIM sets with their noiseless wide-field and SR targets.

Each pair is a fresh seeded field of view (its own sample), imaged at a given photon level
through the full forward model. Small crops (64-128 px) take a few milliseconds each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sim_emulator.illumination import SimMode
from sim_emulator.microscope import EmulatorConfig, Microscope, StructureChoice


@dataclass
class TrainingPair:
    """One example: raw set, noisy wide-field, noiseless references and camera constants."""

    raw: np.ndarray  # uint16 (P, Y, X) camera frames
    wf: np.ndarray  # float32 (Y, X) mean of the raw frames minus the offset, in ADU
    wf_gt: np.ndarray  # float32 (Y, X) noiseless wide-field, expected e- per pixel
    sr_gt: np.ndarray  # float32 (sY, sX) noiseless SR target, expected e- per SR pixel
    offset_adu: np.ndarray  # float32 (Y, X) camera offset map
    electrons_per_adu: float
    photon_count_e: float  # requested average photon count (e-) of the wide-field image
    seed: int

    def raw_electrons(self) -> np.ndarray:
        """Raw frames converted to photo-electrons (offset removed): float32 (P, Y, X)."""
        return (self.raw.astype(np.float32) - self.offset_adu) * np.float32(
            self.electrons_per_adu
        )


def training_config(
    structure: StructureChoice,
    mode: SimMode = "sim",
    photon_count_e: float = 300.0,
    size_px: int = 128,
    seed: int = 0,
    base: EmulatorConfig | None = None,
) -> EmulatorConfig:
    """The emulator configuration of one training field of view (``base`` supplies the rest)."""
    base = base or EmulatorConfig()
    data = base.model_dump(exclude_unset=True)
    data.update(structure=structure, photon_count_e=photon_count_e, size_px=size_px, seed=seed)
    patterns = dict(data.get("patterns", {}))
    patterns.update(mode=mode)
    if "n_orientations" not in base.patterns.model_fields_set:
        patterns.pop("n_orientations", None)
        patterns.pop("n_phases", None)
    data["patterns"] = patterns
    return EmulatorConfig.model_validate(data)


def make_training_pair(
    structure: StructureChoice,
    mode: SimMode = "sim",
    photon_count_e: float = 300.0,
    size_px: int = 128,
    seed: int = 0,
    time_s: float = 0.0,
    base: EmulatorConfig | None = None,
) -> TrainingPair:
    """One (raw, wf, sr) example of ``structure`` at ``photon_count_e`` on a ``size_px`` crop."""
    microscope = Microscope(
        training_config(structure, mode, photon_count_e, size_px, seed, base)
    )
    raw = microscope.render_set(time_s)
    truth = microscope.ground_truth(time_s)
    offset = microscope.sensor.offset_map_out_adu()
    wf = raw.astype(np.float32).mean(axis=0) - offset
    return TrainingPair(
        raw=raw,
        wf=wf.astype(np.float32),
        wf_gt=truth.wf,
        sr_gt=truth.sr,
        offset_adu=offset,
        electrons_per_adu=microscope.config.sensor.electrons_per_adu,
        photon_count_e=photon_count_e,
        seed=seed,
    )


def training_pairs(
    structure: StructureChoice,
    count: int,
    mode: SimMode = "sim",
    photon_count_e: float | tuple[float, float] = 300.0,
    size_px: int = 128,
    seed: int = 0,
    base: EmulatorConfig | None = None,
) -> Iterator[TrainingPair]:
    """``count`` pairs with seeds seed, seed+1, ...; a (low, high) ``photon_count_e`` range is
    sampled log-uniformly per pair (seeded), as for training across noise levels."""
    if count < 0:
        raise ValueError(f"count={count} must be >= 0")
    rng = np.random.default_rng([seed, 0x7A1])
    for i in range(count):
        if isinstance(photon_count_e, tuple):
            low, high = photon_count_e
            if not 0 < low <= high:
                raise ValueError(f"photon_count_e range {photon_count_e} needs 0 < low <= high")
            level = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        else:
            level = float(photon_count_e)
        yield make_training_pair(structure, mode, level, size_px, seed + i, base=base)
