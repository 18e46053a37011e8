"""Training data: noisy raw SIM sets with their noiseless wide-field and SR targets.

Each pair is a fresh seeded field of view (its own sample), imaged at a given photon level
through the full forward model. Small crops (64-128 px) take a few milliseconds each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator
from scipy.ndimage import zoom

from settings_file import StrictModel
from sim_emulator.illumination import SimMode
from sim_emulator.microscope import EmulatorConfig, Microscope, StructureChoice

Range = tuple[float, float]


class DomainRandomisation(StrictModel):
    """Ranges each training field's instrument is drawn from (uniform; photon count and
    background log-uniform), so a network does not learn one microscope's OTF, pattern and
    background by heart. The defaults span common 2D-SIM/TIRF-SIM set-ups."""

    na: Range = (1.2, 1.49)
    emission_nm: Range = (500.0, 680.0)
    pixel_size_nm: Range = (55.0, 70.0)
    period_fraction_of_cutoff: Range = Field(
        default=(0.75, 1.0), description="|k| / (2 NA / lambda_em); TIRF-SIM reaches 1"
    )
    angle_offset_rad: Range = (0.0, 1.0471975511965976)  # any rotation of the 3 orientations
    modulation: Range = (0.55, 0.95)
    background_fraction: Range = Field(default=(0.2, 5.0), description="log-uniform")
    spherical_waves_rms: Range = (0.0, 0.1)
    photon_count_e: Range = Field(default=(12.0, 600.0), description="log-uniform")

    @model_validator(mode="after")
    def _ordered(self) -> DomainRandomisation:
        for name in type(self).model_fields:
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name}={getattr(self, name)} needs low <= high")
        for name in ("background_fraction", "photon_count_e"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name}={getattr(self, name)} is log-uniform: needs low > 0")
        return self

    def draw(self, base: EmulatorConfig, rng: np.random.Generator) -> EmulatorConfig:
        """``base`` with one draw of every randomised quantity (its other fields kept)."""

        def uniform(name: str) -> float:
            low, high = getattr(self, name)
            return float(rng.uniform(low, high))

        def log_uniform(name: str) -> float:
            low, high = getattr(self, name)
            return float(np.exp(rng.uniform(np.log(low), np.log(high))))

        data = base.model_dump(exclude_unset=True)
        optics = {**dict(data.get("optics", {})), "na": uniform("na"),
                  "emission_nm": uniform("emission_nm"),
                  "pixel_size_nm": uniform("pixel_size_nm"),
                  "background_fraction": log_uniform("background_fraction"),
                  "spherical_waves_rms": uniform("spherical_waves_rms")}
        cutoff = 2.0 * optics["na"] / optics["emission_nm"]
        patterns = {**dict(data.get("patterns", {})),
                    "period_nm": 1.0 / (uniform("period_fraction_of_cutoff") * cutoff),
                    "angle_offset_rad": uniform("angle_offset_rad"),
                    "modulation": uniform("modulation"),
                    "error_seed": int(rng.integers(0, 2**31 - 1))}
        data.update(optics=optics, patterns=patterns, photon_count_e=log_uniform("photon_count_e"))
        return EmulatorConfig.model_validate(data)


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
    randomisation: DomainRandomisation | None = None,
) -> Iterator[TrainingPair]:
    """``count`` pairs with seeds seed, seed+1, ...; a (low, high) ``photon_count_e`` range is
    sampled log-uniformly per pair (seeded), as for training across noise levels.

    With ``randomisation`` every pair's instrument (NA, emission, pixel size, pattern period
    and orientation, modulation, background, aberration, photon count) is drawn from its
    ranges instead (``photon_count_e`` is then ignored); ``pair.photon_count_e`` is the draw."""
    if count < 0:
        raise ValueError(f"count={count} must be >= 0")
    rng = np.random.default_rng([seed, 0x7A1])
    for i in range(count):
        if randomisation is not None:
            drawn = randomisation.draw(base or EmulatorConfig(), rng)
            yield make_training_pair(structure, mode, drawn.photon_count_e, size_px, seed + i,
                                     base=drawn)
            continue
        if isinstance(photon_count_e, tuple):
            low, high = photon_count_e
            if not 0 < low <= high:
                raise ValueError(f"photon_count_e range {photon_count_e} needs 0 < low <= high")
            level = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        else:
            level = float(photon_count_e)
        yield make_training_pair(structure, mode, level, size_px, seed + i, base=base)


# Ranges around the real rigs the project measures against (the TIRF-SIM microtubule stack:
# NA 1.49, 62.6 nm pixels, 180 nm pattern, ~12 e-; the T-SIM ER stacks: ~169 nm pattern,
# 10-27 e-), dim to moderate light, haze from a third to five times the in-focus light.
REAL_RIGS = DomainRandomisation(
    na=(1.3, 1.49),
    emission_nm=(500.0, 600.0),
    pixel_size_nm=(58.0, 67.0),
    period_fraction_of_cutoff=(0.85, 1.0),
    modulation=(0.5, 0.95),
    background_fraction=(0.3, 5.0),
    photon_count_e=(5.0, 250.0),
)
PAIR_SEED_BASE = 10_000


def haze_on_sr_grid(pair: TrainingPair, config: EmulatorConfig) -> np.ndarray:
    """The out-of-focus haze of ``pair`` (made with ``config``) on the SR grid, per SR pixel.

    A 2D SIM set cannot tell out-of-focus light from in-focus light at low spatial frequency,
    so a faithful reconstruction keeps the haze as a smooth background (Wiener SIM does). The
    haze is the pair's noiseless wide-field minus the in-focus part; the in-focus part comes
    from the same sample without haze, rescaled by the ratio of the two SR images' totals
    (the emulator normalises each configuration to the same photon count)."""
    clear = config.model_copy(
        update={"optics": config.optics.model_copy(update={"background_fraction": 0.0})}
    )
    truth = Microscope(clear).ground_truth(0.0)
    ratio = float(pair.sr_gt.sum()) / max(float(truth.sr.sum()), 1e-12)
    haze = np.maximum(pair.wf_gt - ratio * truth.wf, 0.0)
    factor = pair.sr_gt.shape[-1] // haze.shape[-1]
    return (zoom(haze, factor, order=1) / factor**2).astype(np.float32)


def write_pair_folder(
    folder: Path,
    start: int,
    stop: int,
    structures: list[StructureChoice],
    randomisation: DomainRandomisation = REAL_RIGS,
    size_px: int = 128,
    keep_haze: bool = True,
) -> int:
    """Write pairs ``start`` .. ``stop - 1`` as ``pair_NNNNN.npz`` (``raw`` in e-, ``gt`` the SR
    target, plus the haze with ``keep_haze``, ``label``) for `pairs:<folder>` training data.

    Pair ``i`` is a pure function of ``i``: instrument drawn with seed PAIR_SEED_BASE + i,
    structure ``structures[i % len]``; files already present are kept (resumable). Returns
    the number written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(start, stop):
        path = folder / f"pair_{i:05d}.npz"
        if path.exists():
            continue
        rng = np.random.default_rng(PAIR_SEED_BASE + i)
        base = randomisation.draw(EmulatorConfig(), rng)
        structure = structures[i % len(structures)]
        seed = int(rng.integers(0, 2**31 - 1))
        pair = make_training_pair(structure, "sim", base.photon_count_e, size_px, seed, base=base)
        target = pair.sr_gt
        if keep_haze:
            config = training_config(structure, "sim", base.photon_count_e, size_px, seed, base)
            target = target + haze_on_sr_grid(pair, config)
        np.savez(path, raw=pair.raw_electrons(), gt=target.astype(np.float32),
                 label=f"{structure} {base.photon_count_e:.1f} e- seed {i}")
        written += 1
    return written
