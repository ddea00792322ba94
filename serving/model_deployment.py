"""The model replica: PhysGM weights behind a batched ``predict`` and a ``gaussians`` call.

``user_config`` carries everything that may change while replicas run: the weights' source
(``kind``, ``location``, ``seed``, ``model_version``, see ``ModelSource``) and the batching
settings (``max_batch_size``, ``batch_wait_timeout_s``). Serve applies a changed user_config
by calling ``reconfigure`` on every running replica (no restart): the new weights load
beside the old ones, then one assignment swaps them, so requests already running finish on
the old weights and report the old ``model_version``, later ones the new.

**Several models, one application** (Ray Serve model multiplexing): ``user_config["models"]``
maps ids (e.g. ``pretrained``, ``dpo``) to sources. A request carrying ``"model": id`` is
answered by that model, loaded on first use by ``get_model`` (``@serve.multiplexed``: at most
``MODELS_PER_REPLICA`` per replica, least recently used evicted; the ingress routes with
``handle.options(multiplexed_model_id=id)`` so requests go to replicas that hold it). A
reconfigure that changes an id's source reloads it on its next use. Requests without an id
get the default model.

Requests (numpy, from the ingress, see ``serving.inputs.ModelInputs``):
``predict({"images": (V, 3, S, S), "plucker": (V, 6, S, S)[, "model": id]})`` →
``{"material": {...}, "params": {...}, "model_version": str, "mu": (M, P)}``;
``gaussians({... , "origins", "directions": (V, S, S, 3)})`` → per-pixel Gaussians
``means (N, 3), scales (N, 3), quats (N, 4), opacities (N,), colors (N, 3)`` with N = V·S·S,
plus the prediction.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import numpy as np
import torch
from ray import serve

from physgm.config import ModelConfig
from serving.model_source import ModelSource, load_source

logger = logging.getLogger("ray.serve")
BATCH_KEYS = ("max_batch_size", "batch_wait_timeout_s")
SOURCE_KEYS = ("kind", "location", "seed", "model_version")
MODELS_PER_REPLICA = 4      # multiplexed models a replica keeps (the default one aside)
# a replica whose forward failed this many times in a row reports itself unhealthy (a broken
# device, e.g. a CUDA error that poisons the context): Serve then replaces it
MAX_CONSECUTIVE_ERRORS = 5


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def split_user_config(user_config: dict) -> tuple[ModelSource, dict, dict[str, ModelSource]]:
    """user_config → (default ModelSource, batching settings, {id: ModelSource});
    ValueError on unknown keys."""
    unknown = set(user_config) - set(BATCH_KEYS) - set(SOURCE_KEYS) - {"models"}
    if unknown:
        raise ValueError(f"model user_config accepts {SOURCE_KEYS + BATCH_KEYS + ('models',)}, "
                         f"got unknown {sorted(unknown)}")
    source = ModelSource.from_user_config({k: user_config.get(k) for k in SOURCE_KEYS})
    models = {str(k): ModelSource.from_user_config(v)
              for k, v in (user_config.get("models") or {}).items()}
    return source, {k: user_config[k] for k in BATCH_KEYS if k in user_config}, models


class _Loaded:
    """One set of weights: swapped as a whole so a request never mixes two versions."""

    def __init__(self, model, cfg: ModelConfig, version: str, source: ModelSource):
        self.model, self.cfg, self.version, self.source = model, cfg, version, source


class _Slot:
    """What the multiplexing cache holds for an id: refilled in place when the id's source
    changes, so the cache key (the public id the router matches) stays the same."""

    def __init__(self, loaded: _Loaded):
        self.loaded = loaded


@serve.deployment(name="PhysGMModel", max_ongoing_requests=64)
class ModelDeployment:
    def __init__(self, model_config: dict, device: str = "auto"):
        """``model_config``: the ModelConfig used for random-init sources (a checkpoint
        brings its own)."""
        self.model_cfg = ModelConfig.model_validate(model_config)
        self.device = _resolve_device(device)
        self.loaded: _Loaded | None = None
        self.models: dict[str, ModelSource] = {}
        self.last_error: str | None = None      # of the last hot swap
        self.last_call_error: str | None = None
        self.consecutive_errors = 0
        self.counters = {"requests": 0, "batches": 0, "swaps": 0, "errors": 0,
                         "predict_s": 0.0}   # time inside predict batches (all requests)
        self.batch_sizes: dict[int, int] = defaultdict(int)

    async def reconfigure(self, user_config: dict) -> None:
        source, batching, self.models = split_user_config(user_config or {})
        if "max_batch_size" in batching:
            self.predict.set_max_batch_size(int(batching["max_batch_size"]))
        if "batch_wait_timeout_s" in batching:
            self.predict.set_batch_wait_timeout_s(float(batching["batch_wait_timeout_s"]))
        if self.loaded is not None and self.loaded.source == source:
            return
        # load in a thread: the replica keeps answering with the old weights meanwhile
        try:
            model, cfg, version = await asyncio.to_thread(load_source, source, self.model_cfg,
                                                          self.device)
        except Exception as err:
            if self.loaded is None:   # nothing to serve: fail the replica's start, loudly
                raise
            # a bad new source must not take a serving replica down: keep the old weights,
            # report the failure (info()["last_error"]; serving.deploy.hot_swap raises it)
            self.last_error = f"{source.describe()}: {type(err).__name__}: {err}"
            logger.error("hot swap failed, still serving %s: %s", self.loaded.version,
                         self.last_error)
            return
        self.loaded = _Loaded(model, cfg, version, source)   # the swap: one assignment
        self.last_error = None
        self.counters["swaps"] += 1

    def _current(self) -> _Loaded:
        if self.loaded is None:
            raise RuntimeError("no weights loaded: the deployment needs a user_config with a "
                               "model source")
        return self.loaded

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> _Slot:
        return _Slot(await self._load(model_id))

    async def _load(self, model_id: str) -> _Loaded:
        source = self.models.get(model_id)
        if source is None:
            raise KeyError(f"unknown model id {model_id!r}; served: {sorted(self.models)}")
        model, cfg, version = await asyncio.to_thread(load_source, source, self.model_cfg,
                                                      self.device)
        return _Loaded(model, cfg, version, source)

    async def _model(self, model_id: str | None) -> _Loaded:
        """The weights for a request: the default ones, or the multiplexed model ``id``."""
        if not model_id:
            return self._current()
        slot = await self.get_model(model_id)
        if slot.loaded.source != self.models.get(model_id):   # reconfigured since loaded
            slot.loaded = await self._load(model_id)
        return slot.loaded

    def info(self) -> dict:
        cur = self._current()
        return {"model_version": cur.version, "source": cur.source.describe(),
                "last_error": self.last_error,
                "image_size": cur.cfg.image_size, "max_views": cur.cfg.max_views,
                "models": {k: v.describe() for k, v in self.models.items()},
                "device": self.device, "counters": dict(self.counters),
                "batch_sizes": dict(self.batch_sizes)}

    def check_health(self) -> None:
        """Serve calls this every health_check_period_s; raising marks the replica
        unhealthy and Serve replaces it. Unhealthy: no weights, or the last
        MAX_CONSECUTIVE_ERRORS forwards all failed (a broken device)."""
        self._current()
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            raise RuntimeError(f"the last {self.consecutive_errors} model calls failed; "
                               f"last error: {self.last_call_error}")

    # ---------------------------------------------------------------- inference
    def _forward(self, cur: _Loaded, images: np.ndarray, plucker: np.ndarray, full: bool):
        """images (B, V, 3, S, S), plucker (B, V, 6, S, S) → (PhysGMOutput | None,
        per-item stats, mu (B, M, P))."""
        from physgm.model import distribution

        with torch.inference_mode():
            x = torch.tensor(images, device=self.device)   # a copy: Ray hands read-only arrays
            p = torch.tensor(plucker, device=self.device)
            if full:
                out = cur.model(x, p)
                head = out.physics
            else:
                out = None
                head = cur.model.physics(cur.model.encode_global(x, p))
            dist = distribution(head)
            return out, dist.param_stats(), dist.mu.float().cpu().numpy()

    def _predict_batch(self, requests: list[dict], weights: dict) -> list[dict]:
        """``weights``: {model id or None: _Loaded} for the ids in ``requests``."""
        self.counters["batches"] += 1
        self.counters["requests"] += len(requests)
        self.batch_sizes[len(requests)] += 1
        groups: dict[tuple, list[int]] = defaultdict(list)  # one forward per model and shape
        for i, r in enumerate(requests):
            groups[(r.get("model"), tuple(r["images"].shape))].append(i)
        results: list[dict] = [{}] * len(requests)
        t0 = time.perf_counter()
        for (model_id, _), idx in groups.items():
            cur = weights[model_id]
            images = np.stack([requests[i]["images"] for i in idx])
            plucker = np.stack([requests[i]["plucker"] for i in idx])
            _, stats, mu = self._forward(cur, images, plucker, full=False)
            for j, i in enumerate(idx):
                results[i] = {**stats[j], "mu": mu[j], "model_version": cur.version}
        self.counters["predict_s"] += time.perf_counter() - t0
        return results

    async def _guarded(self, fn, *args):
        try:
            out = await asyncio.to_thread(fn, *args)
        except Exception as err:
            self.counters["errors"] += 1
            self.consecutive_errors += 1
            self.last_call_error = f"{type(err).__name__}: {err}"
            raise
        self.consecutive_errors = 0
        return out

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def predict(self, requests: list[dict]) -> list[dict]:
        weights = {mid: await self._model(mid) for mid in {r.get("model") for r in requests}}
        return await self._guarded(self._predict_batch, requests, weights)

    def _gaussians(self, request: dict, cur: _Loaded) -> dict:
        from physgm.model import pixels_to_gaussians

        self.counters["requests"] += 1
        t0 = time.perf_counter()
        out, stats, mu = self._forward(cur, request["images"][None], request["plucker"][None],
                                       full=True)
        g = pixels_to_gaussians(out.gaussians, torch.tensor(request["origins"]),
                                torch.tensor(request["directions"])).to("cpu")
        return {"means": g.means.numpy(), "scales": g.scales.numpy(), "quats": g.quats.numpy(),
                "opacities": g.opacities.numpy(), "colors": g.colors.numpy(),
                **stats[0], "mu": mu[0], "model_version": cur.version,
                "model_s": time.perf_counter() - t0}

    async def gaussians(self, request: dict) -> dict:
        return await self._guarded(self._gaussians, request,
                                   await self._model(request.get("model")))
