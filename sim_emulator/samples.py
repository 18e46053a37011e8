"""Fluorescent samples as clouds of labelled points in the focal plane, evolving in time.

Every structure is a list of point emitters (positions in nm, brightness weights). Lines are
sampled every ``spacing_nm``; filled shapes on a square lattice. The optical label size (a
Gaussian) is applied later in Fourier space. Positions at a time point are a deterministic
function of (seed, time): drift, Brownian motion, microtubule growth/shrinkage and
an optional time-driven bleaching are evaluated analytically or from seeded pre-drawn random
walks, so two queries of the same time give the same sample whatever their order. Bleaching by
the light actually delivered (dose-driven, per structure) is applied by the microscope, which
knows the exposures (``Dynamics.bleach_per_dose``, ``BLEACHING_BY_STRUCTURE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy.spatial import Delaunay

from settings_file import StrictModel

STRUCTURES: tuple[str, ...] = (
    "microtubules",
    "f-actin",
    "er",
    "ccps",
    "lysosomes",
    "mitochondria",
)
SPACING_NM = 20.0  # emitter spacing along lines (below half the finest rendered pixel)
AREA_SPACING_NM = 25.0  # emitter spacing inside filled shapes
# relative photostability of the usual labels (bleaching per dose, microtubules = 1)
BLEACHING_BY_STRUCTURE: dict[str, float] = {
    "microtubules": 1.0,
    "f-actin": 1.5,
    "er": 1.2,
    "ccps": 0.8,
    "lysosomes": 0.6,
    "mitochondria": 2.0,
}
_WALK_STEP_S = 0.05  # time step of the pre-drawn Brownian walks
_WALK_CHUNK = 256  # walk steps drawn at a time (deterministic chunking)


class Dynamics(StrictModel):
    """How the sample moves and fades; rates are per second of wall time."""

    drift_nm_per_s: tuple[float, float] = (4.0, -2.5)  # (x, y) whole-cell drift
    diffusion_nm2_per_s: float = Field(default=2000.0, ge=0.0, le=1e7)  # puncta and organelles
    growth_nm_per_s: float = Field(default=80.0, ge=0.0, le=1e4)  # microtubule plus-end speed
    bleach_rate_per_s: float = Field(
        default=0.0, ge=0.0, le=100.0, description="time-driven bleaching (exponential rate)"
    )
    bleach_per_dose: float = Field(
        default=2e-4, ge=0.0, le=1.0,
        description="dose-driven bleaching: fraction of a microtubule label's emitters bleached "
        "per reference dose (one frame at the reference power and exposure, at the peak of the "
        "illumination envelope); other labels scale by BLEACHING_BY_STRUCTURE",
    )


@dataclass
class PointCloud:
    """Emitters: positions (nm, origin at the centre of camera pixel (0, 0)) and brightness."""

    y_nm: np.ndarray
    x_nm: np.ndarray
    weight: np.ndarray

    @staticmethod
    def concatenate(clouds: list[PointCloud]) -> PointCloud:
        """One cloud holding all emitters of ``clouds``."""
        if not clouds:
            return PointCloud(np.zeros(0), np.zeros(0), np.zeros(0))
        return PointCloud(
            np.concatenate([c.y_nm for c in clouds]),
            np.concatenate([c.x_nm for c in clouds]),
            np.concatenate([c.weight for c in clouds]),
        )

    @property
    def total(self) -> float:
        """Summed brightness."""
        return float(self.weight.sum())


class _BrownianWalks:
    """Seeded 2-D random walks for ``n`` objects, evaluated at any time (linear interpolation)."""

    def __init__(self, n: int, diffusion_nm2_per_s: float, seed: int) -> None:
        self._n = n
        self._step_std_nm = float(np.sqrt(2.0 * diffusion_nm2_per_s * _WALK_STEP_S))
        self._rng = np.random.default_rng(seed)
        self._path = np.zeros((1, n, 2))

    def at(self, time_s: float) -> np.ndarray:
        """(n, 2) displacements (dy, dx) in nm at ``time_s`` >= 0."""
        if self._n == 0 or self._step_std_nm == 0.0:
            return np.zeros((self._n, 2))
        position = max(time_s, 0.0) / _WALK_STEP_S
        index = int(position)
        while index + 1 >= self._path.shape[0]:
            steps = self._step_std_nm * self._rng.standard_normal((_WALK_CHUNK, self._n, 2))
            extension = self._path[-1] + np.cumsum(steps, axis=0)
            self._path = np.concatenate([self._path, extension])
        fraction = position - index
        return (1.0 - fraction) * self._path[index] + fraction * self._path[index + 1]


class Structure:
    """One labelled structure: emitters at a time point, with drift and bleaching applied."""

    name: str = "structure"

    def __init__(
        self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int
    ) -> None:
        self.field_nm = field_nm
        self.dynamics = dynamics
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def points(self, time_s: float) -> PointCloud:
        """All emitters at ``time_s`` (drift and bleaching applied, unit mean density)."""
        cloud = self._points_at(time_s)
        drift_x, drift_y = self.dynamics.drift_nm_per_s
        cloud.x_nm = cloud.x_nm + drift_x * time_s
        cloud.y_nm = cloud.y_nm + drift_y * time_s
        cloud.weight = cloud.weight * np.exp(-self.dynamics.bleach_rate_per_s * max(time_s, 0.0))
        return cloud

    def _points_at(self, time_s: float) -> PointCloud:
        raise NotImplementedError

    def _random_position(self, n: int, margin_nm: float = 500.0) -> np.ndarray:
        height, width = self.field_nm
        y = self._rng.uniform(-margin_nm, height + margin_nm, n)
        x = self._rng.uniform(-margin_nm, width + margin_nm, n)
        return np.stack([y, x], axis=1)

    @property
    def area_um2(self) -> float:
        """Field area in square micrometres."""
        return self.field_nm[0] * self.field_nm[1] / 1e6


def worm_like_chain(
    rng: np.random.Generator, anchor: np.ndarray, angle_rad: float, length_nm: float,
    persistence_nm: float, anchor_fraction: float = 0.0,
) -> np.ndarray:
    """(n, 2) points (y, x) every SPACING_NM along a worm-like chain.

    The point at ``anchor_fraction`` of the length lies at ``anchor`` (so a chain anchored in
    the field of view crosses it).
    """
    n = max(int(length_nm / SPACING_NM), 2)
    turns = rng.standard_normal(n) * np.sqrt(SPACING_NM / persistence_nm)
    angles = angle_rad + np.cumsum(turns)
    steps = SPACING_NM * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    chain = np.cumsum(steps, axis=0)
    index = min(int(anchor_fraction * n), n - 1)
    return anchor + chain - chain[index]


def _line_cloud(points_yx: np.ndarray, brightness: float = 1.0) -> PointCloud:
    return PointCloud(
        points_yx[:, 0].copy(), points_yx[:, 1].copy(), np.full(len(points_yx), brightness)
    )


class Microtubules(Structure):
    """Stiff worm-like chains whose plus ends grow and shrink (dynamic instability)."""

    name = "microtubules"

    def __init__(self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int) -> None:
        super().__init__(field_nm, dynamics, seed)
        count = max(int(0.3 * self.area_um2), 3)
        self._base_fraction = self._rng.uniform(0.4, 0.8, count)  # chain shown at t = 0
        self._period_s = self._rng.uniform(20.0, 60.0, count)
        self._phase = self._rng.uniform(0.0, 1.0, count)
        chains = [
            worm_like_chain(
                self._rng, anchor, self._rng.uniform(0, 2 * np.pi),
                self._rng.uniform(8000.0, 25000.0), 20000.0,
                anchor_fraction=self._rng.uniform(0.0, 0.4),
            )
            for anchor in self._random_position(count, margin_nm=0.0)
        ]
        self._lengths = np.array([len(c) for c in chains])
        self._owner = np.repeat(np.arange(count), self._lengths)
        self._index = np.concatenate([np.arange(n) for n in self._lengths])
        self._cloud = PointCloud.concatenate([_line_cloud(c) for c in chains])

    def _points_at(self, time_s: float) -> PointCloud:
        # plus ends: triangle wave, growing for half a period and shrinking for the other half
        cycle = (time_s / self._period_s + self._phase) % 1.0
        excursion_nm = (
            self.dynamics.growth_nm_per_s * self._period_s / 2.0 * (1.0 - 2.0 * abs(cycle - 0.5))
        )
        shown = self._base_fraction * self._lengths + excursion_nm / SPACING_NM
        keep = self._index < np.clip(shown, 2, self._lengths)[self._owner]
        c = self._cloud
        return PointCloud(c.y_nm[keep], c.x_nm[keep], c.weight[keep])


class FActin(Structure):
    """Dense crossing filaments, straighter and shorter than microtubules, some in bundles."""

    name = "f-actin"

    def __init__(self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int) -> None:
        super().__init__(field_nm, dynamics, seed)
        count = max(int(0.8 * self.area_um2), 8)
        chains = []
        for anchor in self._random_position(count, margin_nm=0.0):
            chains.append(
                worm_like_chain(
                    self._rng, anchor, self._rng.uniform(0, 2 * np.pi),
                    self._rng.uniform(2000.0, 9000.0), 15000.0,
                    anchor_fraction=self._rng.uniform(0.0, 1.0),
                )
            )
        self._cloud = PointCloud.concatenate(
            [_line_cloud(c, float(self._rng.uniform(0.5, 1.5))) for c in chains]
        )
        self._walk = _BrownianWalks(count, dynamics.diffusion_nm2_per_s * 0.05, seed + 1)
        self._owner = np.repeat(np.arange(count), [len(c) for c in chains])

    def _points_at(self, time_s: float) -> PointCloud:
        shift = self._walk.at(time_s)[self._owner]
        c = self._cloud
        return PointCloud(c.y_nm + shift[:, 0], c.x_nm + shift[:, 1], c.weight.copy())


class EndoplasmicReticulum(Structure):
    """Tubular network: slightly curved tubules between junctions that wander slowly."""

    name = "er"

    def __init__(self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int) -> None:
        super().__init__(field_nm, dynamics, seed)
        count = max(int(1.2 * self.area_um2), 6)
        self._nodes = self._random_position(count, margin_nm=1000.0)
        triangles = Delaunay(self._nodes).simplices
        edges = {tuple(sorted((int(a), int(b)))) for t in triangles for a, b in
                 ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
        ordered = sorted(edges)
        keep = self._rng.random(len(ordered)) < 0.7
        self._edges = np.array([e for e, k in zip(ordered, keep, strict=True) if k])
        bend = self._rng.normal(0.0, 0.15, len(self._edges))
        self._walk = _BrownianWalks(count, dynamics.diffusion_nm2_per_s * 0.1, seed + 1)
        vectors = self._nodes[self._edges[:, 1]] - self._nodes[self._edges[:, 0]]
        per_edge = np.maximum((np.hypot(vectors[:, 0], vectors[:, 1]) / SPACING_NM), 2)
        per_edge = per_edge.astype(int)
        self._owner = np.repeat(np.arange(len(self._edges)), per_edge)
        self._s = np.concatenate([np.linspace(0.0, 1.0, n) for n in per_edge])[:, None]
        self._bend = bend[self._owner][:, None]

    def _points_at(self, time_s: float) -> PointCloud:
        nodes = self._nodes + self._walk.at(time_s)
        p = nodes[self._edges[self._owner, 0]]
        q = nodes[self._edges[self._owner, 1]]
        d = q - p
        normal = np.stack([d[:, 1], -d[:, 0]], axis=1)
        s = self._s
        line = p + s * d + (4.0 * s * (1.0 - s)) * self._bend * normal
        return PointCloud(line[:, 0], line[:, 1], np.ones(len(line)))


def _disk_offsets(radius_nm: float) -> np.ndarray:
    r = np.arange(-radius_nm, radius_nm + AREA_SPACING_NM / 2, AREA_SPACING_NM)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    inside = yy**2 + xx**2 <= radius_nm**2
    return np.stack([yy[inside], xx[inside]], axis=1)


def _ring_offsets(radius_nm: float) -> np.ndarray:
    n = max(int(2 * np.pi * radius_nm / SPACING_NM), 6)
    angles = 2 * np.pi * np.arange(n) / n
    return radius_nm * np.stack([np.sin(angles), np.cos(angles)], axis=1)


class _Puncta(Structure):
    """Diffusing compact objects built from an offset pattern each."""

    def _build(self, shapes: list[np.ndarray], brightness: np.ndarray, mobility: float) -> None:
        self._centres = self._random_position(len(shapes), margin_nm=300.0)
        self._shapes = shapes
        self._brightness = brightness
        self._owner = np.repeat(np.arange(len(shapes)), [len(s) for s in shapes])
        self._offsets = np.concatenate(shapes)
        self._walk = _BrownianWalks(
            len(shapes), self.dynamics.diffusion_nm2_per_s * mobility, self.seed + 1
        )

    def _points_at(self, time_s: float) -> PointCloud:
        centres = self._centres + self._walk.at(time_s)
        positions = centres[self._owner] + self._offsets
        return PointCloud(
            positions[:, 0], positions[:, 1], self._brightness[self._owner].copy()
        )


class ClathrinCoatedPits(_Puncta):
    """Rings 80-200 nm across (the projected coat), some with a faint filled centre."""

    name = "ccps"

    def __init__(self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int) -> None:
        super().__init__(field_nm, dynamics, seed)
        count = max(int(1.5 * self.area_um2), 4)
        radii = self._rng.uniform(40.0, 100.0, count)
        shapes = [_ring_offsets(float(r)) for r in radii]
        brightness = self._rng.uniform(0.6, 1.4, count) * 2.0
        self._build(shapes, brightness, mobility=0.2)


class Lysosomes(_Puncta):
    """Filled puncta 200-700 nm across, diffusing faster than pits."""

    name = "lysosomes"

    def __init__(self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int) -> None:
        super().__init__(field_nm, dynamics, seed)
        count = max(int(0.25 * self.area_um2), 3)
        radii = self._rng.uniform(100.0, 350.0, count)
        shapes = [_disk_offsets(float(r)) for r in radii]
        brightness = self._rng.uniform(0.5, 1.5, count)
        self._build(shapes, brightness, mobility=2.0)


class Mitochondria(_Puncta):
    """Outer-membrane-labelled tubes (~300-500 nm wide, 1-5 um long): edges brighter."""

    name = "mitochondria"

    def __init__(self, field_nm: tuple[float, float], dynamics: Dynamics, seed: int) -> None:
        super().__init__(field_nm, dynamics, seed)
        count = max(int(0.06 * self.area_um2), 2)
        shapes = []
        for _ in range(count):
            axis = worm_like_chain(
                self._rng, np.zeros(2), self._rng.uniform(0, 2 * np.pi),
                self._rng.uniform(1000.0, 5000.0), 3000.0,
            )
            shapes.append(self._tube(axis, self._rng.uniform(150.0, 250.0)))
        brightness = self._rng.uniform(0.7, 1.3, count)
        self._build(shapes, brightness, mobility=0.5)

    @staticmethod
    def _tube(axis: np.ndarray, radius_nm: float) -> np.ndarray:
        """Projection of a hollow cylinder: emitters across the width, denser at the edges."""
        # projected membrane: uniform in angle around the tube -> density ~ 1/sqrt(R^2 - d^2)
        axis = axis[:: max(int(AREA_SPACING_NM / SPACING_NM), 1)]
        tangent = np.gradient(axis, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        angles = np.linspace(0.0, np.pi, max(int(np.pi * radius_nm / AREA_SPACING_NM), 8))
        across = radius_nm * np.cos(angles)
        points = axis[:, None, :] + across[None, :, None] * normal[:, None, :]
        return points.reshape(-1, 2)


_STRUCTURE_CLASSES: dict[str, type[Structure]] = {
    cls.name: cls
    for cls in (
        Microtubules, FActin, EndoplasmicReticulum, ClathrinCoatedPits, Lysosomes, Mitochondria
    )
}


def make_structure(
    name: str, field_nm: tuple[float, float], dynamics: Dynamics, seed: int
) -> Structure:
    """Build a structure by its microscopist's name (see ``STRUCTURES``)."""
    if name not in _STRUCTURE_CLASSES:
        raise ValueError(f"structure={name!r} is not one of {', '.join(STRUCTURES)}")
    return _STRUCTURE_CLASSES[name](field_nm, dynamics, seed)


class Sample:
    """A specimen of one or more labelled structures sharing the field and the dynamics."""

    def __init__(
        self,
        structures: list[str],
        field_nm: tuple[float, float],
        dynamics: Dynamics | None = None,
        seed: int = 0,
    ) -> None:
        if not structures:
            raise ValueError("a sample needs at least one structure")
        self.dynamics = dynamics or Dynamics()
        self.field_nm = field_nm
        self.components: list[Structure] = [
            make_structure(name, field_nm, self.dynamics, seed * 1000 + 17 * i + 1)
            for i, name in enumerate(structures)
        ]
        # equal brightness per field area for every component (at t = 0, before bleaching)
        area_um2 = field_nm[0] * field_nm[1] / 1e6
        self._scale = [
            area_um2 / max(c._points_at(0.0).total, 1e-12) for c in self.components
        ]

    @property
    def names(self) -> list[str]:
        """Component structure names, in order."""
        return [c.name for c in self.components]

    def component_points(self, time_s: float) -> list[PointCloud]:
        """Each component's emitters at ``time_s``."""
        clouds = []
        for component, scale in zip(self.components, self._scale, strict=True):
            cloud = component.points(time_s)
            cloud.weight = cloud.weight * scale
            clouds.append(cloud)
        return clouds

    def points(self, time_s: float) -> PointCloud:
        """All emitters at ``time_s``."""
        return PointCloud.concatenate(self.component_points(time_s))
