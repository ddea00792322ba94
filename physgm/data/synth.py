"""One synthetic scene: a procedural object of a random material, V input views of it at
rest, and its ground-truth video (MPM with the TRUE parameters, rendered from a fixed side
camera), plus the annotator's noisy label.

Everything random in a scene comes from one generator seeded with
``scene_seed(data.seed, index, attempt)``, so a scene is a pure function of the config and
its index: the same seed gives identical arrays, whichever worker generates it. Each
simulation runs single-threaded (``sim.threads`` 0 → 1: generation is parallel across
scenes), which also keeps the MPM reductions in a fixed order.

A simulation that ends "unstable" or "escaped" is never stored: the scene is redrawn with
the next ``attempt`` (up to ``data.max_attempts``).

``data.image_only`` skips the simulation and the video and nothing else: an image-only
scene holds exactly the views, object, physics and label of the full scene drawn from the
same seed (every draw happens before the simulation), and no draw is ever redone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from physgm.camera import Camera, random_cameras
from physgm.config import MPMConfig, RunConfig
from physgm.data.annotator import annotate
from physgm.data.appearance import sample_appearance
from physgm.data.objects import random_object, sample_object
from physgm.data.store import Scene
from physgm.gaussians import Gaussians
from physgm.materials import Material, sample_params
from physgm.render import rasterize, render_video
from physgm.render.api import resolve_backend
from physgm.sim import simulate


class SceneGenerationError(RuntimeError):
    """Every attempt at a scene failed (its simulations kept blowing up or escaping)."""


@dataclass
class SceneResult:
    """A generated scene and how many draws were thrown away before it (``resampled``),
    with the failed statuses."""

    scene: Scene
    resampled: int
    failures: list[str]


def scene_seed(seed: int, index: int, attempt: int) -> int:
    """32-bit seed of scene ``index``'s ``attempt``-th draw under dataset seed ``seed``."""
    return int(np.random.SeedSequence([seed, index, attempt]).generate_state(1)[0])


def scene_id(index: int) -> str:
    return f"{index:06d}"


def video_sim_config(cfg: RunConfig) -> MPMConfig:
    """The MPM settings of the GT videos: ``cfg.sim`` with n_frames = video_frames − 1 and
    one thread when ``sim.threads`` is 0."""
    return cfg.sim.model_copy(update={"n_frames": cfg.data.video_frames - 1,
                                      "threads": cfg.sim.threads or 1})


def particle_spacing(cfg: RunConfig) -> float:
    """Spacing [m] of a synthetic object's particles (= Gaussians) before ``data.max_particles``
    thins them: the video simulation's cell size over ∛particles_per_cell (rounded), e.g.
    1/32 m / 2 = 1.6 cm in the quickstart."""
    sim = video_sim_config(cfg)
    per_axis = max(1, round(sim.particles_per_cell ** (1.0 / 3.0)))
    return sim.domain_size / sim.grid_res / per_axis


def video_camera(cfg: RunConfig) -> Camera:
    """The fixed side camera of the GT videos: looks at the domain's vertical axis,
    ``video_target_height_m`` above the floor, from ``video_distance_m`` on the +z side,
    ``video_elevation_deg`` up, so the floor contact is in view."""
    d, size = cfg.data, cfg.data.image_size
    floor = 3.0 * cfg.sim.domain_size / cfg.sim.grid_res
    target = np.array([cfg.sim.domain_size / 2, floor + d.video_target_height_m,
                       cfg.sim.domain_size / 2])
    el = np.radians(d.video_elevation_deg)
    eye = target + d.video_distance_m * np.array([0.0, np.sin(el), np.cos(el)])
    return Camera.look_at(eye, target, d.video_fov_deg, size, size)


def render_device(cfg: RunConfig) -> torch.device:
    if cfg.data.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.data.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("data.device='cuda' but torch finds no CUDA device: set "
                           "data.device=cpu or auto")
    return torch.device(cfg.data.device)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (torch.nan_to_num(x, nan=0.0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


DEPTH_MIN_ALPHA = 0.05  # below it a pixel's expected depth is left out (0)


def render_views(gaussians: Gaussians, cameras: list[Camera], cfg: RunConfig
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``gaussians`` from each camera on black: rgb (V, H, W, 3) uint8, alpha
    (V, H, W) uint8 and expected camera-frame depth (V, H, W) float32 [m] (0 where alpha <
    ``DEPTH_MIN_ALPHA``): what the Gaussian head's depth is supervised with."""
    backend = resolve_backend(cfg.render.backend, gaussians.means.device, differentiable=False)
    rgb, alpha, depth = [], [], []
    with torch.no_grad():
        for cam in cameras:
            out = rasterize(gaussians, cam, backend=backend, tile_size=cfg.render.tile_size)
            rgb.append(_to_uint8(out.rgb))
            alpha.append(_to_uint8(out.alpha))
            z = torch.nan_to_num(out.depth, nan=0.0, posinf=0.0, neginf=0.0)
            depth.append(torch.where(out.alpha >= DEPTH_MIN_ALPHA, z, torch.zeros_like(z))
                         .float().cpu().numpy())
    return np.stack(rgb), np.stack(alpha), np.stack(depth)


def render_trajectory(gaussians: Gaussians, positions: np.ndarray, deformation: np.ndarray,
                      camera: Camera, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame f shows Gaussian i at ``positions[f, i]`` (F, N, 3) [m] with covariance
    F Σ Fᵀ (``deformation`` (F, N, 3, 3)); returns video (F, H, W, 3) uint8 and its alpha
    (F, H, W) uint8."""
    return render_video(gaussians, positions, deformation, camera, backend=cfg.render.backend,
                        tile_size=cfg.render.tile_size, with_alpha=True)


def _place(particles: np.ndarray, rng: np.random.Generator, cfg: RunConfig) -> np.ndarray:
    """Move centred particles to a random spot above the floor (inside the interior)."""
    size, dx = cfg.sim.domain_size, cfg.sim.domain_size / cfg.sim.grid_res
    floor, ceiling = 3.0 * dx, size - 3.0 * dx
    half = np.ptp(particles, axis=0) / 2.0
    gap = rng.uniform(*cfg.data.drop_height_m)
    bottom = floor + dx + gap  # one cell clear of the floor plane
    top_room = ceiling - dx - (bottom + 2.0 * half[1])
    if top_room < 0:
        bottom = max(floor + dx, bottom + top_room)
    xz = size / 2.0 + rng.uniform(-0.05, 0.05, 2) * size
    centre = np.array([xz[0], bottom + half[1], xz[1]])
    out = particles - (particles.min(0) + particles.max(0)) / 2.0 + centre
    lo, hi = out.min(), out.max()
    if lo < floor or hi > ceiling:
        raise ValueError(f"an object of extent {2 * half.max():.3f} m does not fit the domain "
                         f"interior [{floor:.3f}, {ceiling:.3f}] m: lower data.object_size_m or "
                         "raise sim.domain_size")
    return out.astype(np.float32)


def _initial_velocity(rng: np.random.Generator, cfg: RunConfig) -> np.ndarray:
    if rng.random() >= cfg.data.throw_probability:
        return np.zeros(3, np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    speed = rng.uniform(0.0, cfg.data.throw_speed_mps)
    vy = rng.uniform(-0.5, 0.5) * cfg.data.throw_speed_mps
    return np.array([speed * np.cos(angle), vy, speed * np.sin(angle)], np.float32)


def draw_scene(seed: int, cfg: RunConfig) -> tuple[Optional[Scene], str]:
    """One draw of a scene from ``np.random.default_rng(seed)``; returns (scene, "ok") or
    (None, status) when the simulation was not "ok". With ``data.image_only`` nothing is
    simulated: the scene has no video (status "not_simulated" in its ``sim`` attribute)."""
    rng = np.random.default_rng(seed)
    d = cfg.data
    sim_cfg = video_sim_config(cfg)

    material = Material(d.materials[int(rng.integers(len(d.materials)))])
    true = sample_params(material, rng, d.true_ranges(material))
    spec = random_object(rng, tuple(d.object_size_m), tuple(d.shapes))
    particles, spacing = sample_object(spec, particle_spacing(cfg), d.max_particles)
    particles = _place(particles, rng, cfg)
    velocity = _initial_velocity(rng, cfg)
    look = sample_appearance(material, particles, rng, d.appearance_mix, physics=true,
                             physics_cue=d.physics_cue, ranges=d.true_ranges(material))
    view_rng = np.random.default_rng(rng.integers(2 ** 32))
    label = annotate(true, np.random.default_rng(rng.integers(2 ** 32)), d.label_noise,
                     d.label_bias)

    device = render_device(cfg)
    g = Gaussians.from_points(particles, look.colors, scale=look.scale_factor * spacing)
    g.opacities = torch.from_numpy(look.opacities)
    g = g.to(device)
    centre = (particles.min(0) + particles.max(0)) / 2.0
    cams = random_cameras(d.n_views, view_rng, radius=tuple(d.view_radius_m),
                          elevation_deg=tuple(d.view_elevation_deg), target=centre,
                          fov_deg=d.view_fov_deg, width=d.image_size, height=d.image_size)
    volumes = np.full(len(particles), spacing ** 3, np.float32)
    result = None
    if not d.image_only:
        result = simulate(particles, true, sim_cfg, volumes=volumes, velocities=velocity)
        if result.status != "ok":
            return None, result.status
    images, alpha, depth = render_views(g, cams, cfg)
    video = video_alpha = video_K = video_c2w = None
    if result is not None:
        vcam = video_camera(cfg)
        video, video_alpha = render_trajectory(g, result.positions, result.deformation, vcam,
                                               cfg)
        video_K, video_c2w = vcam.K.numpy(), vcam.c2w.numpy()

    gc = g.to("cpu")
    sim_attrs = {"grid_res": sim_cfg.grid_res, "domain_size": sim_cfg.domain_size,
                 "frame_dt": sim_cfg.frame_dt, "boundary": sim_cfg.boundary,
                 "friction": sim_cfg.friction, "gravity": list(sim_cfg.gravity),
                 "initial_velocity": velocity.tolist(), "spacing_m": float(spacing),
                 "status": "not_simulated"}
    if result is not None:
        sim_attrs.update({"n_frames": sim_cfg.n_frames, "substep_dt": float(result.substep_dt),
                          "substeps_per_frame": int(result.substeps_per_frame),
                          "sim_wall_s": round(float(result.wall_s), 3),
                          "status": result.status})
    scene = Scene(
        images=images, alpha=alpha, depth=depth,
        K=np.stack([c.K.numpy() for c in cams]), c2w=np.stack([c.c2w.numpy() for c in cams]),
        video=video, video_alpha=video_alpha, video_K=video_K, video_c2w=video_c2w,
        particles=particles, volumes=volumes,
        trajectory=None if result is None else np.asarray(result.positions, np.float32),
        gaussians={"means": gc.means.numpy(), "scales": gc.scales.numpy(),
                   "quats": gc.quats.numpy(), "opacities": gc.opacities.numpy(),
                   "colors": gc.colors.numpy()},
        true=true, label=label, sim=sim_attrs,
        shape={**spec.describe(), "n_particles": int(len(particles))},
        appearance=look.info, seed=seed, source="synthetic")
    return scene, "ok"


def generate_scene(index: int, cfg: RunConfig) -> SceneResult:
    """Scene ``index`` of the dataset ``cfg.data`` (deterministic per seed and index).

    Raises SceneGenerationError when ``data.max_attempts`` draws all failed to simulate."""
    failures = []
    for attempt in range(cfg.data.max_attempts):
        scene, status = draw_scene(scene_seed(cfg.data.seed, index, attempt), cfg)
        if scene is not None:
            scene.scene_id = scene_id(index)
            scene.extra = {"index": index, "attempt": attempt}
            return SceneResult(scene, attempt, failures)
        failures.append(status)
    raise SceneGenerationError(
        f"scene {index}: all {cfg.data.max_attempts} draws failed to simulate ({failures}); "
        "lower the stiffest materials' E range, raise sim.grid_res or set sim.substep_dt")
