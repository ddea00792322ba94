"""Pure math of the video reward: mask IoU, track error, the reward formula.

No I/O, no models: numpy in, floats out. Conventions shared by every backend:

- masks are boolean ``(T, H, W)``; tracks are pixel coordinates ``(T, N, 2)`` as (x, y)
  with visibility ``(T, N)`` bool; the candidate and the reference track the *same* N query
  points (placed on the reference object in frame 0).
- A candidate shorter than the reference (a simulation that went unstable and stopped
  early) is compared on the frames it has; each missing frame counts as the worst case
  (IoU 0, track error 1), so stopping early can never pay.

The reward (higher = closer, ≤ 0, exactly 0 for identical videos):

    reward = −(w_mask · (1 − mIoU) + w_track · track_error)

so it lies in [−(w_mask + w_track), 0].
"""
from __future__ import annotations

import numpy as np


def mask_iou_per_frame(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """IoU of two boolean mask stacks ``(T, H, W)`` → ``(T,)`` in [0, 1].

    A frame where both masks are empty scores 1 (both agree nothing is there).
    """
    if candidate.shape != reference.shape:
        raise ValueError(f"mask shapes differ: {candidate.shape} vs {reference.shape}")
    c = candidate.astype(bool).reshape(len(candidate), -1)
    r = reference.astype(bool).reshape(len(reference), -1)
    inter = np.logical_and(c, r).sum(axis=1)
    union = np.logical_or(c, r).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0).astype(np.float64)


def mean_iou(candidate: np.ndarray, reference: np.ndarray) -> float:
    """mIoU over the reference's T frames; candidate frames beyond its length count as 0.

    candidate ``(Tc, H, W)`` with Tc ≤ T, reference ``(T, H, W)``.
    """
    t_ref, t_cand = len(reference), len(candidate)
    if t_cand > t_ref:
        raise ValueError(f"candidate has {t_cand} mask frames, the reference {t_ref}")
    if t_ref == 0:
        raise ValueError("reference has no frames")
    ious = mask_iou_per_frame(candidate, reference[:t_cand]) if t_cand else np.zeros(0)
    return float(ious.sum() / t_ref)


def track_error(cand_tracks: np.ndarray, cand_visible: np.ndarray, ref_tracks: np.ndarray,
                ref_visible: np.ndarray, image_hw: tuple[int, int]) -> float:
    """Visibility-aware mean track distance, normalised by the image diagonal, in [0, 1].

    cand_tracks ``(Tc, N, 2)`` px, cand_visible ``(Tc, N)``; ref_tracks ``(T, N, 2)`` px,
    ref_visible ``(T, N)``; Tc ≤ T; image_hw = (H, W).

    Per point and frame: if the reference sees the point and the candidate does too, the
    error is min(‖p_cand − p_ref‖ / diag, 1); if the reference sees it but the candidate lost
    it, the error is 1 (a candidate cannot lower its error by losing the object); points the
    reference does not see are left out (nothing to compare against). Frames missing from
    the candidate count every reference-visible point as 1. The result is the mean over all
    counted (frame, point) pairs; 0 when the reference sees no point at all.
    """
    t_ref, t_cand = ref_tracks.shape[0], cand_tracks.shape[0]
    if t_cand > t_ref:
        raise ValueError(f"candidate has {t_cand} track frames, the reference {t_ref}")
    if cand_tracks.shape[1:] != ref_tracks.shape[1:]:
        raise ValueError(f"track shapes differ: {cand_tracks.shape} vs {ref_tracks.shape}")
    ref_vis = ref_visible.astype(bool)
    counted = int(ref_vis.sum())
    if counted == 0:
        return 0.0
    diag = float(np.hypot(*image_hw))
    dist = np.linalg.norm(cand_tracks - ref_tracks[:t_cand], axis=-1) / diag
    dist = np.minimum(np.nan_to_num(dist, nan=1.0, posinf=1.0), 1.0)
    per = np.where(cand_visible.astype(bool), dist, 1.0)
    total = float(np.where(ref_vis[:t_cand], per, 0.0).sum()) + float(ref_vis[t_cand:].sum())
    return total / counted


def reward_value(miou: float, track_err: float, w_mask: float, w_track: float) -> float:
    """−(w_mask·(1 − mIoU) + w_track·track_error); 0.0 (not −0.0) when both terms vanish."""
    return 0.0 - (w_mask * (1.0 - miou) + w_track * track_err)


def failure_value(failure_reward: float, w_mask: float, w_track: float) -> float:
    """Reward of a video that could not be scored (blank, all black, invalid).

    min(failure_reward, −(w_mask + w_track)): never above the worst scored video, so a
    failed render can't outrank any candidate that was actually compared.
    """
    return min(float(failure_reward), -(w_mask + w_track))


def grid_queries(mask: np.ndarray, grid_size: int) -> np.ndarray:
    """Up to grid_size² query points ``(N, 2)`` (x, y) px on a boolean mask ``(H, W)``.

    A regular grid spans the mask's bounding box; points falling outside the mask are
    dropped. If the object is thinner than the grid spacing, the mask pixel nearest each
    grid point is used instead, so a non-empty mask always yields at least one point.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("the mask is empty: no object to place track queries on")
    gx = np.linspace(xs.min(), xs.max(), grid_size)
    gy = np.linspace(ys.min(), ys.max(), grid_size)
    px, py = np.meshgrid(np.round(gx).astype(int), np.round(gy).astype(int))
    px, py = px.ravel(), py.ravel()
    inside = mask[py, px]
    if inside.any():
        pts = np.stack([px[inside], py[inside]], axis=1)
    else:
        obj = np.stack([xs, ys], axis=1)
        grid = np.stack([px, py], axis=1)
        nearest = np.argmin(((grid[:, None, :] - obj[None]) ** 2).sum(-1), axis=1)
        pts = obj[nearest]
    return np.unique(pts, axis=0).astype(np.float32)
