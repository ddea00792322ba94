"""Simulation + rendering replicas for ``POST /v1/simulate`` (their own deployment, so the
slow MPM runs never hold up model replicas, and each side scales on its own).

Request (from the ingress): the per-pixel Gaussians of ``ModelDeployment.gaussians``
(``means (N, 3)``, ``scales``, ``quats``, ``opacities``, ``colors``), ``pixel_rgb (N, 3)``
the input pixel of each, the predicted ``mu (M, P)`` and material ``name``, the overrides
``material`` and ``E`` [Pa] (or None), and ``format`` ("mp4" | "gif"); or, with
``"scene": "ply"``, an uploaded scene's Gaussians (scene units, no ``pixel_rgb``). Reply:
``{"video": bytes, "status", "params", "n_gaussians", "n_particles", "frames",
"substeps_per_frame", "appearance", "timings_s"}``; a ValueError for values the pipeline rejects (the ingress maps it to 422).
"""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import torch
from ray import serve

from physgm.config import ServeConfig
from physgm.gaussians import Gaussians
from serving.scene import (resolve_params, sample_object_gaussians, simulate_ply_video,
                           simulate_video)


STUCK_AFTER = 3


@serve.deployment(name="PhysGMSim", max_ongoing_requests=8)
class SimDeployment:
    def __init__(self, serve_config: dict, warmup: bool = True):
        self.cfg = ServeConfig.model_validate(serve_config)
        # one simulation at a time per replica: MPM and the rasterizer use every core given
        # to the replica, and queued requests wait here instead of thrashing
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self.counters = {"requests": 0, "ok": 0, "unstable": 0, "escaped": 0}
        if warmup:  # compile the warp kernels now, not in the first request
            self._run({**sample_object_gaussians(), "format": "gif"}, warm=True)

    def _run(self, request: dict, warm: bool = False) -> dict:
        g = Gaussians(*(torch.tensor(np.asarray(request[k], np.float32))
                        for k in ("means", "scales", "quats", "opacities", "colors")))
        params = resolve_params(request["mu"], request["name"], request.get("material"),
                                request.get("E"))
        cfg = self.cfg
        if warm:
            cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"n_frames": 1}),
                                         "video_size": 32})
        with self._lock:
            self._busy_since = time.monotonic()
            try:
                if request.get("scene") == "ply":
                    out = simulate_ply_video(g, params, cfg, request.get("format", "mp4"))
                else:
                    out = simulate_video(g, np.asarray(request["pixel_rgb"], np.float32),
                                         params, cfg, request.get("format", "mp4"))
            finally:
                self._busy_since = None
        if not warm:
            self.counters["requests"] += 1
            self.counters[out.status] = self.counters.get(out.status, 0) + 1
        return {"video": out.video, "status": out.status, "params": out.params,
                "n_gaussians": out.n_gaussians, "n_particles": out.n_particles,
                "frames": out.frames, "substeps_per_frame": out.substeps_per_frame,
                "appearance": out.appearance, "timings_s": out.timings_s}

    async def simulate(self, request: dict) -> dict:
        return await asyncio.to_thread(self._run, request)

    def stats(self) -> dict:
        return dict(self.counters)

    def check_health(self) -> None:
        """Unhealthy (Serve replaces the replica) when one run has taken longer than
        STUCK_AFTER × serve.request_timeout_s: no client waits that long, and a run cannot be
        interrupted from outside (a hung device or kernel)."""
        since = self._busy_since
        if since is not None and time.monotonic() - since > STUCK_AFTER * self.cfg.request_timeout_s:
            raise RuntimeError(f"a simulation has run {time.monotonic() - since:.0f} s, over "
                               f"{STUCK_AFTER} × serve.request_timeout_s")
