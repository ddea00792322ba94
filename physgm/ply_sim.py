"""``physgm simulate --ply FILE``: a user's 3DGS scene as one material, start to finish.

    run = simulate_ply(path, params, cfg, PlyOptions(size_m=0.3, up="-y"))
    write_outputs(run, Path("drop.mp4"), cfg)      # or .npz / .gif

The pipeline is ``physgm.ply_scene``'s; this module adds the options a user gives, the
camera file formats, and the outputs. Lengths: ``size_m`` and ``height_m`` in metres of the
simulation domain; ``crop`` in the scene's own units.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from physgm.camera import Camera
from physgm.config import RunConfig
from physgm.materials import PhysParams
from physgm.ply import PlyLayout, read_ply
from physgm.ply_scene import (PlyScene, build_scene, normalising_transform, orbit_views,
                              parse_transform, render_scene, select_gaussians,
                              transform_camera)


@dataclass
class PlyOptions:
    """How to place and show the scene. ``transform`` (a 4×4 similarity scene → domain, see
    ``parse_transform``) replaces ``size_m`` (longest extent [m]), ``height_m`` (height of the
    centre [m]) and ``up`` (the scene's up axis). ``camera``: a camera file/JSON in the scene's
    frame (``load_camera``); without it an orbit sweeping ``orbit_deg``."""

    size_m: float = 0.2
    height_m: float = 0.4
    up: str = "+y"
    transform: Optional[str] = None
    crop: Optional[tuple[float, ...]] = None
    min_opacity: float = 0.1
    max_particles: int = 20000
    camera: Optional[str] = None
    orbit_deg: float = 60.0


@dataclass(eq=False)
class PlyRun:
    scene: PlyScene
    layout: PlyLayout
    n_loaded: int
    result: object            # physgm.sim.SimResult
    params: PhysParams
    options: PlyOptions
    camera: Optional[Camera]  # the given camera, in the domain; None: an orbit


def load_camera(value: str, width: int) -> Camera:
    """A camera from JSON text or a file, optionally ``FILE#i`` for entry i of a list:
    ``{"K": 3×3, "c2w": 4×4[, "width", "height"]}`` (OpenCV axes), or an entry of a 3DGS
    ``cameras.json`` (``width, height, position, rotation`` (camera-to-world), ``fx, fy``).
    Resized to ``width`` pixels wide (aspect kept). Raises ValueError saying what to fix."""
    text, index = value, 0
    if not value.lstrip().startswith(("{", "[")):
        name, _, pick = value.partition("#")
        if not Path(name).is_file():
            raise ValueError(f"camera {value!r} is neither JSON nor a file")
        text = Path(name).read_text()
        if pick:
            if not pick.isdigit():
                raise ValueError(f"camera entry after '#' must be an index, got {pick!r}")
            index = int(pick)
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"camera is not valid JSON ({err})") from None
    if isinstance(data, list):
        if not 0 <= index < len(data):
            raise ValueError(f"camera index {index} is outside the list of {len(data)} cameras")
        data = data[index]
    if not isinstance(data, dict):
        raise ValueError("a camera must be a JSON object")
    if "position" in data and "rotation" in data:               # 3DGS cameras.json
        c2w = np.eye(4)
        c2w[:3, :3] = np.asarray(data["rotation"], dtype=np.float64)
        c2w[:3, 3] = np.asarray(data["position"], dtype=np.float64)
        w, h = int(data["width"]), int(data["height"])
        K = [[float(data["fx"]), 0.0, w / 2], [0.0, float(data["fy"]), h / 2], [0, 0, 1]]
        cam = Camera(torch.tensor(K), torch.as_tensor(c2w), w, h)
    else:
        cam = Camera.from_dict(data)
    return cam.scaled(width, max(1, round(width * cam.height / cam.width)))


def simulate_ply(path: Path, params: PhysParams, cfg: RunConfig, options: PlyOptions,
                 velocity: Optional[np.ndarray] = None, show: bool = True) -> PlyRun:
    """Load, select, place, fill and simulate the scene (module docstring)."""
    from physgm.sim.report import run_with_progress

    g, layout = read_ply(path)
    n_loaded = len(g)
    g = select_gaussians(g, options.min_opacity, options.crop)
    L = cfg.sim.domain_size
    if options.transform is not None:
        T = parse_transform(options.transform)
    else:
        T = normalising_transform(g.means, options.size_m, (L / 2, options.height_m, L / 2),
                                  options.up)
    camera = None if options.camera is None else transform_camera(
        load_camera(options.camera, cfg.render.width), T)      # checked before simulating
    scene = build_scene(g, cfg.sim, T, options.max_particles, seed=cfg.sim.seed)
    result = run_with_progress(scene.particles, params, cfg.sim, show=show,
                               volumes=scene.volumes, velocities=velocity)
    return PlyRun(scene, layout, n_loaded, result, params, options, camera)


def write_outputs(run: PlyRun, out: Path, cfg: RunConfig) -> Path:
    """``.npz``: particle ``positions`` (F+1, M, 3), ``deformation``, ``times``, ``status``,
    ``params`` (JSON), ``volumes`` (M,), ``gaussian_particle`` (N,) the particle each Gaussian
    follows, ``transform`` (4, 4) scene → domain; ``.mp4``/``.gif``: the Gaussians rendered
    (``cfg.render`` size and background)."""
    from physgm.video import write_video

    r, scene = run.result, run.scene
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npz":
        np.savez_compressed(out, positions=r.positions, deformation=r.deformation,
                            times=r.times, status=r.status, volumes=scene.volumes,
                            params=json.dumps(run.params.model_dump(mode="json")),
                            gaussian_particle=scene.follow.numpy(), transform=scene.transform)
        return out
    cams = [run.camera] if run.camera is not None else orbit_views(
        scene, r.positions.shape[0], cfg.render.width, cfg.render.height, run.options.orbit_deg)
    frames = render_scene(scene, r.positions, r.deformation, cams,
                          background=cfg.render.background, backend=cfg.render.backend)
    return write_video(out, frames, fps=1.0 / cfg.sim.frame_dt)


def summary(run: PlyRun) -> dict:
    """Figures for ``--json``: what was read, kept and simulated."""
    return {"ply_gaussians": run.n_loaded, "gaussians": len(run.scene.gaussians),
            "sh_degree": run.layout.sh_degree, "ignored_properties": len(run.layout.ignored),
            "transform": run.scene.transform.round(6).tolist()}
