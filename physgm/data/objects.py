"""Procedural objects for the synthetic dataset: unions of 1–3 primitives, deformed, sampled
as MPM particles on a regular lattice.

An object lives in a *unit frame* u (about [-1, 1]³). Its parts are primitives of
``physgm.sim.shapes`` (cube, sphere, cylinder, cone, torus, capsule), each with its own
centre, anisotropic size and rotation in the unit frame; the union is then tapered
(x, z scaled by 1 + taper·y) and bent (x += bend·y²), rotated, and scaled to the requested
size in metres:

    p = R · bend(taper(u)) · scale        (world offset from the object's centre, metres)

Particles are lattice points (step ``spacing`` metres, 8 per MPM cell at dx/2) whose
inverse image lies inside a part. Only the largest 6-connected piece is kept, so an object
never falls apart into separate bodies before the simulation starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from physgm.sim.shapes import SHAPES, inside

# Taper keeps 1 + taper·y ≥ this on the object (no inverted or collapsed slices).
_MIN_TAPER_FACTOR = 0.3


@dataclass(frozen=True)
class Part:
    """A primitive in the object's unit frame: ``shape`` (one of SHAPES) whose [-1, 1]³ box
    is scaled to ``size`` (3,) (full extent), rotated by ``rotation`` (3, 3), centred at
    ``center`` (3,)."""

    shape: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...]

    def inside(self, u: np.ndarray) -> np.ndarray:
        """(M,) bool: which unit-frame points u (M, 3) lie inside this part."""
        R = np.asarray(self.rotation)
        q = (u - np.asarray(self.center)) @ R / (np.asarray(self.size) / 2.0)
        return inside(self.shape, q)

    def bound(self) -> float:
        """Radius of a ball about the unit-frame origin that contains the part."""
        return float(np.linalg.norm(self.center) + np.linalg.norm(self.size) / 2.0)


@dataclass(frozen=True)
class ObjectSpec:
    """A procedural object: parts (union), taper, bend, world rotation (3, 3) and the
    largest extent of its axis-aligned world bounding box, ``size_m`` [m]."""

    parts: tuple[Part, ...]
    taper: float
    bend: float
    rotation: tuple[tuple[float, ...], ...]
    size_m: float

    def describe(self) -> dict:
        """JSON-safe description (the ``shape`` attribute of a stored scene)."""
        return {"parts": [{"shape": p.shape, "center": list(p.center), "size": list(p.size),
                           "rotation": [list(r) for r in p.rotation]} for p in self.parts],
                "taper": self.taper, "bend": self.bend,
                "rotation": [list(r) for r in self.rotation], "size_m": self.size_m}

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectSpec":
        parts = tuple(Part(p["shape"], tuple(p["center"]), tuple(p["size"]),
                           tuple(tuple(r) for r in p["rotation"])) for p in d["parts"])
        return cls(parts, float(d["taper"]), float(d["bend"]),
                   tuple(tuple(r) for r in d["rotation"]), float(d["size_m"]))

    # ------------------------------------------------------------------ maps
    def bound(self) -> float:
        return max(p.bound() for p in self.parts)

    def inside_unit(self, u: np.ndarray) -> np.ndarray:
        """(M,) bool: unit-frame points (M, 3) inside the union of the parts."""
        out = np.zeros(len(u), bool)
        for part in self.parts:
            out |= part.inside(u)
        return out

    def forward(self, u: np.ndarray) -> np.ndarray:
        """Unit frame → deformed, rotated frame (before the metric scale): (M, 3) → (M, 3)."""
        f = np.maximum(1.0 + self.taper * u[:, 1], _MIN_TAPER_FACTOR)
        v = np.stack([u[:, 0] * f, u[:, 1], u[:, 2] * f], 1)
        v[:, 0] += self.bend * v[:, 1] ** 2
        return v @ np.asarray(self.rotation).T

    def inverse(self, w: np.ndarray) -> np.ndarray:
        """Inverse of ``forward`` (exact: bend and taper leave y unchanged)."""
        v = w @ np.asarray(self.rotation)
        v[:, 0] -= self.bend * v[:, 1] ** 2
        f = np.maximum(1.0 + self.taper * v[:, 1], _MIN_TAPER_FACTOR)
        return np.stack([v[:, 0] / f, v[:, 1], v[:, 2] / f], 1)

    def unit_extent(self, samples: int = 48) -> tuple[np.ndarray, np.ndarray]:
        """(low (3,), high (3,)) of the deformed, rotated union before scaling, from a
        lattice of ``samples`` points per axis over the unit frame's bounding ball."""
        b = self.bound()
        axis = np.linspace(-b, b, samples)
        u = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        w = self.forward(u[self.inside_unit(u)])
        if len(w) == 0:
            raise ValueError("object has no volume: every part is empty")
        return w.min(0), w.max(0)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation (3, 3) uniform on SO(3) (normalised Gaussian quaternion)."""
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _nested(R: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in R)


def random_object(rng: np.random.Generator, size_range_m: tuple[float, float] = (0.12, 0.25),
                  shapes: tuple[str, ...] = SHAPES) -> ObjectSpec:
    """Draw an object: 1 part (50 %), 2 (30 %) or 3 (20 %); anisotropic sizes (each axis
    0.6–1.4 of the first part's, 0.4–0.9 for the others, which overlap the first); a taper
    (30 %) and a bend (30 %) of up to ±0.4; a uniform random rotation; the largest extent
    uniform in ``size_range_m`` [m]."""
    bad = [s for s in shapes if s not in SHAPES]
    if bad or not shapes:
        raise ValueError(f"unknown shapes {bad}: choose from {', '.join(SHAPES)}")
    n_parts = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    parts = [Part(str(rng.choice(shapes)), (0.0, 0.0, 0.0),
                  tuple(float(s) for s in 2.0 * rng.uniform(0.6, 1.4, 3)),
                  _nested(random_rotation(rng)))]
    for _ in range(n_parts - 1):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        parts.append(Part(str(rng.choice(shapes)),
                          tuple(float(c) for c in direction * rng.uniform(0.3, 0.6)),
                          tuple(float(s) for s in 2.0 * rng.uniform(0.4, 0.9, 3)),
                          _nested(random_rotation(rng))))
    taper = float(rng.uniform(-0.4, 0.4)) if rng.random() < 0.3 else 0.0
    bend = float(rng.uniform(-0.4, 0.4)) if rng.random() < 0.3 else 0.0
    return ObjectSpec(tuple(parts), taper, bend, _nested(random_rotation(rng)),
                      float(rng.uniform(*size_range_m)))


def _largest_component(occupied: np.ndarray) -> np.ndarray:
    """Mask of the largest 6-connected component of a boolean grid (min-label propagation)."""
    big = np.iinfo(np.int64).max
    labels = np.where(occupied, np.arange(occupied.size).reshape(occupied.shape), big)
    while True:
        new = labels.copy()
        for axis in range(3):
            for shift in (1, -1):
                rolled = np.roll(labels, shift, axis)
                edge = [slice(None)] * 3
                edge[axis] = slice(0, 1) if shift == 1 else slice(-1, None)
                rolled[tuple(edge)] = big  # no wrap-around
                new = np.minimum(new, rolled)
        new = np.where(occupied, new, big)
        if np.array_equal(new, labels):
            break
        labels = new
    ids, counts = np.unique(labels[occupied], return_counts=True)
    return occupied & (labels == ids[np.argmax(counts)])


def sample_object(spec: ObjectSpec, spacing_m: float, max_particles: int | None = None
                  ) -> tuple[np.ndarray, float]:
    """Particles of ``spec`` centred on its bounding-box centre.

    Args:
        spacing_m: lattice step [m] (dx/2 for 8 particles per MPM cell).
        max_particles: if the object would hold more, the step grows until it fits (the
            particle volume ``spacing³`` then grows with it).
    Returns:
        (particles (N, 3) float32 [m], the spacing used [m]).
    """
    if spacing_m <= 0:
        raise ValueError(f"spacing must be > 0 m, got {spacing_m}")
    lo_u, hi_u = spec.unit_extent()
    scale = spec.size_m / float(np.max(hi_u - lo_u))
    mid = (lo_u + hi_u) / 2.0 * scale
    half = (hi_u - lo_u) / 2.0 * scale + 2.0 * spacing_m
    spacing = spacing_m
    while True:
        counts = [int(np.ceil(h / spacing)) for h in half]
        axes = [np.arange(-c, c + 1) * spacing for c in counts]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        w = grid.reshape(-1, 3) + mid
        occupied = spec.inside_unit(spec.inverse(w / scale)).reshape(grid.shape[:3])
        if not occupied.any():
            raise ValueError(f"object of size {spec.size_m} m holds no particle at spacing "
                             f"{spacing} m: make it larger or the spacing smaller")
        occupied = _largest_component(occupied)
        n = int(occupied.sum())
        if max_particles is None or n <= max_particles:
            return (grid[occupied]).astype(np.float32), spacing
        spacing *= (n / max_particles) ** (1.0 / 3.0) * 1.01


__all__ = ["Part", "ObjectSpec", "random_object", "sample_object", "random_rotation",
           "SHAPES"]
