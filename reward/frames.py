"""Input checks and the background-difference foreground shared by both backends.

Videos are numpy ``(T, H, W, 3) uint8`` RGB. Pure numpy, no models.
"""
from __future__ import annotations

import numpy as np


def check_video(video, name: str = "video", allow_empty: bool = False) -> np.ndarray:
    """Return ``video`` as a ``(T, H, W, 3) uint8`` array or raise ValueError saying what to fix."""
    if not isinstance(video, np.ndarray):
        raise ValueError(f"{name} must be a numpy array (T, H, W, 3) uint8, got "
                         f"{type(video).__name__}")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3), got {video.shape}")
    if video.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0..255), got {video.dtype}: convert float "
                         "renders in 0..1 with physgm.video.to_uint8")
    if video.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} has no frames")
    if video.shape[1] < 8 or video.shape[2] < 8:
        raise ValueError(f"{name} frames are {video.shape[1]}×{video.shape[2]} px; the reward "
                         "needs at least 8×8")
    return video


def check_alpha(alpha, video: np.ndarray, name: str) -> np.ndarray | None:
    """Optional per-frame alpha/mask ``(T, H, W)`` (bool, or float in 0..1) → bool or None."""
    if alpha is None:
        return None
    a = np.asarray(alpha)
    if a.shape != video.shape[:3]:
        raise ValueError(f"{name} must have shape {video.shape[:3]} (T, H, W) like its video, "
                         f"got {a.shape}")
    if a.dtype == bool:
        return a
    return np.nan_to_num(a.astype(np.float32), nan=0.0) > 0.5


def check_candidate(candidate, reference_shape: tuple[int, int, int]) -> np.ndarray:
    """Validate a candidate against its reference's ``(T, H, W)``.

    Fewer frames than the reference are allowed (scored as described in reward.metrics);
    more frames or another frame size raise ValueError.
    """
    cand = check_video(candidate, "candidate", allow_empty=True)
    t_ref, h_ref, w_ref = reference_shape
    if cand.shape[1:3] != (h_ref, w_ref):
        raise ValueError(f"candidate frames are {cand.shape[1]}×{cand.shape[2]} (H×W) but the "
                         f"reference's are {h_ref}×{w_ref}: render candidates at the reference "
                         "resolution (render.width/height)")
    if cand.shape[0] > t_ref:
        raise ValueError(f"candidate has {cand.shape[0]} frames but the reference only {t_ref}: "
                         "simulate the same number of frames (sim.n_frames) as the "
                         "ground-truth video")
    return cand


def foreground(video: np.ndarray, background=(0, 0, 0), threshold: int = 10) -> np.ndarray:
    """Background difference: ``(T, H, W, 3) uint8`` → ``(T, H, W)`` bool.

    A pixel is foreground when any channel differs from ``background`` (RGB 0..255) by more
    than ``threshold``.
    """
    bg = np.asarray(background, dtype=np.int16).reshape(1, 1, 1, 3)
    return (np.abs(video.astype(np.int16) - bg).max(axis=-1) > threshold)


def is_blank(masks: np.ndarray) -> bool:
    """True when no frame of a ``(T, H, W)`` mask stack has any foreground (or T = 0):
    a blank render, an all-black one (the renderer paints NaN black), or an empty video."""
    return masks.size == 0 or not bool(masks.any())
