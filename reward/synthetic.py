"""Synthetic test videos: a textured disc falling and bouncing on a black background.

Used by the tests and the benchmark to get references and candidates with known
differences (a spatial shift, a time delay, another bounce) without a simulator.
"""
from __future__ import annotations

import numpy as np


def disc_trajectory(n_frames: int, size: int, restitution: float = 0.6,
                    gravity_px: float | None = None) -> np.ndarray:
    """Centre ``(n_frames, 2)`` (x, y px) of a disc dropped from the upper left, drifting
    right, bouncing on the floor with the given ``restitution``; gravity in px/frame²."""
    g = gravity_px if gravity_px is not None else size / 64.0
    radius = size / 8.0
    floor = size - 2.0 - radius
    x, y, vx, vy = size * 0.3, radius + 2.0, size / 160.0, 0.0
    out = np.zeros((n_frames, 2))
    for t in range(n_frames):
        out[t] = x, y
        vy += g
        x, y = x + vx, y + vy
        if y > floor:
            y, vy = floor - (y - floor) * restitution, -vy * restitution
    return out


def falling_disc(n_frames: int = 16, size: int = 64, shift: tuple[float, float] = (0.0, 0.0),
                 delay: int = 0, restitution: float = 0.6,
                 colour: tuple[int, int, int] = (230, 120, 40)) -> np.ndarray:
    """``(n_frames, size, size, 3) uint8`` video of a checker-textured disc.

    shift: (dx, dy) px added to the disc centre in every frame; delay: frame t shows the
    state of frame max(t − delay, 0) (a late start); restitution: bounciness.
    """
    centres = disc_trajectory(n_frames, size, restitution)
    radius = size / 8.0
    cell = max(radius / 2.5, 1.5)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    base = np.asarray(colour, np.float32)
    video = np.zeros((n_frames, size, size, 3), np.uint8)
    for t in range(n_frames):
        cx, cy = centres[max(t - delay, 0)] + np.asarray(shift, float)
        dx, dy = xx - cx, yy - cy
        inside = dx * dx + dy * dy <= radius * radius
        checker = (np.floor(dx / cell) + np.floor(dy / cell)) % 2 == 0
        shade = np.where(checker, 1.0, 0.45)[..., None] * base
        video[t][inside] = np.clip(shade[inside], 0, 255).astype(np.uint8)
    return video
