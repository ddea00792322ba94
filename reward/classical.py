"""Classical backend: background-difference masks + OpenCV pyramidal Lucas–Kanade tracks.

Fast on a CPU and needs no weights: the quickstart default. Same interface as the
sam2_cotracker backend (``masks``, ``tracks``), so the scorer treats both alike.
"""
from __future__ import annotations

import cv2
import numpy as np

from physgm.config import RewardConfig

from .frames import foreground


class ClassicalBackend:
    """Masks from the background difference (or a given alpha), tracks from pyramidal LK
    with a forward–backward check: a point whose LK status fails, whose forward–backward
    error exceeds ``cfg.lk_fb_threshold_px`` or which leaves the image is lost for the rest
    of the video (visible = False, position frozen at its last estimate)."""

    name = "classical"

    def __init__(self, cfg: RewardConfig):
        self.cfg = cfg
        self._lk = dict(winSize=(cfg.lk_window, cfg.lk_window), maxLevel=cfg.lk_levels,
                        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))

    def masks(self, video: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
        """``(T, H, W, 3) uint8`` (+ optional ``(T, H, W)`` bool alpha) → ``(T, H, W)`` bool."""
        if alpha is not None:
            return alpha
        return foreground(video, self.cfg.background, self.cfg.fg_threshold)

    def tracks(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries (N, 2)`` (x, y px, placed in frame 0) through ``video (T, H, W, 3)``.

        Returns tracks ``(T, N, 2)`` float32 px and visibility ``(T, N)`` bool.
        """
        t_len, h, w = video.shape[:3]
        n = len(queries)
        tracks = np.zeros((t_len, n, 2), np.float32)
        visible = np.zeros((t_len, n), bool)
        if t_len == 0:
            return tracks, visible
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video]
        pts = queries.astype(np.float32).copy()
        alive = np.ones(n, bool)
        tracks[0], visible[0] = pts, alive
        for t in range(1, t_len):
            idx = np.flatnonzero(alive)
            if len(idx):
                p0 = pts[idx].reshape(-1, 1, 2)
                p1, st, _ = cv2.calcOpticalFlowPyrLK(gray[t - 1], gray[t], p0, None, **self._lk)
                pb, st_b, _ = cv2.calcOpticalFlowPyrLK(gray[t], gray[t - 1], p1, None, **self._lk)
                p1, pb = p1.reshape(-1, 2), pb.reshape(-1, 2)
                fb = np.linalg.norm(pb - p0.reshape(-1, 2), axis=1)
                inside = (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
                ok = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb < self.cfg.lk_fb_threshold_px) & inside
                pts[idx[ok]] = p1[ok]
                alive[idx[~ok]] = False
            tracks[t], visible[t] = pts, alive
        return tracks, visible
