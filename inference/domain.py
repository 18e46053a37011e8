"""A network's training domain, what one raw set looks like, and the check between the two.

A network is only trustworthy on data like its training data. :class:`ModelDomain` records that
data (optics, pixel size, pattern period and orientations, photon count, background), the model
file carries it, and :func:`check_domain` compares it with an :class:`Observation` of one raw set
(measured from the frames: pattern parameters, photon count, background). Every violation is a
sentence naming the quantity, the measured value and the trained range, so it can go straight
into ``/events`` and the GUI.

Photon counts follow :mod:`calibration.photon_count` (the DFCAN paper's average photon count of
the structure pixels, in photo-electrons); the background is the mean count of the other pixels,
also in e-, and the background fraction is background / photon count (out-of-focus haze makes it
large on real cells: about 0.7 on the real TIRF-SIM microtubule stack, below 0.25 on the
emulator fields the first bundled networks were trained on).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from calibration.photon_count import foreground_mask
from calibration.sim_parameters import SimParameters
from settings_file import StrictModel

# orientations are lines: an angle and the angle + 180 degrees are the same orientation
ORIENTATION_PERIOD_DEG = 180.0


class Range(StrictModel):
    """A closed interval [low, high]."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low <= self.high:
            raise ValueError(f"range low={self.low} must be <= high={self.high}")
        return self

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in [low, high]."""
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


class ModelDomain(StrictModel):
    """The data a network was trained on (what its model card states)."""

    na: Range
    emission_nm: Range
    pixel_size_nm: Range
    pattern_period_nm: Range | None = Field(
        default=None, description="SIM stripe period in the sample plane; None for SISR models"
    )
    orientations_deg: list[float] | None = Field(
        default=None, description="stripe orientations trained on; None: any orientation"
    )
    orientation_tolerance_deg: float = Field(default=5.0, gt=0.0, le=90.0)
    modulation: Range | None = None
    photon_count_e: Range
    background_fraction: Range
    better_than_wiener_below_e: float | None = Field(
        default=None,
        ge=0.0,
        description="photon count (e-) at or below which the assessment finds the network "
        "better than Wiener SIM; --model auto uses Wiener above it",
    )
    training_data: str = ""
    seed: int | None = None


class Observation(StrictModel):
    """What one raw set shows (measured) and the optics the rig states."""

    na: float
    emission_nm: float
    pixel_size_nm: float
    pattern_period_nm: list[float] | None = None
    orientations_deg: list[float] | None = None
    modulation: list[float] | None = None
    photon_count_e: float | None = None
    background_e: float | None = None

    @property
    def background_fraction(self) -> float | None:
        """Background / photon count (None when either is unknown or the count is 0)."""
        if self.photon_count_e is None or self.background_e is None or self.photon_count_e <= 0:
            return None
        return self.background_e / self.photon_count_e


def pattern_geometry(parameters: SimParameters) -> tuple[list[float], list[float]]:
    """(period_nm, orientation_deg) per orientation from estimated pattern parameters.

    The orientation is the direction of the wave vector (kx, ky), in [0, 180) degrees.
    """
    periods, angles = [], []
    for orientation in parameters.orientations:
        kx, ky = orientation.wave_vector_cycles_per_px
        magnitude = math.hypot(kx, ky)
        periods.append(parameters.pixel_size_nm / magnitude if magnitude > 0 else math.inf)
        angles.append(math.degrees(math.atan2(ky, kx)) % ORIENTATION_PERIOD_DEG)
    return periods, angles


def background_e(frames_e: np.ndarray) -> float:
    """Mean count (e-) of the pixels that are not structure (the complement of the DFCAN
    photon-count foreground), averaged over frames; frames are offset-subtracted e-."""
    frames = np.asarray(frames_e, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    mask = foreground_mask(frames)
    values = [float(frame[~m].mean()) for frame, m in zip(frames, mask, strict=True) if (~m).any()]
    return float(np.mean(values)) if values else 0.0


def observe(
    frames_e: np.ndarray,
    na: float,
    emission_nm: float,
    pixel_size_nm: float,
    parameters: SimParameters | None = None,
    photon_count_e: float | None = None,
) -> Observation:
    """An :class:`Observation` of one raw set (P, Y, X) in offset-subtracted e-."""
    periods = angles = modulations = None
    if parameters is not None:
        periods, angles = pattern_geometry(parameters)
        modulations = [float(m) for m in parameters.modulations()]
    return Observation(
        na=na,
        emission_nm=emission_nm,
        pixel_size_nm=pixel_size_nm,
        pattern_period_nm=periods,
        orientations_deg=angles,
        modulation=modulations,
        photon_count_e=photon_count_e,
        background_e=background_e(frames_e),
    )


def check_domain(domain: ModelDomain, observation: Observation) -> list[str]:
    """Every way ``observation`` lies outside ``domain``, one sentence each (empty: inside).

    Quantities the observation does not have (no calibration: no photon count; no pattern
    estimate) are not checked; the caller decides whether that is acceptable.
    """
    problems: list[str] = []

    def scalar(name: str, value: float | None, trained: Range | None, unit: str) -> None:
        if value is None or trained is None:
            return
        if not math.isfinite(value) or not trained.contains(value):
            problems.append(f"{name} {value:.4g}{unit} outside the trained {trained}{unit}")

    scalar("NA", observation.na, domain.na, "")
    scalar("emission", observation.emission_nm, domain.emission_nm, " nm")
    scalar("pixel size", observation.pixel_size_nm, domain.pixel_size_nm, " nm")
    scalar("photon count", observation.photon_count_e, domain.photon_count_e, " e-")
    scalar(
        "background fraction", observation.background_fraction, domain.background_fraction, ""
    )
    for index, period in enumerate(observation.pattern_period_nm or []):
        scalar(f"pattern period (orientation {index})", period, domain.pattern_period_nm, " nm")
    for index, modulation in enumerate(observation.modulation or []):
        scalar(f"modulation (orientation {index})", modulation, domain.modulation, "")
    if domain.orientations_deg is not None and observation.orientations_deg is not None:
        for index, angle in enumerate(observation.orientations_deg):
            distance = min(_angle_distance(angle, trained) for trained in domain.orientations_deg)
            if distance > domain.orientation_tolerance_deg:
                problems.append(
                    f"orientation {index} at {angle:.1f} deg is {distance:.1f} deg from the "
                    f"trained orientations {[round(a, 1) for a in domain.orientations_deg]}"
                )
    return problems


def _angle_distance(first_deg: float, second_deg: float) -> float:
    """Distance between two line orientations in degrees, in [0, 90]."""
    difference = abs(first_deg - second_deg) % ORIENTATION_PERIOD_DEG
    return min(difference, ORIENTATION_PERIOD_DEG - difference)
