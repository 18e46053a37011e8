"""The emulated SIM microscope: sample, illumination, optics and camera in one seeded model.

``Microscope.render_frame`` is what the emulated camera sees during one exposure: the SLM
pattern, the laser line and its power selected by the AOTF, the exposure time. Only
structures labelled for the active laser line light up; a wrong or missing line renders
camera offset and noise only, as on a rig.

Realism that real stacks show is on by default: a Gaussian illumination envelope, laser
flicker and slow power drift, dose-driven bleaching per structure (the light delivered by
``render_frame`` / ``render_set`` bleaches what it excites, more at the envelope's centre),
pattern drift and per-orientation modulation (``SimPatterns``), out-of-focus haze and an
aberrated rendering OTF (``Optics``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from calibration.photon_count import average_photon_count
from settings_file import StrictModel, load_settings
from sim_emulator.illumination import SimPatterns
from sim_emulator.image_formation import ImageFormation, SampleSpectra
from sim_emulator.optics import Optics
from sim_emulator.samples import BLEACHING_BY_STRUCTURE, STRUCTURES, Dynamics, PointCloud, Sample
from sim_emulator.sensor import NoiseSource, Sensor, SensorModel

logger = logging.getLogger(__name__)

StructureChoice = Literal[
    "microtubules", "f-actin", "er", "ccps", "lysosomes", "mitochondria", "mix"
]
LASER_MATCH_NM = 1.0  # a laser line excites a label when within this distance
_CACHE_STATES = 4  # sample states (time, laser line) kept in Fourier form
_DOSE_DIGITS = 6  # doses equal to this many significant digits share a cached sample state


class LaserModel(StrictModel):
    """Laser power fluctuations: fast flicker (per exposure) and a slow sinusoidal drift."""

    flicker_rms: float = Field(
        default=0.01, ge=0.0, le=0.5, description="relative rms power change between exposures"
    )
    drift_fraction: float = Field(
        default=0.02, ge=0.0, le=0.5, description="amplitude of the slow relative power drift"
    )
    drift_period_s: float = Field(default=600.0, gt=0.0, le=1e6)


class EmulatorConfig(StrictModel):
    """Everything the forward model needs; loadable from TOML (``EmulatorConfig.from_toml``).

    ``photon_count_e`` is the average photon count (calibration.photon_count: DFCAN definition,
    detected photons = photo-electrons) of a wide-field frame at the reference power and
    exposure; frames scale linearly with power_pct and exposure_ms. ``labels_nm``
    assigns a structure to a laser line (default: every structure to optics.excitation_nm).
    Unless ``patterns.period_nm`` is given, the period is 0.9 of the detection cutoff.
    """

    optics: Optics = Field(default_factory=Optics)
    sensor: SensorModel = Field(default_factory=SensorModel)
    patterns: SimPatterns = Field(default_factory=SimPatterns)
    dynamics: Dynamics = Field(default_factory=Dynamics)
    structure: StructureChoice = "microtubules"
    mix_structures: tuple[str, str, str] = ("ccps", "microtubules", "f-actin")
    labels_nm: dict[str, float] = Field(default_factory=dict)
    size_px: int | tuple[int, int] = 512
    photon_count_e: float = Field(
        default=300.0, gt=0.0, le=1e6,
        description="average photon count (DFCAN definition) of a wide-field frame, in e-",
    )
    laser: LaserModel = Field(default_factory=LaserModel)
    illumination_sigma_fraction: float = Field(
        default=0.8, ge=0.0, le=100.0,
        description="Gaussian illumination envelope: sigma as a fraction of the field's larger "
        "side, centred on the field (0: uniform)",
    )
    reference_power_pct: float = Field(default=100.0, gt=0.0, le=100.0)
    reference_exposure_ms: float = Field(default=10.0, gt=0.0, le=1e5)
    time_resolution_s: float = Field(
        default=0.1, gt=0.0, le=3600.0, description="the sample state is held for this long"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> EmulatorConfig:
        for name in self.mix_structures:
            if name not in STRUCTURES:
                raise ValueError(f"mix_structures: {name!r} is not one of {STRUCTURES}")
        for name in self.labels_nm:
            if name not in STRUCTURES:
                raise ValueError(f"labels_nm: {name!r} is not one of {STRUCTURES}")
        height, width = self.sensor_shape
        if min(height, width) < 8 or max(height, width) > 8192:
            raise ValueError(f"size_px={self.size_px} must be within 8..8192 pixels")
        if "period_nm" not in self.patterns.model_fields_set:
            chosen = self.patterns.model_dump(exclude={"mode", "period_nm"}, exclude_unset=True)
            patterns = SimPatterns.for_optics(self.optics, self.patterns.mode, **chosen)
            patterns.__pydantic_fields_set__.discard("period_nm")  # still follows the optics
            object.__setattr__(self, "patterns", patterns)
        return self

    def without_realism(self) -> EmulatorConfig:
        """A copy with every realism effect off that this config does not set explicitly:
        ideal (unaberrated) OTF, no haze, no envelope, steady laser, no pattern errors, drift
        or per-orientation spread, no bleaching. For tests of an algorithm against a forward
        model that matches its own assumptions exactly; the default emulator is realistic."""
        data = self.model_dump(exclude_unset=True)
        for section, ideal in IDEAL_SETTINGS.items():
            if isinstance(ideal, dict):
                data[section] = {**ideal, **dict(data.get(section, {}))}
            elif section not in data:
                data[section] = ideal
        return EmulatorConfig.model_validate(data)

    @classmethod
    def from_toml(cls, path: str | Path) -> EmulatorConfig:
        """Load from a TOML file; errors name the file, the field and the value."""
        return load_settings(cls, path, "emulator config")

    @property
    def sensor_shape(self) -> tuple[int, int]:
        """(Y, X) of the full sensor in unbinned pixels."""
        if isinstance(self.size_px, int):
            return self.size_px, self.size_px
        return int(self.size_px[0]), int(self.size_px[1])

    @property
    def structures(self) -> list[str]:
        """The structures in the sample (three for a mix)."""
        return list(self.mix_structures) if self.structure == "mix" else [self.structure]

    def laser_for(self, structure: str) -> float:
        """The laser line (nm) that excites ``structure``'s label."""
        return float(self.labels_nm.get(structure, self.optics.excitation_nm))


# what `EmulatorConfig.without_realism` switches off (per section, unless set explicitly)
IDEAL_SETTINGS: dict[str, object] = {
    "optics": {"defocus_waves_rms": 0.0, "spherical_waves_rms": 0.0, "background_fraction": 0.0},
    "patterns": {"modulation_spread": 0.0, "phase_error_rad": 0.0, "angle_error_rad": 0.0,
                 "drift_nm_per_s": (0.0, 0.0)},
    "laser": {"flicker_rms": 0.0, "drift_fraction": 0.0},
    "dynamics": {"bleach_per_dose": 0.0},
    "illumination_sigma_fraction": 0.0,
}


@dataclass
class GroundTruth:
    """Noiseless references: wide-field (camera grid) and SR target (2x or 3x grid).

    Both in expected photo-electrons per pixel at the reference power and exposure, without
    laser flicker; the sample (envelope, bleaching) is the one the camera sees at that time.
    """

    wf: np.ndarray  # float32 (Y, X)
    sr: np.ndarray  # float32 (sY, sX)


STAGE_WRAP_MARGIN_NM = 500.0  # the sample's margin around the field (samples.py)


class Microscope:
    """Seeded forward model of the whole instrument; see the module docstring."""

    def __init__(self, config: EmulatorConfig | None = None, workers: int = 1) -> None:
        self.config = config or EmulatorConfig()
        c = self.config
        self.sensor = Sensor(c.sensor, c.sensor_shape)
        self.formation = ImageFormation(c.optics, c.patterns, c.sensor_shape, workers=workers)
        height, width = c.sensor_shape
        field_nm = (height * c.optics.pixel_size_nm, width * c.optics.pixel_size_nm)
        self.sample = Sample(c.structures, field_nm, c.dynamics, seed=c.seed)
        self.lasers = [c.laser_for(name) for name in c.structures]
        self.noise = NoiseSource(np.random.default_rng([c.seed, 0x51A]))
        self._cache: OrderedDict[
            tuple[float, int, tuple[float, ...], float, float], SampleSpectra
        ] = OrderedDict()
        self._photon_scale: dict[int, float] = {}
        self._doses: dict[float, list[tuple[float, float]]] = {}  # line -> (time_s, dose)
        self._lock = threading.RLock()  # the emulated camera renders from its own thread

    # ----------------------------------------------------------------- properties
    @property
    def patterns(self) -> SimPatterns:
        """The illumination patterns."""
        return self.config.patterns

    @property
    def n_patterns(self) -> int:
        """Frames per SIM set."""
        return self.config.patterns.n_patterns

    @property
    def laser_lines_nm(self) -> list[float]:
        """Distinct laser lines that excite something in the sample."""
        return sorted(set(self.lasers))

    @property
    def component_names(self) -> list[str]:
        """Structure of each sample component, in order."""
        return self.sample.names

    @property
    def sr_factor(self) -> int:
        """SR grid / camera grid: 2 (wf, sim) or 3 (nlsim)."""
        return self.formation.sr_factor

    def sample_time_s(self, time_s: float) -> float:
        """The sample state shown at ``time_s`` (held for ``time_resolution_s``)."""
        step = self.config.time_resolution_s
        return float(np.floor(time_s / step + 1e-9) * step)

    # ----------------------------------------------------------------- internals
    def _components_for(self, laser_nm: float | None) -> list[int]:
        if laser_nm is None:
            return list(range(len(self.lasers)))
        return [i for i, line in enumerate(self.lasers) if abs(line - laser_nm) <= LASER_MATCH_NM]

    def envelope(self, y_nm: np.ndarray, x_nm: np.ndarray) -> np.ndarray:
        """Relative illumination intensity (1 at the field centre) at sample-plane positions."""
        fraction = self.config.illumination_sigma_fraction
        if fraction <= 0:
            return np.ones(np.broadcast(y_nm, x_nm).shape)
        height, width = self.sample.field_nm
        sigma = fraction * max(height, width)
        r2 = (np.asarray(y_nm) - height / 2.0) ** 2 + (np.asarray(x_nm) - width / 2.0) ** 2
        return np.exp(-r2 / (2.0 * sigma * sigma))

    def laser_factor(self, time_s: float, pattern: int | None, laser_nm: float) -> float:
        """Relative laser power of one exposure: slow drift x flicker (seeded, reproducible)."""
        laser = self.config.laser
        phase = 2.0 * np.pi * ((laser_nm * 0.618034) % 1.0)  # each line drifts on its own
        drift = 1.0 + laser.drift_fraction * np.sin(2.0 * np.pi * time_s / laser.drift_period_s
                                                     + phase)
        flicker = 1.0
        if laser.flicker_rms > 0:
            key = [abs(self.config.seed), 0xF11C, abs(round(laser_nm)),
                   abs(round(time_s * 1e6)), 0 if pattern is None else int(pattern) + 1]
            flicker += laser.flicker_rms * float(np.random.default_rng(key).standard_normal())
        return float(max(drift * flicker, 0.0))

    def dose_before(self, laser_nm: float, time_s: float) -> float:
        """Dose (reference frames: power x exposure / reference) delivered by ``laser_nm``
        before the sample state shown at ``time_s``."""
        start = self.sample_time_s(time_s)
        return float(sum(d for t, d in self._doses.get(float(laser_nm), []) if t < start - 1e-9))

    def _record_dose(self, laser_nm: float | None, power_pct: float, exposure_ms: float,
                     frames: int, time_s: float) -> None:
        components = self._components_for(laser_nm)
        if not components or laser_nm is None:
            return
        c = self.config
        dose = frames * (power_pct / c.reference_power_pct) * (
            exposure_ms / c.reference_exposure_ms
        )
        for line in {self.lasers[i] for i in components}:
            self._doses.setdefault(float(line), []).append((float(time_s), float(dose)))

    def _cloud(self, time_s: float, components: list[int], bleached: bool = True,
               stage_xy_um: tuple[float, float] = (0.0, 0.0)) -> PointCloud:
        """The emitters of ``components`` as lit: moved by the stage, envelope applied (it is
        fixed to the camera), dose-bleached."""
        clouds = self.sample.component_points(time_s)
        per_dose = self.config.dynamics.bleach_per_dose
        lit = []
        for i in components:
            cloud = clouds[i]
            if stage_xy_um != (0.0, 0.0):
                cloud = self._moved(cloud, stage_xy_um)
            envelope = self.envelope(cloud.y_nm, cloud.x_nm)
            weight = cloud.weight * envelope
            dose = self.dose_before(self.lasers[i], time_s) if bleached else 0.0
            if dose > 0 and per_dose > 0:
                rate = per_dose * BLEACHING_BY_STRUCTURE.get(self.sample.names[i], 1.0)
                weight = weight * np.exp(np.log1p(-min(rate, 0.999999)) * dose * envelope)
            lit.append(PointCloud(cloud.y_nm, cloud.x_nm, weight))
        return PointCloud.concatenate(lit)

    def _spectra(self, time_s: float, components: list[int],
                 stage_xy_um: tuple[float, float] = (0.0, 0.0)) -> SampleSpectra:
        state_s = self.sample_time_s(time_s)
        doses = tuple(
            float(f"{self.dose_before(self.lasers[i], state_s):.{_DOSE_DIGITS}g}")
            for i in components
        )
        key = (state_s, sum(1 << i for i in components), doses,
               round(stage_xy_um[0], 4), round(stage_xy_um[1], 4))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        spectra = self.formation.spectra(
            self._cloud(state_s, components, stage_xy_um=stage_xy_um)
        )
        self._cache[key] = spectra
        while len(self._cache) > _CACHE_STATES:
            self._cache.popitem(last=False)
        return spectra

    def _moved(self, cloud: PointCloud, stage_xy_um: tuple[float, float]) -> PointCloud:
        """The sample as seen with the stage at ``stage_xy_um``: moving the stage by +d moves
        the sample by -d in the image. The emulated sample repeats with the period of its
        field plus margins, so every stage position shows structure."""
        height, width = self.config.sensor_shape
        pixel_nm = self.config.optics.pixel_size_nm
        margin = STAGE_WRAP_MARGIN_NM
        period_y, period_x = height * pixel_nm + 2 * margin, width * pixel_nm + 2 * margin
        y = np.mod(cloud.y_nm - 1000.0 * stage_xy_um[1] + margin, period_y) - margin
        x = np.mod(cloud.x_nm - 1000.0 * stage_xy_um[0] + margin, period_x) - margin
        return PointCloud(y, x, cloud.weight)

    def defocus_sigma_px(self, defocus_um: float) -> float:
        """Blur (Gaussian sigma, camera pixels) of a thin sample ``defocus_um`` from focus:
        half the geometric blur radius |dz| tan(asin(NA / n))."""
        optics = self.config.optics
        tan_theta = np.tan(np.arcsin(optics.na / optics.immersion_index))
        return float(abs(defocus_um) * 1000.0 * tan_theta / 2.0 / optics.pixel_size_nm)

    def _scale(self, components: list[int]) -> float:
        """Expected photo-electrons per emitter unit at reference power/exposure for these
        labels (divide by QE for incident photons)."""
        key = sum(1 << i for i in components)
        if key not in self._photon_scale:
            unbleached = self.formation.spectra(self._cloud(0.0, components, bleached=False))
            wf = self.formation.frames(unbleached, [None])[0]
            measured = average_photon_count(wf, 0.0, 1.0)
            if not measured > 0:
                raise ValueError(f"structure={self.config.structure}: the sample is empty")
            self._photon_scale[key] = self.config.photon_count_e / float(measured)
        return self._photon_scale[key]

    def expected_photons(
        self,
        time_s: float,
        patterns: list[int | None],
        laser_nm: float | None,
        power_pct: float,
        exposure_ms: float,
        stage_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> np.ndarray:
        """Noiseless images in incident photons (len(patterns), Y, X) on the full sensor,
        float32 (the camera's QE turns them into photo-electrons).

        ``stage_um`` (x, y, z) is where the emulated stage holds the sample: x/y move it in the
        image, z defocuses it (the focal plane is at z = 0; see :meth:`defocus_sigma_px`).
        """
        c = self.config
        if power_pct < 0 or exposure_ms < 0:
            raise ValueError(f"power_pct={power_pct} and exposure_ms={exposure_ms} must be >= 0")
        for pattern in patterns:
            if pattern is not None:
                self.patterns.orientation_phase(pattern)
        components = self._components_for(laser_nm)
        shape = (len(patterns), *c.sensor_shape)
        if not components or power_pct == 0 or exposure_ms == 0:
            return np.zeros(shape, dtype=np.float32)
        dose = (power_pct / c.reference_power_pct) * (exposure_ms / c.reference_exposure_ms)
        lines = {self.lasers[i] for i in components}
        line = laser_nm if laser_nm is not None else min(lines)
        with self._lock:
            spectra = self._spectra(time_s, components, (stage_um[0], stage_um[1]))
            images = self.formation.frames(spectra, patterns, time_s)
            images *= np.float32(self._scale(components) * dose / c.sensor.qe)
        for image, pattern in zip(images, patterns, strict=True):
            image *= np.float32(self.laser_factor(time_s, pattern, line))
        sigma_px = self.defocus_sigma_px(stage_um[2])
        if sigma_px > 0.05:
            from scipy.ndimage import gaussian_filter

            images = gaussian_filter(images, sigma=(0, sigma_px, sigma_px), mode="reflect")
        return images

    # ----------------------------------------------------------------- public API
    def render_frame(
        self,
        time_s: float,
        pattern: int | None,
        laser_nm: float | None,
        power_pct: float,
        exposure_ms: float,
        stage_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> np.ndarray:
        """One camera exposure of what the SLM/AOTF show: uint16 (Y, X), full physics."""
        photons = self.expected_photons(time_s, [pattern], laser_nm, power_pct, exposure_ms,
                                        stage_um)[0]
        with self._lock:
            self._record_dose(laser_nm, power_pct, exposure_ms, 1, time_s)
            return self.sensor.expose(photons, exposure_ms, self.noise)

    def render_set(
        self,
        time_s: float,
        laser_nm: float | None = None,
        power_pct: float | None = None,
        exposure_ms: float | None = None,
    ) -> np.ndarray:
        """All patterns of one SIM set at ``time_s``: uint16 (P, Y', X') after ROI/binning.

        Defaults: the first labelled laser line at the reference power and exposure.
        """
        c = self.config
        line = self.laser_lines_nm[0] if laser_nm is None else laser_nm
        power = c.reference_power_pct if power_pct is None else power_pct
        exposure = c.reference_exposure_ms if exposure_ms is None else exposure_ms
        patterns: list[int | None] = list(range(self.n_patterns))
        if self.patterns.mode == "wf":
            patterns = [None]
        photons = self.expected_photons(time_s, patterns, line, power, exposure)
        with self._lock:
            self._record_dose(line, power, exposure, len(patterns), time_s)
            return np.stack([self.sensor.expose(p, exposure, self.noise) for p in photons])

    def ground_truth(self, time_s: float, laser_nm: float | None = None) -> GroundTruth:
        """Noiseless wide-field and SR target at ``time_s`` (all labels when laser_nm is None)."""
        components = self._components_for(laser_nm)
        if not components:
            raise ValueError(f"laser_nm={laser_nm} excites no label of this sample")
        with self._lock:
            spectra = self._spectra(time_s, components)
            scale = self._scale(components)
            wf = self.formation.frames(spectra, [None], time_s)[0] * np.float32(scale)
            sr = self.formation.super_resolved(spectra) * np.float32(scale)
        return GroundTruth(wf=self._to_output(wf, 1), sr=self._to_output(sr, self.sr_factor))

    def ground_truth_components(self, time_s: float) -> np.ndarray:
        """One SR target per sample component: float32 (n_components, sY, sX)."""
        out = []
        with self._lock:
            for i, line in enumerate(self.lasers):
                scale = self._scale(self._components_for(line))  # photons of i's channel
                spectra = self._spectra(time_s, [i])
                sr = self.formation.super_resolved(spectra) * np.float32(scale)
                out.append(self._to_output(sr, self.sr_factor))
        return np.stack(out)

    def _to_output(self, image: np.ndarray, factor: int) -> np.ndarray:
        """Apply the camera ROI and binning (on a grid ``factor`` times finer)."""
        model = self.config.sensor
        if model.roi is not None:
            x, y, width, height = (v * factor for v in model.roi)
            image = image[y : y + height, x : x + width]
        b = model.binning
        if b > 1:
            h, w = image.shape
            image = image.reshape(h // b, b, w // b, b).sum(axis=(1, 3))
        return np.ascontiguousarray(image, dtype=np.float32)
