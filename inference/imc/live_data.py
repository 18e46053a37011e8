"""IMC-SR data as the live path sees it: SR reconstructions of emulated mixtures, true components.

A field is the realistic default emulator (haze, aberrations, pattern errors, envelope, flicker)
imaging a three-structure mixture at the emulator's own relative brightness, at a given photon
count. Its raw SIM set is reconstructed by the bundled DFCAN-SIM and by Wiener SIM, exactly as
the live worker does (the camera's exact photon calibration); the targets are the true
per-structure components (`Microscope.ground_truth_components`). `ImcSeparator` min-max
normalises each SR frame and scales the output back, so the network sees the normalised SR and
its targets are the components fitted onto it (`fit_targets`).

Fields are written to a cache folder (one `.npz` per field) once; training reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.imc import DEFAULT_STRUCTURES
from inference.imc.live import ImcSeparator
from inference.model_file import LoadedModel, load_model
from inference.preprocessing import Preprocessor
from inference.reconstruction import ModelReconstructor, make_reconstructor
from inference.worker import PhotonCalibration
from sim_emulator.microscope import EmulatorConfig, Microscope

logger = logging.getLogger(__name__)

SR_METHODS = ("dfcan-sim", "wiener")
_EPSILON = 1e-7


@dataclass
class LiveField:
    """One emulated field: SR images per method (sY, sX), true components (3, sY, sX) in e-
    and the set's wide-field image (Y, X) in e- (None in fields cached without it)."""

    sr: dict[str, np.ndarray]
    components: np.ndarray
    seed: int
    photon_count_e: float
    widefield: np.ndarray | None = None


def emulator_config(
    seed: int, photon_count_e: float, size_px: int,
    structures: tuple[str, ...] = DEFAULT_STRUCTURES,
) -> EmulatorConfig:
    """The realistic default emulator imaging `structures` mixed (as `livesim run --imc`), or
    one structure alone (a field outside IMC-SR's domain, for the domain check)."""
    if len(structures) == 1:
        return EmulatorConfig(structure=structures[0], size_px=size_px,  # type: ignore[arg-type]
                              seed=seed, photon_count_e=photon_count_e)
    return EmulatorConfig(structure="mix", mix_structures=structures,  # type: ignore[arg-type]
                          size_px=size_px, seed=seed, photon_count_e=photon_count_e)


def render_live_field(
    seed: int,
    photon_count_e: float,
    size_px: int = 64,
    methods: Sequence[str] = SR_METHODS,
    structures: tuple[str, ...] = DEFAULT_STRUCTURES,
    models: dict[str, LoadedModel] | None = None,
) -> LiveField:
    """Image one seeded field and reconstruct it with each method (Wiener fits each field)."""
    microscope = Microscope(emulator_config(seed, photon_count_e, size_px, structures))
    raw = microscope.render_set(0.0)
    components = microscope.ground_truth_components(0.0)
    sensor = microscope.sensor
    electrons_per_adu = float(sensor.model.electrons_per_adu)
    offset = sensor.offset_map_out_adu()
    defects = sensor.crop(sensor.hot_pixel_mask)
    calibration = PhotonCalibration(  # what the live run hands its worker
        offset, np.full(offset.shape, 1.0 / electrons_per_adu, np.float32),
        defects if defects is not None and defects.shape == offset.shape else None,
    )
    models = {} if models is None else models
    images: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "wiener":  # the pattern is estimated on each field
            reconstructor = make_reconstructor("wiener", calibration=calibration)
        else:
            if method not in models:
                models[method] = load_model(method, device="cpu")
            reconstructor = ModelReconstructor(models[method], calibration, device="cpu",
                                               backend="torch")
        images[method] = np.asarray(reconstructor.reconstruct(raw).image, dtype=np.float32)
    widefield = Preprocessor("sim", calibration=calibration).widefield_e(raw)
    return LiveField(images, components.astype(np.float32), seed, float(photon_count_e),
                     widefield)


def normalised(image: np.ndarray) -> np.ndarray:
    """What `ImcSeparator` feeds the network: the frame min-max normalised to [0, 1]."""
    low = float(image.min())
    return ((image - low) / (float(image.max()) - low + _EPSILON)).astype(np.float32)


def fit_targets(components: np.ndarray, network_input: np.ndarray) -> np.ndarray:
    """The components in the network input's units: a * components + b / 3 with (a, b) the
    least-squares fit of a * sum(components) + b onto the input, so the targets add up to the
    input (the summation loss's premise) as closely as one gain and offset allow."""
    total = components.sum(axis=0).ravel().astype(np.float64)
    design = np.stack([total, np.ones_like(total)], axis=1)
    (gain, offset), *_ = np.linalg.lstsq(design, network_input.ravel().astype(np.float64),
                                         rcond=None)
    gain = max(float(gain), 0.0)
    targets = gain * components + max(float(offset), 0.0) / components.shape[0]
    return np.clip(targets, 0.0, 1.0).astype(np.float32)


def field_path(folder: Path, seed: int) -> Path:
    """The cache file of the field of `seed`."""
    return folder / f"field-{seed:07d}.npz"


def cache_fields(
    folder: Path,
    seeds: Sequence[int],
    photon_range_e: tuple[float, float],
    size_px: int = 64,
    methods: Sequence[str] = SR_METHODS,
) -> Iterator[Path]:
    """Render and write the fields of `seeds` not yet in `folder` (photon count log-uniform in
    `photon_range_e`, drawn from the seed); yields each path as it is written."""
    folder.mkdir(parents=True, exist_ok=True)
    models: dict[str, LoadedModel] = {}
    low, high = photon_range_e
    for seed in seeds:
        path = field_path(folder, seed)
        if path.exists():
            continue
        photons = float(np.exp(np.random.default_rng([seed, 0xF07]).uniform(np.log(low),
                                                                              np.log(high))))
        field = render_live_field(seed, photons, size_px, methods, models=models)
        save_field(path, field)
        yield path


def save_field(path: Path, field: LiveField) -> None:
    """Write one field (written to a temporary name first: a killed run leaves no half file)."""
    partial = path.with_suffix(".partial.npz")
    arrays: dict[str, np.ndarray] = {f"sr_{name}": image for name, image in field.sr.items()}
    arrays.update(components=field.components, seed=np.asarray(field.seed),
                  photon_count_e=np.asarray(field.photon_count_e))
    if field.widefield is not None:
        arrays["widefield"] = field.widefield
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    partial.replace(path)


def load_field(path: Path) -> LiveField:
    """Read a cached field; errors name the file."""
    try:
        with np.load(path) as data:
            sr = {key[3:]: data[key] for key in data.files if key.startswith("sr_")}
            widefield = data["widefield"] if "widefield" in data.files else None
            return LiveField(sr, data["components"], int(data["seed"]),
                             float(data["photon_count_e"]), widefield)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not an IMC-SR live field file: {exc}") from exc


@dataclass
class LiveScores:
    """Per method: Pearson per channel per field, and the domain check's unexplained fraction
    per field (`inference.imc.live.unexplained_fraction`)."""

    pearson: dict[str, dict[str, list[float]]]
    unexplained: dict[str, list[float]]


def assess_live(separator: ImcSeparator, fields: Sequence[LiveField]) -> LiveScores:
    """Separate each method's SR image with `ImcSeparator.separate` exactly as live and score
    each channel (Pearson) against the true component of the same structure."""
    from inference.evaluation import pearson

    scores = LiveScores({}, {})
    for field in fields:
        for method, image in field.sr.items():
            channels = separator.separate(image, field.widefield)
            per_channel = scores.pearson.setdefault(
                method, {n: [] for n in separator.channel_names})
            for index, name in enumerate(separator.channel_names):
                truth = field.components[DEFAULT_STRUCTURES.index(name)]
                per_channel[name].append(float(pearson(channels[index], truth)))
            scores.unexplained.setdefault(method, []).append(separator.last_unexplained)
    return scores
