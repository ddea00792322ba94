"""Human-facing helpers around ``simulate``: a progress bar, a drop test with its figures,
and a quick particle video for ``physgm simulate --out video.mp4``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from physgm.config import MPMConfig, RunConfig
from physgm.materials import PhysParams
from physgm.sim.shapes import sample_shape
from physgm.sim.solver import SimResult, simulate


def run_with_progress(positions, params: PhysParams, cfg: MPMConfig, show: bool = True,
                      label: str | None = None, **kwargs) -> SimResult:
    """``simulate`` with a rich progress bar over frames (hidden when ``show`` is False)."""
    if not show:
        return simulate(positions, params, cfg, **kwargs)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("frames"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label or f"simulate {params.material.value}", total=cfg.n_frames)
        return simulate(positions, params, cfg,
                        progress=lambda done, total: bar.update(task, completed=done), **kwargs)


def drop_test(params: PhysParams, cfg: MPMConfig, shape: str = "cube", size: float = 0.2,
              height: float = 0.35, show: bool = False) -> tuple[SimResult, dict]:
    """Drop a primitive of ``params`` onto the floor; returns the run and its figures:
    final centre-of-mass height [m], rebound (max height after the first contact minus the
    lowest point before it) [m], permanent height change [%] and throughput."""
    dx = cfg.domain_size / cfg.grid_res
    x = sample_shape(shape, (cfg.domain_size / 2, height, cfg.domain_size / 2), size, dx / 2)
    r = run_with_progress(x, params, cfg, show=show, label=f"drop {params.material.value}")
    com = r.positions[:, :, 1].mean(1)
    low = int(np.argmin(com))
    extent0 = np.ptp(r.positions[0, :, 1])
    return r, {
        "material": params.material.value, "status": r.status, "n_particles": int(x.shape[0]),
        "frames": r.n_frames, "substeps_per_frame": r.substeps_per_frame,
        "com_final_m": round(float(com[-1]), 4),
        "rebound_m": round(float(com[low:].max() - com[low]) if low < len(com) - 1 else 0.0, 4),
        "height_change_pct": round(100.0 * (np.ptp(r.positions[-1, :, 1]) / extent0 - 1.0), 1),
        "wall_s": round(r.wall_s, 2),
        "Mpss": round(r.particle_substeps / max(r.wall_s, 1e-9) / 1e6, 2),
    }


def write_particle_video(path: Path, result: SimResult, cfg: RunConfig) -> Path:
    """Render the particles as small Gaussians from a fixed camera into an mp4/gif."""
    import torch

    from physgm.camera import Camera
    from physgm.gaussians import Gaussians
    from physgm.render import render_video
    from physgm.video import write_video

    L = cfg.sim.domain_size
    dx = L / cfg.sim.grid_res
    x0 = result.positions[0]
    height = (x0[:, 1] - x0[:, 1].min()) / max(np.ptp(x0[:, 1]), 1e-6)
    colors = np.stack([0.3 + 0.6 * height, 0.5 * np.ones_like(height), 0.9 - 0.6 * height], 1)
    g = Gaussians.from_points(torch.from_numpy(x0), torch.from_numpy(colors).float(),
                              scale=dx / 3)
    cam = Camera.look_at((L / 2, 0.45 * L, 2.2 * L), (L / 2, 0.2 * L, L / 2), 40.0,
                         cfg.render.width, cfg.render.height)
    frames = render_video(g, result.positions, result.deformation, cam, backend="auto",
                          background=(0.08, 0.08, 0.1))
    return write_video(path, frames, fps=1.0 / cfg.sim.frame_dt)
