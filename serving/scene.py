"""Predicted Gaussians → a simulated, rendered video (pure pipeline, no Ray, no HTTP).

    per-pixel Gaussians (V·S·S) ─ select_object ─► opaque foreground Gaussians (≤ budget)
      ─ normalise: scale longest extent to object_size·L, fill interior particles, centre
        over the floor, lift by drop_height·L ─► particles (M, 3), volumes (M,) in [0, L]³
      ─ physgm.sim.simulate(params) ─► positions (F+1, M, 3), deformation (F+1, M, 3, 3)
      ─ physgm.render.render_video (Gaussian i follows particle i) ─► (F+1, H, W, 3) uint8
      ─ physgm.video.encode_video ─► mp4 / gif bytes

L is ``serve.sim.domain_size``; all lengths in metres. An uploaded 3DGS scene
(``simulate_ply_video``) takes physgm.ply_scene's path instead: normalised to the same size
and drop height, filled the PhysGaussian way, each Gaussian following its nearest particle.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from physgm.camera import Camera
from physgm.config import ServeConfig
from physgm.gaussians import Gaussians, fill_particles
from physgm.materials import (MATERIALS, PARAM_NAMES, PARAM_RANGES, Material, PhysParams,
                              denormalize)

MIN_GAUSSIANS = 16


def foreground(pixel_rgb: np.ndarray, background: tuple[float, float, float] = (0.0, 0.0, 0.0),
               bg_tol: float = 0.04) -> np.ndarray:
    """(N,) bool: the input pixels (N, 3) in [0, 1] farther than ``bg_tol`` (RGB distance)
    from the background colour."""
    return np.linalg.norm(pixel_rgb - np.asarray(background, np.float32)[None], axis=1) > bg_tol


def select_object(g: Gaussians, pixel_rgb: np.ndarray, min_opacity: float, max_count: int,
                  background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  bg_tol: float = 0.04, seed: int = 0) -> tuple[Gaussians, str]:
    """The object's Gaussians among per-pixel ones → (Gaussians, appearance).

    Kept: opacity ≥ ``min_opacity`` and the input pixel not the background colour (RGB
    distance > ``bg_tol``; pixel_rgb (N, 3) in [0, 1]); appearance "predicted". When fewer
    than MIN_GAUSSIANS pass but the views show a foreground, the model's appearance is
    unusable (nearly transparent Gaussians, an undertrained head): the foreground Gaussians
    are kept with the input pixels' colours, opacity 0.9 and isotropic scales of half the
    median neighbour spacing; appearance "pixels". Without a foreground either, the most
    opaque Gaussians are kept. At most ``max_count`` (a fixed-seed random subset)."""
    if len(g) == 0:
        raise ValueError("no Gaussians to simulate")
    op = g.opacities.detach().cpu().numpy()
    finite = np.isfinite(g.means.detach().cpu().numpy()).all(1)
    fg = foreground(pixel_rgb, background, bg_tol) & finite
    keep = np.flatnonzero((op >= min_opacity) & fg)
    appearance = "predicted"
    if keep.size < MIN_GAUSSIANS:
        keep = np.flatnonzero(fg)
        if keep.size >= MIN_GAUSSIANS:
            appearance = "pixels"
        else:
            keep = np.argsort(-np.where(finite, op, -1.0))[:max(MIN_GAUSSIANS,
                                                                 min(len(g), max_count))]
    if keep.size > max_count:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_count, replace=False))
    sel = g.detach().subset(torch.from_numpy(keep))
    if appearance == "pixels":
        sel = _pixel_splats(sel, torch.as_tensor(pixel_rgb[keep], dtype=sel.means.dtype))
    return sel, appearance


def _pixel_splats(g: Gaussians, rgb: torch.Tensor) -> Gaussians:
    """Same centres, the pixels' colours, opacity 0.9, isotropic scale = ½ median spacing."""
    m = g.means.float()
    nn = torch.cat([torch.cdist(m[i:i + 1024], m).topk(2, largest=False).values[:, 1]
                    for i in range(0, len(m), 1024)])
    scale = float(nn.median().clamp_min(1e-4)) * 0.5
    quats = torch.zeros(len(g), 4, dtype=g.means.dtype)
    quats[:, 0] = 1.0
    return Gaussians(g.means, torch.full_like(g.means, scale), quats,
                     torch.full_like(g.opacities, 0.9), rgb)


def _scaled(g: Gaussians, s: float, shift: torch.Tensor) -> Gaussians:
    """x → s·x + shift for the means, scales × s."""
    return Gaussians(g.means * s + shift, g.scales * s, g.quats, g.opacities, g.colors)


@dataclass(eq=False)
class SimObject:
    """An object ready to simulate: gaussians (N) in the domain; particles (M, 3) [m] with
    rows 0..N−1 the Gaussian centres; volumes (M,) [m³] or None for the default (dx/2)³."""

    gaussians: Gaussians
    particles: np.ndarray
    volumes: Optional[np.ndarray]


def place_in_domain(g: Gaussians, cfg: ServeConfig, max_particles: Optional[int] = None,
                    seed: int = 0) -> SimObject:
    """Scale the object so its longest extent is ``object_size``·L, add interior particles
    (``fill_interior``; spacing dx/2 like the simulator's default), cap the particle count at
    ``max_particles`` (interior ones are dropped first, volumes rescaled to keep the total),
    centre it over the floor and lift it ``drop_height``·L above it."""
    sim = cfg.sim
    L, dx = sim.domain_size, sim.domain_size / sim.grid_res
    budget = int(max_particles or cfg.max_particles)
    g = g.detach().to("cpu", torch.float32)
    lo, hi = g.means.min(0).values, g.means.max(0).values
    extent = float((hi - lo).max())
    s = cfg.object_size * L / extent if extent > 1e-9 else 1.0
    g = _scaled(g, s, -(lo + hi) / 2 * s)                          # centred at the origin
    n = len(g)
    particles, volumes = g.means.numpy(), None
    if cfg.fill_interior and n < budget:
        p, v = fill_particles(g, spacing=dx, opacity_threshold=max(cfg.min_opacity, 0.05),
                              generator=torch.Generator().manual_seed(seed))
        p, v = p.numpy(), v.numpy().astype(np.float64)
        if len(p) > budget:  # keep every Gaussian centre, thin the filling uniformly
            rng = np.random.default_rng(seed)
            extra = np.sort(rng.choice(np.arange(n, len(p)), budget - n, replace=False))
            total = v[n:].sum()
            v = np.concatenate([v[:n], v[extra] * (total / max(v[extra].sum(), 1e-30))])
            p = np.concatenate([p[:n], p[extra]])
        particles, volumes = p, v
    # fit inside the walls with a margin (filling may reach past the Gaussian centres)
    p_lo, p_hi = particles.min(0), particles.max(0)
    room = L - 8.0 * dx
    shrink = min(1.0, room / max(float((p_hi - p_lo).max()), 1e-9))
    if shrink < 1.0:
        particles = particles * shrink
        volumes = None if volumes is None else volumes * shrink ** 3
        g = _scaled(g, shrink, torch.zeros(3))
        p_lo, p_hi = p_lo * shrink, p_hi * shrink
    floor = 3.0 * dx
    lift = min(cfg.drop_height * L, L - 4.0 * dx - floor - (p_hi[1] - p_lo[1]))
    shift = np.array([L / 2 - (p_lo[0] + p_hi[0]) / 2, floor + dx + max(lift, 0.0) - p_lo[1],
                      L / 2 - (p_lo[2] + p_hi[2]) / 2])
    particles = (particles + shift).astype(np.float32)
    g = _scaled(g, 1.0, torch.from_numpy(shift).float())
    return SimObject(g, particles, None if volumes is None else volumes.astype(np.float32))


def sim_camera(cfg: ServeConfig) -> Camera:
    """The fixed video camera: in front of the domain, slightly above, looking at the lower
    middle of the domain."""
    L = cfg.sim.domain_size
    return Camera.look_at((L / 2, 0.75 * L, 2.1 * L), (L / 2, 0.3 * L, L / 2), 40.0,
                          cfg.video_size, cfg.video_size)


def resolve_params(mu: np.ndarray, predicted: str, material: Optional[str] = None,
                   E: Optional[float] = None) -> PhysParams:
    """The parameters to simulate: the predicted mean (``mu`` (M, P) normalised, per
    material) of ``material`` (default: the predicted one), with E [Pa] overridden when
    given. Raises ValueError naming the allowed range for an E outside the material's."""
    mat = Material(material or predicted)
    params = denormalize(mat, np.asarray(mu)[MATERIALS.index(mat)])
    if E is not None:
        lo, hi = PARAM_RANGES[mat]["E"]
        if not (math.isfinite(E) and lo <= E <= hi):
            raise ValueError(f"E={E:g} Pa is outside the range simulated for {mat.value} "
                             f"[{lo:g}, {hi:g}] Pa; pick E in that range")
        params = params.model_copy(update={"E": float(E)})
    return params


@dataclass
class SimVideo:
    video: bytes
    fmt: str
    status: str
    params: dict
    n_gaussians: int
    n_particles: int
    frames: int
    substeps_per_frame: int
    appearance: str = "predicted"
    timings_s: dict = field(default_factory=dict)


def simulate_video(g: Gaussians, pixel_rgb: np.ndarray, params: PhysParams, cfg: ServeConfig,
                   fmt: str = "mp4", seed: int = 0) -> SimVideo:
    """The whole pipeline of the module docstring. A run that turns unstable or escapes
    still yields the frames simulated up to then (``status`` says which)."""
    from physgm.render import render_video
    from physgm.sim import simulate
    from physgm.video import encode_video

    if fmt not in ("mp4", "gif"):
        raise ValueError(f"format must be mp4 or gif, got {fmt!r}")
    t = {"start": time.perf_counter()}
    budget = cfg.max_particles
    obj_g, appearance = select_object(g, pixel_rgb, cfg.min_opacity,
                                      budget // 2 if cfg.fill_interior else budget, seed=seed)
    obj = place_in_domain(obj_g, cfg, budget, seed)
    t["prepare"] = time.perf_counter()
    result = simulate(obj.particles, params, cfg.sim, volumes=obj.volumes)
    t["simulate"] = time.perf_counter()
    n = len(obj.gaussians)
    frames = render_video(obj.gaussians, result.positions[:, :n], result.deformation[:, :n],
                          sim_camera(cfg), backend="auto")
    t["render"] = time.perf_counter()
    data = encode_video(frames, fmt, fps=cfg.video_fps)
    t["encode"] = time.perf_counter()
    keys = list(t)
    timings = {k: round(t[k] - t[p], 4) for p, k in zip(keys, keys[1:])}
    timings["total"] = round(t["encode"] - t["start"], 4)
    return SimVideo(data, fmt, result.status, {"material": params.material.value,
                                               **params.values()},
                    n, int(obj.particles.shape[0]), int(frames.shape[0]),
                    int(result.substeps_per_frame), appearance, timings)


def simulate_ply_video(g: Gaussians, params: PhysParams, cfg: ServeConfig, fmt: str = "mp4",
                       seed: int = 0) -> SimVideo:
    """An uploaded scene's Gaussians (scene units, at most ``cfg.max_particles``: see
    ``serving.ply_upload``) dropped like a reconstructed object: longest extent
    ``object_size``·L, ``drop_height``·L above the floor, simulated and rendered from the
    fixed video camera."""
    from physgm.ply_scene import build_scene, normalising_transform, render_scene
    from physgm.sim import simulate
    from physgm.video import encode_video

    if fmt not in ("mp4", "gif"):
        raise ValueError(f"format must be mp4 or gif, got {fmt!r}")
    t = {"start": time.perf_counter()}
    L = cfg.sim.domain_size
    dx = L / cfg.sim.grid_res
    T = normalising_transform(g.means, cfg.object_size * L, (L / 2, 0.0, L / 2))
    y = g.means.double().numpy() @ T[1, :3] + T[1, 3]
    T[1, 3] += 4.0 * dx + cfg.drop_height * L - float(y.min())       # lift over the floor
    scene = build_scene(g, cfg.sim, T, cfg.max_particles, seed=seed)
    t["prepare"] = time.perf_counter()
    result = simulate(scene.particles, params, cfg.sim, volumes=scene.volumes)
    t["simulate"] = time.perf_counter()
    frames = render_scene(scene, result.positions, result.deformation, [sim_camera(cfg)])
    t["render"] = time.perf_counter()
    data = encode_video(frames, fmt, fps=cfg.video_fps)
    t["encode"] = time.perf_counter()
    keys = list(t)
    timings = {k: round(t[k] - t[p], 4) for p, k in zip(keys, keys[1:])}
    timings["total"] = round(t["encode"] - t["start"], 4)
    return SimVideo(data, fmt, result.status, {"material": params.material.value,
                                               **params.values()},
                    len(scene.gaussians), int(scene.particles.shape[0]), int(frames.shape[0]),
                    int(result.substeps_per_frame), "ply", timings)


def sample_object_gaussians(n: int = 256, seed: int = 0) -> dict:
    """A simulate-request payload for a small ball of opaque Gaussians (jelly at the centre
    of the normalised space): replica warm-up and tests."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    means = (d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 1, (n, 1)) ** (1 / 3)
             * 0.2).astype(np.float32)
    quats = np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1))
    colors = np.tile(np.array([0.8, 0.3, 0.2], np.float32), (n, 1))
    return {"means": means, "scales": np.full((n, 3), 0.02, np.float32), "quats": quats,
            "opacities": np.full(n, 0.9, np.float32), "colors": colors, "pixel_rgb": colors,
            "mu": np.zeros((len(MATERIALS), len(PARAM_NAMES)), np.float32),
            "name": Material.jelly.value}
