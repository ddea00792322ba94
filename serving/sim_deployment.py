"""Simulation + rendering replicas for ``POST /v1/simulate`` (their own deployment, so the
slow MPM runs never hold up model replicas, and each side scales on its own).

Request (from the ingress): the per-pixel Gaussians of ``ModelDeployment.gaussians``
(``means (N, 3)``, ``scales``, ``quats``, ``opacities``, ``colors``), ``pixel_rgb (N, 3)``
the input pixel of each, the predicted ``mu (M, P)`` and material ``name``, the overrides
``material`` and ``E`` [Pa] (or None), and ``format`` ("mp4" | "gif"). Reply:
``{"video": bytes, "status", "params", "n_gaussians", "n_particles", "frames",
"substeps_per_frame", "appearance", "timings_s"}``; a ValueError for values the pipeline rejects (the ingress maps it to 422).
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import torch
from ray import serve

from physgm.config import ServeConfig
from physgm.gaussians import Gaussians
from serving.scene import resolve_params, sample_object_gaussians, simulate_video


@serve.deployment(name="PhysGMSim", max_ongoing_requests=8)
class SimDeployment:
    def __init__(self, serve_config: dict, warmup: bool = True):
        self.cfg = ServeConfig.model_validate(serve_config)
        # one simulation at a time per replica: MPM and the rasterizer use every core given
        # to the replica, and queued requests wait here instead of thrashing
        self._lock = threading.Lock()
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
            out = simulate_video(g, np.asarray(request["pixel_rgb"], np.float32), params, cfg,
                                 request.get("format", "mp4"))
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
