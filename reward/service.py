"""Ray Serve deployment of the reward, and the client the DPO orchestrator calls.

    handle = start_reward_service(cfg.reward)            # replicas, GPUs, batching from cfg
    client = RewardClient(handle, cfg.reward)
    results = client.score_candidates(scene_id, gt_video, [video_1, ..., video_K])

Each candidate is one request to ``RewardService.score``; ``@serve.batch`` groups
concurrent requests (up to ``max_batch_size``), the replica prepares each scene's reference
once (its own cache) and scores the group. The reference travels as one object-store
object per call of ``score_candidates`` and is only fetched by a replica that does not have
it cached. A candidate that cannot be scored (invalid array, model error, lost replica,
timeout) gets the failure reward and increments an error counter; nothing raises.
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import NamedTuple

import numpy as np
import ray
from ray import serve

from physgm.config import RewardConfig, RunConfig

from .cache import video_digest
from .metrics import failure_value
from .scorer import RewardResult, RewardScorer, reward_config

# consecutive model errors (not bad inputs) after which check_health reports the replica
# unhealthy, so Serve replaces it
MAX_CONSECUTIVE_ERRORS = 8
_LIVE = ("w_mask", "w_track", "failure_reward", "max_batch_size", "batch_wait_timeout_s")


class _Request(NamedTuple):
    scene_id: str
    digest: str | None
    reference: object          # ObjectRef, array, or None when the replica has the scene
    candidate: object

    @property
    def key(self) -> tuple[str, str | None]:
        return self.scene_id, self.digest


def _parse_request(req) -> _Request | ValueError:
    """A request dict → ``_Request``, or the ValueError that says what is wrong with it."""
    if not isinstance(req, dict) or "candidate" not in req:
        return ValueError("a reward request is a dict with scene_id, digest, reference, "
                          f"candidate; got {type(req).__name__}")
    scene_id = req.get("scene_id")
    if not isinstance(scene_id, str) or not scene_id:
        return ValueError(f"scene_id must be a non-empty string, got {scene_id!r}")
    ref = req.get("reference")
    ref = ref[0] if isinstance(ref, list) and len(ref) == 1 else ref
    return _Request(scene_id, req.get("digest"), ref, req["candidate"])


def _check_live(user_config: dict | None) -> None:
    unknown = set(user_config or {}) - set(_LIVE)
    if unknown:
        raise ValueError(f"RewardService user_config accepts {_LIVE}, got {sorted(unknown)}: "
                         "other settings need new replicas (redeploy with a new config)")


@serve.deployment(name="RewardService", max_ongoing_requests=64)
class RewardService:
    """One replica: a ``RewardScorer`` (models + reference cache) behind a batched method.

    Request (a dict): ``scene_id`` str, ``reference`` a one-element list holding the
    ObjectRef of the ``(T, H, W, 3) uint8`` ground truth (a list, so Serve does not resolve
    it eagerly), ``digest`` its ``video_digest``, ``candidate`` ``(T', H, W, 3) uint8``.
    Reply: ``RewardResult.to_dict()``.

    ``user_config`` (applied by ``reconfigure`` without reloading models): any of
    w_mask, w_track, failure_reward, max_batch_size, batch_wait_timeout_s.
    """

    def __init__(self, cfg: dict):
        self.scorer = RewardScorer(reward_config(cfg))
        self.counters = {"requests": 0, "batches": 0, "errors": 0, "invalid": 0}
        self._consecutive_errors = 0
        self.reconfigure({})

    def reconfigure(self, user_config: dict) -> None:
        _check_live(user_config)
        new = reward_config(self.scorer.cfg, **(user_config or {}))
        self.scorer.set_weights(new.w_mask, new.w_track, new.failure_reward)
        self.score.set_max_batch_size(new.max_batch_size)
        self.score.set_batch_wait_timeout_s(new.batch_wait_timeout_s)
        self.settings = {k: getattr(new, k) for k in _LIVE}

    def check_health(self) -> None:
        if self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            raise RuntimeError(f"{self._consecutive_errors} reward requests in a row failed "
                               "inside the backend")

    def stats(self) -> dict:
        """Counters, cache hits/misses and the scorer's timing split."""
        return {**self.counters, "cache_hits": self.scorer.cache.hits,
                "cache_misses": self.scorer.cache.misses, **self.scorer.timings,
                "settings": self.settings}

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def score(self, requests: list[dict]) -> list[dict]:
        self.counters["batches"] += 1
        self.counters["requests"] += len(requests)
        parsed = [_parse_request(r) for r in requests]
        references = {}
        for req in parsed:
            if isinstance(req, _Request) and req.key not in references \
                    and not self.scorer.cache.has(*req.key):
                try:
                    ref = req.reference
                    references[req.key] = await ref if isinstance(ref, ray.ObjectRef) else ref
                except Exception as exc:  # a lost object: fails this scene's requests only
                    references[req.key] = exc
        results = await asyncio.to_thread(self._score_requests, parsed, references)
        return [r.to_dict() for r in results]

    def _score_requests(self, parsed: list, references: dict) -> list[RewardResult]:
        out: list[RewardResult | None] = [None] * len(parsed)
        by_scene: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(parsed):
            if isinstance(req, _Request):
                by_scene[req.key].append(i)
            else:
                out[i] = self.scorer.failed("invalid", str(req))
        for (scene_id, _), idx in by_scene.items():
            try:
                fetched = references.get(parsed[idx[0]].key)
                if isinstance(fetched, Exception):
                    raise fetched
                if fetched is not None:
                    self.scorer.prepare_reference(scene_id, fetched)
                results = self.scorer.score_batch(
                    scene_id, [parsed[i].candidate for i in idx], strict=False)
            except Exception as exc:  # the reference itself is bad: fail this scene only
                status = "invalid" if isinstance(exc, (ValueError, KeyError)) else "error"
                results = [self.scorer.failed(status, f"{type(exc).__name__}: {exc}")] * len(idx)
            for i, res in zip(idx, results):
                out[i] = res
        for res in out:
            self._count(res)
        return out

    def _count(self, res: RewardResult) -> None:
        if res.status == "invalid":
            self.counters["invalid"] += 1
        if res.status in ("invalid", "error"):
            self.counters["errors"] += 1
        if res.status == "error":
            self._consecutive_errors += 1
        elif res.status != "invalid":  # the backend ran fine (a bad input says nothing)
            self._consecutive_errors = 0


def reward_app(cfg: RewardConfig | RunConfig | dict | None = None,
               user_config: dict | None = None):
    """The bound Serve application: replicas and CPUs/GPUs per replica from ``cfg``; the live
    settings (``_LIVE``) from ``cfg`` updated by ``user_config`` and applied by
    ``RewardService.reconfigure``. With a Serve config file (``serve deploy``), changing only
    ``user_config`` updates running replicas in place (models and caches kept); ``serve.run``
    from Python always starts new replicas.
    """
    rcfg = reward_config(cfg)
    _check_live(user_config)
    live = {k: getattr(rcfg, k) for k in _LIVE}
    live.update(user_config or {})
    # the constructor argument holds only what needs new models: the live settings travel
    # as user_config, which a config-file redeploy can change without restarting replicas
    static = rcfg.model_dump(mode="json", exclude=set(_LIVE))
    return RewardService.options(
        num_replicas=rcfg.replicas, user_config=live,
        ray_actor_options={"num_gpus": rcfg.num_gpus, "num_cpus": rcfg.num_cpus,
                           "resources": dict(rcfg.resources)},
    ).bind(static)


def start_reward_service(cfg: RewardConfig | RunConfig | dict | None = None,
                         name: str = "reward", http: bool = False):
    """Deploy ``RewardService`` on the connected Ray cluster; returns its DeploymentHandle.

    ``http=False`` starts Serve without an HTTP proxy when Serve is not yet running (the
    orchestrator talks to the handle); an already running Serve instance is reused.
    """
    if not ray.is_initialized():
        raise RuntimeError("start_reward_service needs Ray: call ray.init(...) first")
    if not http:
        serve.start(proxy_location="Disabled")
    return serve.run(reward_app(cfg), name=name, route_prefix=None, blocking=False)


class RewardClient:
    """Scores candidate videos through a ``RewardService`` handle; never raises on a bad
    candidate or a failed request (that candidate gets the failure reward, ``errors`` += 1)."""

    def __init__(self, handle, cfg: RewardConfig | RunConfig | dict | None = None,
                 timeout_s: float = 600.0):
        rcfg = reward_config(cfg)
        self.handle = handle
        self.timeout_s = timeout_s
        self.failure_reward = failure_value(rcfg.failure_reward, rcfg.w_mask, rcfg.w_track)
        self.errors = 0
        self.scored = 0
        self.wall_s = 0.0

    def score_candidates(self, scene_id: str, reference: np.ndarray,
                         candidates: list) -> list[RewardResult]:
        """Rewards of ``candidates`` (each ``(T', H, W, 3) uint8``) against the scene's
        ground truth ``reference`` ``(T, H, W, 3) uint8``, in order."""
        start = time.perf_counter()
        ref_obj = ray.put(reference)
        digest = video_digest(reference) if isinstance(reference, np.ndarray) else None
        responses = []
        for cand in candidates:
            req = {"scene_id": str(scene_id), "digest": digest, "reference": [ref_obj],
                   "candidate": cand}
            try:
                responses.append(self.handle.score.remote(req))
            except Exception as exc:
                responses.append(exc)
        results = [self._collect(r) for r in responses]
        self.scored += len(results)
        self.wall_s += time.perf_counter() - start
        return results

    def _collect(self, response) -> RewardResult:
        try:
            if isinstance(response, Exception):
                raise response
            res = RewardResult(**response.result(timeout_s=self.timeout_s))
        except Exception as exc:  # replica died, timed out, or the request was malformed
            self.errors += 1
            return RewardResult(self.failure_reward, 0.0, 1.0, "error", 0,
                                f"{type(exc).__name__}: {exc}")
        if res.status in ("invalid", "error"):
            self.errors += 1
        return res

    def service_stats(self) -> dict:
        """``RewardService.stats()`` of the replica that answers (one of them if several)."""
        return self.handle.stats.remote().result(timeout_s=self.timeout_s)
