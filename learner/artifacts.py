"""What the DPO loop logs to its MLflow run (through ``runtime.tracking``): per-step metrics,
warnings, and side-by-side GT | winner | loser videos with the parameters of each, for a few
pairs every ``dpo.log_videos_every`` steps."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from physgm.config import RunConfig
from runtime import tracking

log = logging.getLogger("physgm.dpo")


def side_by_side(reference: np.ndarray, chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) ×3 → (T, H, 3W + 4, 3) uint8 with 2-px white separators; shorter videos
    (failed simulations end early) hold their last frame."""
    t = reference.shape[0]

    def fit(v):
        if v is None or len(v) == 0:
            return np.zeros_like(reference)
        if v.shape[0] < t:
            v = np.concatenate([v, np.repeat(v[-1:], t - v.shape[0], 0)])
        return v[:t]

    sep = np.full((t, reference.shape[1], 2, 3), 255, np.uint8)
    return np.concatenate([reference, sep, fit(chosen), sep, fit(rejected)], axis=2)


class DPOLog:
    """The DPO run's MLflow log, bound to its run id (``run_id=None``: log nothing)."""

    def __init__(self, cfg: RunConfig, run_id: str | None, fps: float = 25.0,
                 max_videos: int = 20):
        self.cfg, self.run_id, self.fps, self.max_videos = cfg, run_id, fps, max_videos
        self.videos_logged = 0

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.run_id is not None:
            tracking.log_metrics(self.cfg, self.run_id, metrics, step)

    def warn(self, message: str) -> None:
        log.warning(message)

    def log_pair_video(self, result, step: int) -> None:
        """GT | winner | loser mp4 + the two parameter sets as JSON, under pairs/."""
        if self.run_id is None or self.videos_logged >= self.max_videos:
            return
        from physgm.video import write_video

        v = result.videos
        frames = side_by_side(v["reference"], v["chosen"], v["rejected"])
        name = f"step{step:05d}_{result.scene_id}"
        with tempfile.TemporaryDirectory() as tmp:
            write_video(Path(tmp) / f"{name}.mp4", frames, fps=self.fps)
            (Path(tmp) / f"{name}.json").write_text(json.dumps({
                "scene_id": result.scene_id, "policy_version": result.policy_version,
                "rewards": [r if np.isfinite(r) else None for r in result.rewards], "chosen": v["chosen_params"],
                "rejected": v["rejected_params"]}, indent=2))
            tracking.log_artifacts(self.cfg, self.run_id, tmp, "pairs")
        self.videos_logged += 1
