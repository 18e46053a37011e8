"""Training data sources: emulator pairs on the fly, BioSR folders, livesim run files.

Every source yields `Example`s: a raw set (P, Y, X) in camera units and its SR ground truth
(sY, sX). `PatchSampler` turns them into normalised, cropped, flipped and rotated tensors;
batch `k` depends only on (seed, k), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, get_args

import numpy as np

from inference.model_file import FRAMES_PER_MODE, Normalisation
from inference.preprocessing import normalise

if TYPE_CHECKING:
    from sim_emulator.microscope import EmulatorConfig

log = logging.getLogger(__name__)

TRAINING_PHOTON_RANGE = (15.0, 600.0)  # BioSR's span of average photon counts
CELL_FOLDER = re.compile(r"^Cell_(\d+)$")
RAW_LEVEL_FILE = re.compile(r"^RawSIMData_level_(\d+)\.mrc$")
BIOSR_GT_FILE = "SIM_gt.mrc"


class DataSourceError(ValueError):
    """A training data source that cannot be used (names the source and what is wrong)."""


@dataclass
class Example:
    """One training example: raw frames (P, Y, X) in camera units and the SR target (sY, sX)."""

    raw: np.ndarray
    sr_gt: np.ndarray
    label: str = ""


class DataSource(Protocol):
    """A source of examples: `example(index, rng)` for training, `validation(n)` held out."""

    description: str

    def example(self, index: int, rng: np.random.Generator) -> Example:
        """The training example for this draw (index and generator decide it)."""
        ...

    def validation(self, count: int) -> list[Example]:
        """`count` held-out examples (disjoint from the training examples)."""
        ...


class Sampler(Protocol):
    """Training batches and validation pairs, what the trainer draws from (`PatchSampler`;
    IMC-SR: `inference.imc.data`)."""

    description: str

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (N, C, y, x) and targets (N, C', y', x') of training step `step`."""
        ...

    def validation(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`count` held-out (input (C, Y, X), target (C', Y', X')) pairs, whole fields."""
        ...


def _structures(text: str) -> list[str]:
    from sim_emulator.microscope import StructureChoice

    allowed = get_args(StructureChoice)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise DataSourceError("emulator source needs a structure, e.g. emulator:microtubules")
    for name in names:
        if name not in allowed:
            raise DataSourceError(
                f"emulator structure {name!r} is unknown; choose from {', '.join(allowed)}"
            )
    return names


class EmulatorSource:
    """Fresh emulator fields of view per example, photon level log-uniform over 15-600.

    With ``randomised`` each training example's instrument (NA, emission, pixel size, pattern
    period and orientation, modulation, haze, aberration, photon count) is drawn from
    `sim_emulator.training_pairs.DomainRandomisation`'s ranges; validation fields keep the
    default instrument, so the validation curve stays comparable between runs.

    Training seeds lie in [0, 2**31); validation seeds start at `VALIDATION_SEED_BASE` and the
    assessment's at `ASSESSMENT_SEED_BASE`, so held-out fields are never trained on.
    """

    VALIDATION_SEED_BASE = 2**31 + 1_000
    ASSESSMENT_SEED_BASE = 2**31 + 1_000_000

    def __init__(
        self,
        structures: Sequence[str],
        mode: str,
        size_px: int,
        photon_range: tuple[float, float] = TRAINING_PHOTON_RANGE,
        randomised: bool = False,
    ) -> None:
        low, high = photon_range
        if not 0 < low <= high:
            raise DataSourceError(f"photon range {photon_range} needs 0 < low <= high")
        self.structures = list(structures)
        self.mode = "sim" if mode == "sisr" else mode
        self.size_px = size_px
        self.photon_range = (float(low), float(high))
        self.randomised = randomised
        kind = "emulator-randomised" if randomised else "emulator"
        self.description = (
            f"{kind}:{','.join(self.structures)} ({self.mode} raw, {size_px} px fields, "
            f"photon count {low:g}-{high:g} e- log-uniform)"
        )

    def _pair(
        self, structure: str, photons: float, seed: int, base: EmulatorConfig | None = None
    ) -> Example:
        from sim_emulator.training_pairs import make_training_pair

        pair = make_training_pair(
            structure,  # type: ignore[arg-type]
            self.mode,  # type: ignore[arg-type]
            photon_count_e=photons,
            size_px=self.size_px,
            seed=seed,
            base=base,
        )
        return Example(pair.raw, pair.sr_gt, f"{structure} {photons:.0f} e- seed {seed}")

    def example(self, index: int, rng: np.random.Generator) -> Example:
        structure = self.structures[int(rng.integers(len(self.structures)))]
        low, high = np.log(self.photon_range[0]), np.log(self.photon_range[1])
        photons = float(np.exp(rng.uniform(low, high)))
        base = None
        if self.randomised:
            from sim_emulator.microscope import EmulatorConfig
            from sim_emulator.training_pairs import DomainRandomisation

            ranges = DomainRandomisation(photon_count_e=self.photon_range)
            base = ranges.draw(EmulatorConfig(), rng)
            photons = base.photon_count_e
        return self._pair(structure, photons, int(rng.integers(0, 2**31 - 1)), base)

    def validation(self, count: int) -> list[Example]:
        levels = np.geomspace(*self.photon_range, num=max(count, 1))
        return [
            self._pair(
                self.structures[i % len(self.structures)],
                float(levels[i]),
                self.VALIDATION_SEED_BASE + i,
            )
            for i in range(count)
        ]


def _read_mrc(path: Path) -> np.ndarray:
    import mrcfile

    try:
        with mrcfile.open(path, permissive=True) as mrc:
            data = np.array(mrc.data)
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{path}: cannot read as MRC: {exc}") from exc
    if data.ndim not in (2, 3):
        raise DataSourceError(f"{path}: expected a 2-D image or 3-D stack, got {data.shape}")
    return data


@dataclass(frozen=True)
class BiosrItem:
    """One BioSR pair: a raw SIM file of one cell at one noise level and that cell's GT."""

    cell: int
    level: int
    raw_path: Path
    gt_path: Path


def scan_biosr(folder: Path) -> list[BiosrItem]:
    """All (cell, level) pairs of a BioSR folder, ordered by cell number then level."""
    if not folder.is_dir():
        raise DataSourceError(f"BioSR folder {folder} does not exist")
    items = []
    for cell_dir in sorted(folder.iterdir()):
        match = CELL_FOLDER.match(cell_dir.name)
        if not match or not cell_dir.is_dir():
            continue
        gt_path = cell_dir / BIOSR_GT_FILE
        raws = [
            (int(m.group(1)), p)
            for p in cell_dir.iterdir()
            if (m := RAW_LEVEL_FILE.match(p.name)) is not None
        ]
        if not raws:
            continue
        if not gt_path.is_file():
            raise DataSourceError(f"{cell_dir}: has RawSIMData_level_NN.mrc but no {BIOSR_GT_FILE}")
        for level, p in raws:
            items.append(BiosrItem(int(match.group(1)), level, p, gt_path))
    if not items:
        raise DataSourceError(
            f"{folder}: no Cell_XXX/RawSIMData_level_NN.mrc files (see docs/training.md)"
        )
    return sorted(items, key=lambda item: (item.cell, item.level))


class BiosrSource:
    """A BioSR-layout folder; the last cell(s) (about 10%, at least one) are held out."""

    def __init__(self, folder: Path, mode: str) -> None:
        self.folder = folder
        self.mode = mode
        self.items = scan_biosr(folder)
        cells = sorted({item.cell for item in self.items})
        n_held = max(1, len(cells) // 10) if len(cells) > 1 else 0
        held = set(cells[len(cells) - n_held :])
        self.train_items = [item for item in self.items if item.cell not in held]
        self.validation_items = [item for item in self.items if item.cell in held]
        if not self.validation_items:
            log.warning("%s has one cell: validation reuses the training examples", folder)
            self.validation_items = list(self.items)
        self._gt_cache: dict[Path, np.ndarray] = {}
        self.description = (
            f"biosr:{folder} ({len(cells)} cells, {len(self.items)} raw files; "
            f"held out cells {sorted(held)})"
        )

    def load(self, item: BiosrItem) -> Example:
        """The example of one (cell, level) file pair, with shapes checked."""
        raw = _read_mrc(item.raw_path)
        if raw.ndim == 2:
            raw = raw[None]
        expected = FRAMES_PER_MODE[self.mode]
        if self.mode != "sisr" and raw.shape[0] != expected:
            raise DataSourceError(
                f"{item.raw_path}: {raw.shape[0]} frames, a {self.mode} model needs {expected}"
            )
        gt = self._gt_cache.get(item.gt_path)
        if gt is None:
            gt = _read_mrc(item.gt_path)
            gt = gt[0] if gt.ndim == 3 else gt
            self._gt_cache[item.gt_path] = gt
        if gt.shape[0] % raw.shape[1] or gt.shape[1] % raw.shape[2]:
            raise DataSourceError(
                f"{item.gt_path}: GT {gt.shape} is not an integer multiple of raw {raw.shape[1:]}"
            )
        return Example(raw, gt, f"Cell_{item.cell:03d} level {item.level:02d}")

    def example(self, index: int, rng: np.random.Generator) -> Example:
        return self.load(self.train_items[int(rng.integers(len(self.train_items)))])

    def validation(self, count: int) -> list[Example]:
        return [self.load(item) for item in self.validation_items[:count]]


class RunFileSource:
    """A livesim `.h5` run file with ground truth (/raw + /gt/sr, as `livesim emulate` writes).

    Frames are read per example (the file may be larger than memory). The last time point (or
    the last 10% of them) is held out for validation.
    """

    def __init__(self, path: Path, mode: str, channel: int = 0) -> None:
        import h5py

        from acquisition.run_file import GT_GROUP, RAW

        if not path.is_file():
            raise DataSourceError(f"run file {path} does not exist")
        self.path = path
        self.channel = channel
        self.raw_name, self.gt_name = RAW, f"{GT_GROUP}/sr"
        try:
            with h5py.File(path, "r") as f:
                if RAW not in f or self.gt_name not in f:
                    raise DataSourceError(
                        f"{path}: needs /{RAW} and /{self.gt_name} (ground truth)"
                    )
                raw_shape, gt_shape = f[RAW].shape, f[self.gt_name].shape
        except OSError as exc:
            raise DataSourceError(f"{path}: cannot read as HDF5: {exc}") from exc
        if len(raw_shape) != 5:
            raise DataSourceError(f"{path}: /raw must be (T, C, P, Y, X), got {raw_shape}")
        self.gt_has_channel = len(gt_shape) == 4
        if len(gt_shape) not in (3, 4) or gt_shape[0] != raw_shape[0] or (
            self.gt_has_channel and gt_shape[1] != raw_shape[1]
        ):
            raise DataSourceError(
                f"{path}: /gt/sr {gt_shape} does not match /raw {raw_shape} in (T, C)"
            )
        if not 0 <= channel < raw_shape[1]:
            raise DataSourceError(f"{path}: channel {channel} not in 0..{raw_shape[1] - 1}")
        expected = FRAMES_PER_MODE[mode]
        if mode != "sisr" and raw_shape[2] != expected:
            raise DataSourceError(
                f"{path}: {raw_shape[2]} patterns per set, a {mode} model needs {expected}"
            )
        n = raw_shape[0]
        n_held = max(1, n // 10) if n > 1 else 0
        self.train_t = list(range(n - n_held)) or list(range(n))
        self.validation_t = list(range(n - n_held, n)) or list(range(n))
        self.description = f"{path} ({n} time points, channel {channel})"

    def load(self, t: int) -> Example:
        """The raw set and ground truth of time point `t`."""
        import h5py

        with h5py.File(self.path, "r") as f:
            raw = np.asarray(f[self.raw_name][t, self.channel])
            gt_dataset = f[self.gt_name]
            gt = np.asarray(gt_dataset[t, self.channel] if self.gt_has_channel else gt_dataset[t])
        return Example(raw, gt, f"t={t}")

    def example(self, index: int, rng: np.random.Generator) -> Example:
        return self.load(self.train_t[int(rng.integers(len(self.train_t)))])

    def validation(self, count: int) -> list[Example]:
        return [self.load(t) for t in self.validation_t[:count]]


class PairFolderSource:
    """A folder of ``*.npz`` pairs (``raw`` (P, Y, X), ``gt`` (sY, sX), optional ``label``), e.g.
    emulator fields generated once and reused; the last 5 % of files (at least one) are held
    out for validation."""

    def __init__(self, folder: Path, mode: str) -> None:
        if not folder.is_dir():
            raise DataSourceError(f"pair folder {folder} does not exist")
        files = sorted(folder.glob("*.npz"))
        if len(files) < 2:
            raise DataSourceError(f"{folder}: needs at least two .npz pairs, found {len(files)}")
        n_held = max(1, len(files) // 20)
        self.train_files, self.validation_files = files[:-n_held], files[-n_held:]
        self.mode = mode
        self.description = f"pairs:{folder} ({len(files)} pairs, last {n_held} held out)"

    @staticmethod
    def load(path: Path) -> Example:
        """One pair file."""
        try:
            with np.load(path) as data:
                label = str(data["label"]) if "label" in data else path.stem
                return Example(np.asarray(data["raw"]), np.asarray(data["gt"]), label)
        except (OSError, KeyError, ValueError) as exc:
            raise DataSourceError(f"{path}: not a pair file with 'raw' and 'gt': {exc}") from exc

    def example(self, index: int, rng: np.random.Generator) -> Example:
        return self.load(self.train_files[int(rng.integers(len(self.train_files)))])

    def validation(self, count: int) -> list[Example]:
        return [self.load(path) for path in self.validation_files[:count]]


class TiffPairSource:
    """Real raw SIM stacks with a high-SNR reference: ``NAME.tif`` (T, P, Y, X) or (T*P, Y, X)
    and ``NAME_gt.tif`` (sY, sX) on the SR grid (the T-SIM layout). Each stack's right quarter
    of columns is held out for validation, so validation never sees a trained-on pixel of the
    reference."""

    HELD_OUT_FRACTION = 0.25

    def __init__(self, paths: Sequence[Path], mode: str) -> None:
        import tifffile

        self.mode = mode
        frames = FRAMES_PER_MODE["sim" if mode == "sisr" else mode]
        self.train: list[Example] = []
        self.held: list[Example] = []
        for path in paths:
            gt_path = path.with_name(f"{path.stem}_gt{path.suffix}")
            if not path.is_file() or not gt_path.is_file():
                raise DataSourceError(f"{path}: needs the stack and its reference {gt_path.name}")
            raw = tifffile.imread(path).astype(np.float32)
            gt = tifffile.imread(gt_path).astype(np.float32)
            if raw.ndim == 3:
                raw = raw.reshape(-1, frames, *raw.shape[-2:])
            if raw.ndim != 4 or raw.shape[1] != frames:
                raise DataSourceError(f"{path}: shape {raw.shape} is not (T, {frames}, Y, X)")
            scale = gt.shape[-1] // raw.shape[-1]
            if gt.shape != (raw.shape[-2] * scale, raw.shape[-1] * scale):
                raise DataSourceError(f"{gt_path}: {gt.shape} is not a multiple of {raw.shape}")
            cut = round(raw.shape[-1] * (1 - self.HELD_OUT_FRACTION)) // 2 * 2
            for t, stack in enumerate(raw):
                label = f"{path.name} t={t}"
                self.train.append(Example(stack[..., :cut], gt[:, : cut * scale], label))
                self.held.append(
                    Example(stack[..., cut:], gt[:, cut * scale :], f"{label} held-out columns")
                )
        if not self.train:
            raise DataSourceError("tiff pair source: no stacks given")
        names = ",".join(path.name for path in paths)
        self.description = (
            f"tiff-pairs:{names} ({len(self.train)} sets; right "
            f"{self.HELD_OUT_FRACTION:.0%} of columns held out)"
        )

    def example(self, index: int, rng: np.random.Generator) -> Example:
        return self.train[int(rng.integers(len(self.train)))]

    def validation(self, count: int) -> list[Example]:
        return self.held[:count]


class MixedSource:
    """Several sources drawn with fixed weights (``A@0.7+B@0.3``); validation takes from each
    in proportion."""

    def __init__(self, sources: Sequence[DataSource], weights: Sequence[float]) -> None:
        total = float(sum(weights))
        if len(sources) != len(weights) or total <= 0 or min(weights) < 0:
            raise DataSourceError(f"mixed source: weights {list(weights)} must be >= 0, sum > 0")
        self.sources = list(sources)
        self.weights = np.asarray(weights, dtype=np.float64) / total
        self.description = " + ".join(
            f"{w:.2f} x {s.description}" for s, w in zip(self.sources, self.weights, strict=True)
        )

    def example(self, index: int, rng: np.random.Generator) -> Example:
        choice = int(rng.choice(len(self.sources), p=self.weights))
        return self.sources[choice].example(index, rng)

    def validation(self, count: int) -> list[Example]:
        shares = np.maximum(1, np.round(self.weights * count)).astype(int)
        return [ex for s, n in zip(self.sources, shares, strict=True) for ex in s.validation(n)]


def open_source(spec: str, mode: str, emulator_size_px: int = 96) -> DataSource:
    """`emulator:<structure>[,<structure>...]` (`emulator-randomised:...` draws every
    training field's instrument from the domain-randomisation ranges), `biosr:<folder>`, a
    `.h5` run file, `pairs:<folder of .npz>`, `tiff-pairs:<stack.tif>[,...]` (real stacks with
    a `_gt` reference), or several joined by `+`, each with an optional `@weight`."""
    if mode not in ("sisr", "sim", "nlsim"):
        raise DataSourceError(f"training mode must be sisr, sim or nlsim, got {mode!r}")
    if "+" in spec or "@" in spec:
        parts = [part.strip() for part in spec.split("+") if part.strip()]
        sources, weights = [], []
        for part in parts:
            text, _, weight = part.rpartition("@") if "@" in part else (part, "", "1")
            try:
                weights.append(float(weight))
            except ValueError as exc:
                raise DataSourceError(
                    f"data source {part!r}: weight {weight!r} is no number"
                ) from exc
            sources.append(open_source(text, mode, emulator_size_px))
        return MixedSource(sources, weights)
    if spec.startswith("pairs:"):
        return PairFolderSource(Path(spec.split(":", 1)[1]), mode)
    if spec.startswith("tiff-pairs:"):
        paths = [Path(p) for p in spec.split(":", 1)[1].split(",") if p]
        return TiffPairSource(paths, mode)
    if spec.startswith("emulator:"):
        return EmulatorSource(_structures(spec.split(":", 1)[1]), mode, emulator_size_px)
    if spec.startswith("emulator-randomised:"):
        return EmulatorSource(
            _structures(spec.split(":", 1)[1]), mode, emulator_size_px, randomised=True
        )
    if spec.startswith("biosr:"):
        return BiosrSource(Path(spec.split(":", 1)[1]), mode)
    if spec.endswith(".h5"):
        return RunFileSource(Path(spec), mode)
    raise DataSourceError(
        f"data source {spec!r}: expected emulator:<structure>, biosr:<folder>, pairs:<folder>, "
        "tiff-pairs:<stack.tif> or a .h5 run file"
    )


def model_input(raw: np.ndarray, mode: str, normalisation: Normalisation) -> np.ndarray:
    """Raw frames (P, Y, X) -> network input (C, Y, X) in [0, 1], exactly as at inference:
    SISR takes the frame mean; min-max over the whole stack (`inference.preprocessing`)."""
    frames = np.asarray(raw, dtype=np.float32)
    stack = frames.astype(np.float64).mean(axis=0, keepdims=True) if mode == "sisr" else frames
    inputs, _ = normalise(stack, normalisation)
    return np.asarray(inputs, dtype=np.float32)


def min_max(image: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min) of one image, float32 (targets are compared in this range)."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / max(hi - lo, 1e-7)


def dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (0 = identity)."""
    out = np.rot90(image, k=transform % 4, axes=(-2, -1))
    if transform >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def target_window(
    transform: int, patch_px: int, scale: int, corner: tuple[int, int], gt_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices into the SR ground truth giving the target of the raw crop at
    `corner` (patch_px square) after `dihedral(..., transform)`.

    Raw pixel i and SR pixel scale * i sample the same point (the emulator's grids, like any
    Fourier-upsampled SIM grid, start at the origin). Flipping the SR crop on its own would
    move it by scale - 1 SR pixels against the flipped raw crop, so the indices are built from
    the raw crop's coordinate map instead; they wrap at the field edge (exact for the
    emulator's periodic fields).
    """
    iy, ix = np.meshgrid(np.arange(patch_px), np.arange(patch_px), indexing="ij")
    src_y, src_x = dihedral(iy, transform), dihedral(ix, transform)
    # raw source = A @ (row, col) + t for the transformed crop's (row, col)
    t = np.array([src_y[0, 0], src_x[0, 0]])
    a = np.array(
        [[src_y[1, 0] - t[0], src_y[0, 1] - t[0]], [src_x[1, 0] - t[1], src_x[0, 1] - t[1]]]
    )
    sr = np.arange(patch_px * scale)
    rows_out, cols_out = np.meshgrid(sr, sr, indexing="ij")
    rows = a[0, 0] * rows_out + a[0, 1] * cols_out + scale * (t[0] + corner[0])
    cols = a[1, 0] * rows_out + a[1, 1] * cols_out + scale * (t[1] + corner[1])
    return rows % gt_shape[-2], cols % gt_shape[-1]


class PatchSampler:
    """Batches of (input (N, C, p, p), target (N, 1, s*p, s*p)) drawn from a source.

    Random crop (same place in raw and GT), then one of 8 flips/rotations applied to every raw
    frame and the GT alike (`target_window` keeps SR pixel scale * i on raw pixel i): the
    illumination patterns rotate with the image, so the frames stay a valid SIM set, though
    with stripe orientations (and phase-step direction) the rig never produces.
    """

    def __init__(
        self,
        source: DataSource,
        mode: str,
        patch_px: int,
        batch_size: int,
        seed: int,
        normalisation: Normalisation | None = None,
        augment: bool = True,
    ) -> None:
        self.source = source
        self.mode = mode
        self.patch_px = patch_px
        self.batch_size = batch_size
        self.seed = seed
        self.normalisation = normalisation or Normalisation()
        self.augment = augment
        self.description = source.description

    def prepare(
        self, example: Example, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop/augment one example (no crop or augmentation when rng is None)."""
        raw, gt = np.asarray(example.raw), np.asarray(example.sr_gt)
        ny, nx = raw.shape[-2:]
        scale = gt.shape[-1] // nx
        if gt.shape != (ny * scale, nx * scale):
            raise DataSourceError(
                f"{example.label}: GT {gt.shape} is not {scale}x raw {raw.shape[-2:]}"
            )
        if rng is not None:
            p = self.patch_px
            if ny < p or nx < p:
                raise DataSourceError(f"{example.label}: raw {ny}x{nx} smaller than patch {p}")
            y0, x0 = int(rng.integers(ny - p + 1)), int(rng.integers(nx - p + 1))
            raw = raw[..., y0 : y0 + p, x0 : x0 + p]
            transform = int(rng.integers(8)) if self.augment else 0
            raw = dihedral(raw, transform)
            gt = gt[target_window(transform, p, scale, (y0, x0), gt.shape)]
        return model_input(raw, self.mode, self.normalisation), min_max(gt)[None]

    def validation(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The source's held-out examples, whole (no crop or augmentation)."""
        return [self.prepare(example, None) for example in self.source.validation(count)]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of training step `step` (a pure function of seed and step)."""
        rng = np.random.default_rng([self.seed, step])
        inputs, targets = [], []
        for i in range(self.batch_size):
            example = self.source.example(step * self.batch_size + i, rng)
            x, y = self.prepare(example, rng)
            inputs.append(x)
            targets.append(y)
        return np.stack(inputs), np.stack(targets)
