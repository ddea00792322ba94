"""The model replica: PhysGM weights behind a batched ``predict`` and a ``gaussians`` call.

``user_config`` carries everything that may change while replicas run: the weights' source
(``kind``, ``location``, ``seed``, ``model_version``, see ``ModelSource``) and the batching
settings (``max_batch_size``, ``batch_wait_timeout_s``). Serve applies a changed user_config
by calling ``reconfigure`` on every running replica (no restart): the new weights load
beside the old ones, then one assignment swaps them, so requests already running finish on
the old weights and report the old ``model_version``, later ones the new.

Requests (numpy, from the ingress, see ``serving.inputs.ModelInputs``):
``predict({"images": (V, 3, S, S), "plucker": (V, 6, S, S)})`` →
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


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def split_user_config(user_config: dict) -> tuple[ModelSource, dict]:
    """user_config → (ModelSource, batching settings); ValueError on unknown keys."""
    unknown = set(user_config) - set(BATCH_KEYS) - set(SOURCE_KEYS)
    if unknown:
        raise ValueError(f"model user_config accepts {SOURCE_KEYS + BATCH_KEYS}, got unknown "
                         f"{sorted(unknown)}")
    source = ModelSource.from_user_config({k: user_config.get(k) for k in SOURCE_KEYS})
    return source, {k: user_config[k] for k in BATCH_KEYS if k in user_config}


class _Loaded:
    """One set of weights: swapped as a whole so a request never mixes two versions."""

    def __init__(self, model, cfg: ModelConfig, version: str, source: ModelSource):
        self.model, self.cfg, self.version, self.source = model, cfg, version, source


@serve.deployment(name="PhysGMModel", max_ongoing_requests=64)
class ModelDeployment:
    def __init__(self, model_config: dict, device: str = "auto"):
        """``model_config``: the ModelConfig used for random-init sources (a checkpoint
        brings its own)."""
        self.model_cfg = ModelConfig.model_validate(model_config)
        self.device = _resolve_device(device)
        self.loaded: _Loaded | None = None
        self.last_error: str | None = None
        self.counters = {"requests": 0, "batches": 0, "swaps": 0, "errors": 0,
                         "predict_s": 0.0}   # time inside predict batches (all requests)
        self.batch_sizes: dict[int, int] = defaultdict(int)

    async def reconfigure(self, user_config: dict) -> None:
        source, batching = split_user_config(user_config or {})
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

    def info(self) -> dict:
        cur = self._current()
        return {"model_version": cur.version, "source": cur.source.describe(),
                "last_error": self.last_error,
                "image_size": cur.cfg.image_size, "max_views": cur.cfg.max_views,
                "device": self.device, "counters": dict(self.counters),
                "batch_sizes": dict(self.batch_sizes)}

    def check_health(self) -> None:
        self._current()

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

    def _predict_batch(self, requests: list[dict]) -> list[dict]:
        cur = self._current()
        self.counters["batches"] += 1
        self.counters["requests"] += len(requests)
        self.batch_sizes[len(requests)] += 1
        groups: dict[tuple, list[int]] = defaultdict(list)  # one forward per input shape
        for i, r in enumerate(requests):
            groups[tuple(r["images"].shape)].append(i)
        results: list[dict] = [{}] * len(requests)
        t0 = time.perf_counter()
        for idx in groups.values():
            images = np.stack([requests[i]["images"] for i in idx])
            plucker = np.stack([requests[i]["plucker"] for i in idx])
            _, stats, mu = self._forward(cur, images, plucker, full=False)
            for j, i in enumerate(idx):
                results[i] = {**stats[j], "mu": mu[j], "model_version": cur.version}
        self.counters["predict_s"] += time.perf_counter() - t0
        return results

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def predict(self, requests: list[dict]) -> list[dict]:
        try:
            return await asyncio.to_thread(self._predict_batch, requests)
        except Exception:
            self.counters["errors"] += 1
            raise

    def _gaussians(self, request: dict) -> dict:
        from physgm.model import pixels_to_gaussians

        cur = self._current()
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
        return await asyncio.to_thread(self._gaussians, request)
