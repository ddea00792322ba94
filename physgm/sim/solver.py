"""``simulate``: run MLS-MPM on a set of particles and return per-frame positions and
deformation gradients, with guards that turn blow-ups into a status instead of a crash."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from physgm.config import MPMConfig
from physgm.materials import PhysParams
from physgm.sim.stability import choose_substeps
from physgm.sim.validate import check_run

STATUSES = ("ok", "unstable", "escaped")


@dataclass
class SimResult:
    """Trajectory of a simulation (numpy, float32).

    positions: (F+1, N, 3) [m], frame 0 is the input; deformation: (F+1, N, 3, 3) total
    deformation gradient F (elastic × plastic); velocities: (F+1, N, 3) [m/s];
    times: (F+1,) [s]. On "unstable" (non-finite
    state or speed above ``cfg.max_speed``) or "escaped" (more than ``cfg.escape_fraction``
    of the particles reached the domain's edge) the arrays end at the last valid frame.
    """

    positions: np.ndarray
    deformation: np.ndarray
    velocities: np.ndarray
    status: str
    wall_s: float
    times: np.ndarray
    substep_dt: float
    substeps_per_frame: int
    message: str = ""
    n_escaped: int = 0
    max_speed: float = 0.0
    stats: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Frames simulated after the initial one."""
        return self.positions.shape[0] - 1

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def particle_substeps(self) -> int:
        return self.positions.shape[1] * self.n_frames * self.substeps_per_frame


def resolve_device(device: str) -> str:
    import warp as wp

    wp.config.quiet = True
    wp.init()
    if device == "auto":
        return "cuda:0" if wp.is_cuda_available() else "cpu"
    if device == "cuda" and not wp.is_cuda_available():
        raise RuntimeError("MPMConfig.device='cuda' but warp finds no CUDA device: use "
                           "device='cpu' or 'auto'")
    return "cuda:0" if device == "cuda" else "cpu"


def _as_points(positions, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(positions, torch.Tensor):
            positions = positions.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, 3) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def _check_inside(x: np.ndarray, cfg: MPMConfig) -> None:
    dx = cfg.domain_size / cfg.grid_res
    lo, hi = 3 * dx, cfg.domain_size - 3 * dx
    if x.min() < lo or x.max() > hi:
        raise ValueError(
            f"positions must lie inside the domain interior [{lo:.4g}, {hi:.4g}] m per axis "
            f"(domain_size={cfg.domain_size} m, 3 boundary cells of {dx:.4g} m); got range "
            f"[{x.min():.4g}, {x.max():.4g}]: shift or scale the object, or enlarge domain_size")


def simulate(positions, params: PhysParams, cfg: MPMConfig, volumes=None,
             velocities=None, progress: Optional[Callable[[int, int], None]] = None) -> SimResult:
    """Simulate an object made of particles with MLS-MPM.

    Args:
        positions: (N, 3) [m] inside [3·dx, domain_size − 3·dx]³ (numpy or torch).
        params: material and its parameters.
        cfg: grid, time stepping, boundary and guard settings.
        volumes: (N,) [m³] initial particle volumes; default (dx/2)³ (8 particles per cell).
        velocities: initial velocity [m/s], (3,) for all particles or (N, 3).
        progress: optional callback(frame_done, n_frames).
    Returns:
        SimResult with positions (F+1, N, 3), deformation (F+1, N, 3, 3), status, wall_s.
    Raises:
        ValueError for bad input, a substep that violates the CFL bound or a run above
        ``cfg.max_substeps_per_frame`` (before running). Parameters outside
        ``PARAM_RANGES`` run with a ``validate.ParamRangeWarning``.
    """
    import warp as wp

    from physgm.sim import kernels as K
    from physgm.sim.constitutive import material_struct
    from physgm.sim.stepper import Stepper

    t0 = time.perf_counter()
    x0 = _as_points(positions, "positions")
    n = x0.shape[0]
    _check_inside(x0, cfg)
    dx = cfg.domain_size / cfg.grid_res
    vol = np.full(n, (0.5 * dx) ** 3) if volumes is None else np.asarray(volumes, np.float64)
    if vol.shape != (n,) or not np.isfinite(vol).all() or (vol <= 0).any():
        raise ValueError(f"volumes must be (N,)={n} positive finite values [m³], got shape {vol.shape}")
    v0 = check_run(params, velocities, n)
    dt, n_sub = choose_substeps(params, cfg, float(np.linalg.norm(v0, axis=1).max()), n)

    device = resolve_device(cfg.device)
    pstate0 = np.ones(n) if params.material.value == "snow" else np.zeros(n)
    stepper = Stepper(x0, v0, vol, params.density, pstate0, material_struct(params),
                      cfg.grid_res, dx, device, cfg.threads)
    gravity = wp.vec3(*cfg.gravity)
    kind = K.BOUNDARY_KIND[cfg.boundary]
    lo, hi = 2.0 * dx, cfg.domain_size - 2.0 * dx
    frames_x = [x0.astype(np.float32)]
    frames_F = [np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3))]
    frames_v = [v0.astype(np.float32)]
    status, message = "ok", ""
    try:
        for frame in range(cfg.n_frames):
            for _ in range(n_sub):
                stepper.substep(dt, gravity, kind, cfg.friction, lo, hi)
            counts, vmax = stepper.guards()
            if counts[0] > 0 or counts[1] > 0 or not np.isfinite(vmax) or vmax > cfg.max_speed:
                status = "unstable"
                message = (f"frame {frame + 1}: {counts[0]} non-finite particles, {counts[1]} "
                           f"outside the grid, max speed {vmax:.3g} m/s (limit "
                           f"{cfg.max_speed} m/s)")
                break
            xf, Ff, vf = stepper.positions(), stepper.deformation(), stepper.velocities()
            if not (np.isfinite(xf).all() and np.isfinite(Ff).all()):
                status, message = "unstable", f"frame {frame + 1}: non-finite state"
                break
            if counts[2] > cfg.escape_fraction * n:
                status = "escaped"
                message = (f"frame {frame + 1}: {counts[2]} of {n} particles reached the domain "
                           f"edge (limit {cfg.escape_fraction:.1%})")
                break
            frames_x.append(xf)
            frames_F.append(Ff)
            frames_v.append(vf)
            if progress is not None:
                progress(frame + 1, cfg.n_frames)
        counts, vmax = stepper.guards()
    finally:
        stepper.close()

    frames = len(frames_x)
    return SimResult(
        positions=np.stack(frames_x), deformation=np.stack(frames_F).astype(np.float32),
        velocities=np.stack(frames_v),
        status=status, wall_s=time.perf_counter() - t0,
        times=np.arange(frames, dtype=np.float32) * np.float32(cfg.frame_dt),
        substep_dt=dt, substeps_per_frame=n_sub, message=message, n_escaped=int(counts[2]),
        max_speed=vmax, stats={"device": device, "n_particles": n, "grid_res": cfg.grid_res,
               "threads": stepper.threads})
