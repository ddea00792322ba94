"""Particle sampling of primitive shapes on a jittered lattice.

``spacing`` [m] is the lattice step; MPM's usual 8 particles per cell is spacing = dx/2
(the default particle volume of ``simulate`` assumes it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# Inside tests in the shape's unit frame: points p (M,3) with the shape spanning [-1, 1]³.
_INSIDE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cube": lambda p: np.all(np.abs(p) <= 1.0, axis=1),
    "sphere": lambda p: np.sum(p * p, axis=1) <= 1.0,
    "cylinder": lambda p: (p[:, 0] ** 2 + p[:, 2] ** 2 <= 1.0) & (np.abs(p[:, 1]) <= 1.0),
    "cone": lambda p: (np.sqrt(p[:, 0] ** 2 + p[:, 2] ** 2) <= (1.0 - p[:, 1]) / 2.0)
    & (np.abs(p[:, 1]) <= 1.0),
    "torus": lambda p: (np.sqrt(p[:, 0] ** 2 + p[:, 2] ** 2) - 0.65) ** 2 + (p[:, 1] / 0.35) ** 2
    * 0.35 ** 2 <= 0.35 ** 2,
    "capsule": lambda p: np.sum(np.stack([p[:, 0], np.clip(np.abs(p[:, 1]) - 0.5, 0, None) * 2.0,
                                          p[:, 2]], 1) ** 2, axis=1) <= 1.0,
}
SHAPES = tuple(_INSIDE)


def inside(shape: str, points: np.ndarray) -> np.ndarray:
    """(M,) bool: which points (M, 3), in the shape's unit frame [-1, 1]³, lie inside."""
    if shape not in _INSIDE:
        raise ValueError(f"unknown shape '{shape}': choose one of {', '.join(SHAPES)}")
    return _INSIDE[shape](np.asarray(points, np.float64))


def rotation_matrix(axis, angle_rad: float) -> np.ndarray:
    """3×3 rotation about ``axis`` by ``angle_rad`` (Rodrigues)."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def sample_shape(shape: str, center, size, spacing: float, rotation: np.ndarray | None = None,
                 jitter: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Particles (M, 3) [m] filling ``shape`` centred at ``center`` [m].

    Args:
        shape: one of SHAPES.
        size: full extent [m]: a scalar or (3,) per axis (the shape's [-1, 1]³ box scaled to it).
        spacing: lattice step [m] (dx/2 gives 8 particles per MPM cell).
        rotation: optional (3, 3) rotation applied about the centre.
        jitter: random offset per particle as a fraction of ``spacing`` (needs ``rng``).
    """
    if shape not in _INSIDE:
        raise ValueError(f"unknown shape '{shape}': choose one of {', '.join(SHAPES)}")
    if spacing <= 0:
        raise ValueError(f"spacing must be > 0 m, got {spacing}")
    half = np.broadcast_to(np.asarray(size, np.float64), (3,)) / 2.0
    if (half <= 0).any():
        raise ValueError(f"size must be > 0 m per axis, got {size}")
    counts = [max(1, int(np.floor(2.0 * h / spacing + 1e-9))) for h in half]
    axes = [(np.arange(c) - (c - 1) / 2.0) * spacing for c in counts]  # centred lattice
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    pts = grid[_INSIDE[shape](grid / half)]
    if len(pts) == 0:
        raise ValueError(f"{shape} of size {size} m holds no particle at spacing {spacing} m: "
                         "make it larger or the spacing smaller")
    if jitter > 0:
        if rng is None:
            raise ValueError("jitter needs an rng (numpy Generator) for reproducibility")
        pts = pts + rng.uniform(-0.5, 0.5, pts.shape) * jitter * spacing
    if rotation is not None:
        pts = pts @ np.asarray(rotation, np.float64).T
    return (pts + np.asarray(center, np.float64)).astype(np.float32)
