"""Score simulated videos against a ground-truth video.

    reward = −(w_mask · (1 − mIoU) + w_track · track_error)        (≤ 0; 0 = identical)

- mIoU: mean over the reference's frames of the IoU between the candidate's and the
  reference's object masks (backend "classical": background difference; "sam2_cotracker":
  SAM-2 prompted in frame 0).
- track_error: the query points (a grid on the reference's first-frame mask) are tracked
  through both videos (LK or CoTracker3); the mean distance between corresponding tracks
  divided by the image diagonal, clipped to 1, visibility-aware (see reward.metrics).
- A candidate with fewer frames (a simulation stopped early) is scored on its frames and
  every missing frame counts as IoU 0 / track error 1 (status "short").
- A blank or all-black candidate (the renderer paints NaN black) gets the failure reward
  min(failure_reward, −(w_mask + w_track)) (status "blank"): never above a scored video.
- A wrong frame size, more frames than the reference, a non-uint8 or non-(T, H, W, 3)
  array raise ValueError (``strict=False`` turns that into the failure reward with status
  "invalid", and any backend exception into status "error", the message in ``error``).
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass

import numpy as np

from physgm.config import RewardConfig, RunConfig

from .cache import ReferenceCache, ReferenceData, video_digest
from .frames import check_alpha, check_candidate, check_video, foreground, is_blank
from .metrics import failure_value, grid_queries, mean_iou, reward_value, track_error

BACKENDS = ("classical", "sam2_cotracker")


@dataclass(frozen=True)
class RewardResult:
    """reward (≤ 0, higher = closer), mask_iou (mIoU in [0, 1]), track_error (in [0, 1]);
    status "ok" | "short" | "blank" | "invalid" | "error"; n_frames of the candidate."""

    reward: float
    mask_iou: float
    track_error: float
    status: str = "ok"
    n_frames: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def reward_config(cfg: RewardConfig | RunConfig | dict | None = None,
                  backend: str | None = None, **overrides) -> RewardConfig:
    """A ``RewardConfig`` from a RewardConfig, a whole RunConfig, a dict or None (defaults),
    with ``backend`` and field ``overrides`` applied (validated)."""
    if isinstance(cfg, RunConfig):
        cfg = cfg.reward
    data = cfg.model_dump() if isinstance(cfg, RewardConfig) else dict(cfg or {})
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown reward backend '{backend}': use one of {BACKENDS}")
        data["backend"] = backend
    data.update(overrides)
    return RewardConfig.model_validate(data)


def make_backend(cfg: RewardConfig):
    """The backend object (``masks``, ``tracks``) named by ``cfg.backend``."""
    if cfg.backend == "classical":
        from .classical import ClassicalBackend
        return ClassicalBackend(cfg)
    from .sam2_cotracker import Sam2CotrackerBackend
    return Sam2CotrackerBackend(cfg)


class RewardScorer:
    """Scores K candidates per scene against a cached reference.

    >>> scorer = RewardScorer(cfg.reward)
    >>> scorer.prepare_reference("scene-0", gt_video)          # once per scene
    >>> results = scorer.score_batch("scene-0", [video_a, video_b])

    ``timings`` accumulates seconds spent on references and on candidates.
    """

    def __init__(self, cfg: RewardConfig | RunConfig | dict | None = None,
                 backend: str | None = None):
        self.cfg = reward_config(cfg, backend)
        self.backend = make_backend(self.cfg)
        self.cache = ReferenceCache(self.cfg.cache_size)
        self.timings = {"reference_s": 0.0, "candidate_s": 0.0, "references": 0, "candidates": 0}

    @property
    def failure_reward(self) -> float:
        return failure_value(self.cfg.failure_reward, self.cfg.w_mask, self.cfg.w_track)

    def set_weights(self, w_mask: float | None = None, w_track: float | None = None,
                    failure_reward: float | None = None) -> None:
        """Change the reward weights without rebuilding models or dropping the cache."""
        update = {k: v for k, v in dict(w_mask=w_mask, w_track=w_track,
                                        failure_reward=failure_reward).items() if v is not None}
        self.cfg = reward_config(self.cfg, **update)
        self.backend.cfg = self.cfg

    def prepare_reference(self, scene_id: str | None, video: np.ndarray,
                          alpha: np.ndarray | None = None) -> ReferenceData:
        """Masks, query points and tracks of a ground-truth video ``(T, H, W, 3) uint8``
        (optional alpha ``(T, H, W)``), computed once and cached under ``scene_id`` (or the
        video's content hash when ``scene_id`` is None)."""
        ref = check_video(video, "reference")
        alpha = check_alpha(alpha, ref, "reference_alpha")
        digest = video_digest(ref, alpha)
        key = scene_id if scene_id is not None else digest
        cached = self.cache.get(key, digest)
        if cached is not None:
            return cached
        start = time.perf_counter()
        prompt = alpha if alpha is not None else foreground(ref, self.cfg.background,
                                                            self.cfg.fg_threshold)
        if not prompt[0].any():
            raise ValueError(
                "the reference's first frame has no foreground: set reward.background to the "
                "video's background colour (RGB 0..255), lower reward.fg_threshold, or pass "
                "the reference alpha")
        masks = self.backend.masks(ref, alpha)
        queries = grid_queries(masks[0] if masks[0].any() else prompt[0], self.cfg.grid_size)
        tracks, visible = self.backend.tracks(ref, queries)
        item = ReferenceData(digest, tuple(ref.shape[:3]), masks, queries, tracks, visible)
        self.cache.put(key, item)
        self.timings["reference_s"] += time.perf_counter() - start
        self.timings["references"] += 1
        return item

    def reference(self, scene_id: str) -> ReferenceData:
        item = self.cache.get(scene_id)
        if item is None:
            raise KeyError(f"no prepared reference for scene '{scene_id}': call "
                           "prepare_reference(scene_id, video) first")
        return item

    def score_batch(self, scene_id: str, candidates: list, alphas: list | None = None,
                    strict: bool = True) -> list[RewardResult]:
        """Score candidate videos ``(T', H, W, 3) uint8`` (T' ≤ T) of one prepared scene.

        ``alphas``: optional list (same length) of ``(T', H, W)`` masks or None each.
        ``strict=False``: an invalid candidate gets the failure reward (status "invalid")
        instead of raising ValueError.
        """
        ref = self.reference(scene_id)
        if alphas is not None and len(alphas) != len(candidates):
            raise ValueError(f"got {len(alphas)} alphas for {len(candidates)} candidates")
        alphas = alphas if alphas is not None else [None] * len(candidates)
        return [self._score_one(ref, c, a, strict) for c, a in zip(candidates, alphas)]

    def score(self, candidate: np.ndarray, reference: np.ndarray,
              candidate_alpha: np.ndarray | None = None,
              reference_alpha: np.ndarray | None = None) -> RewardResult:
        """One candidate against one reference (the reference is cached by content)."""
        ref = self.prepare_reference(None, reference, reference_alpha)
        return self._score_one(ref, candidate, candidate_alpha, strict=True)

    def failed(self, status: str, error: str | None = None, n_frames: int = 0) -> RewardResult:
        """The result of a video that could not be scored."""
        return RewardResult(self.failure_reward, 0.0, 1.0, status, n_frames, error)

    def _score_one(self, ref: ReferenceData, candidate, alpha, strict: bool) -> RewardResult:
        start = time.perf_counter()
        try:
            cand = check_candidate(candidate, ref.shape)
            alpha = check_alpha(alpha, cand, "candidate_alpha")
        except ValueError as err:
            if strict:
                raise
            return self.failed("invalid", str(err))
        try:
            fg = alpha if alpha is not None else foreground(cand, self.cfg.background,
                                                            self.cfg.fg_threshold)
            if is_blank(fg):
                return self.failed("blank", None, len(cand))
            masks = self.backend.masks(cand, alpha)
            miou = mean_iou(masks, ref.masks)
            tracks, visible = self.backend.tracks(cand, ref.queries)
            err = track_error(tracks, visible, ref.tracks, ref.visible, ref.shape[1:])
            status = "ok" if len(cand) == ref.shape[0] else "short"
            value = reward_value(miou, err, self.cfg.w_mask, self.cfg.w_track)
            return RewardResult(value, miou, err, status, len(cand))
        except Exception as exc:  # a model failure must not stop a DPO step (strict=False)
            if strict:
                raise
            return self.failed("error", f"{type(exc).__name__}: {exc}", len(cand))
        finally:
            self.timings["candidate_s"] += time.perf_counter() - start
            self.timings["candidates"] += 1


@functools.lru_cache(maxsize=4)
def _shared_scorer(cfg_json: str) -> RewardScorer:
    return RewardScorer(RewardConfig.model_validate_json(cfg_json))


def score(candidate: np.ndarray, reference: np.ndarray, backend: str | None = None,
          cfg: RewardConfig | RunConfig | dict | None = None, *,
          candidate_alpha: np.ndarray | None = None,
          reference_alpha: np.ndarray | None = None) -> RewardResult:
    """Reward of ``candidate`` against ``reference``, both ``(T, H, W, 3) uint8``.

    reward = −(w_mask · (1 − mIoU) + w_track · track_error): ≤ 0, exactly 0 for identical
    videos, higher = closer (module docstring: short, blank and invalid videos).
    ``backend`` ("classical" | "sam2_cotracker") overrides ``cfg.backend``; models and
    reference work are reused across calls with the same config.
    """
    rcfg = reward_config(cfg, backend)
    scorer = _shared_scorer(rcfg.model_dump_json())
    return scorer.score(candidate, reference, candidate_alpha, reference_alpha)
