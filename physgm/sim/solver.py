"""``simulate`` and ``simulate_batch``: run MLS-MPM on one object (or B objects at once) and
return per-frame positions and deformation gradients, with guards that turn blow-ups into a
status instead of a crash. ``simulate`` is a batch of one: one code path."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from physgm.config import MPMConfig
from physgm.materials import PhysParams
from physgm.sim.stability import choose_substeps
from physgm.sim.stepper import Body
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


def _check_inside(x: np.ndarray, cfg: MPMConfig, name: str = "positions") -> None:
    dx = cfg.domain_size / cfg.grid_res
    lo, hi = 3 * dx, cfg.domain_size - 3 * dx
    if x.min() < lo or x.max() > hi:
        raise ValueError(
            f"{name} must lie inside the domain interior [{lo:.4g}, {hi:.4g}] m per axis "
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
    return _run([positions], [params], cfg, [volumes], [velocities], progress, single=True)[0]


def simulate_batch(positions: Sequence, params: Sequence[PhysParams], cfg: MPMConfig,
                   volumes: Optional[Sequence] = None, velocities: Optional[Sequence] = None,
                   progress: Optional[Callable[[int, int], None]] = None) -> list[SimResult]:
    """Simulate B independent objects together: one set of kernel launches per substep.

    Each object has its own grid block, material and substep (the one ``simulate`` would
    choose for it): at substep s of a frame only the objects with more than s substeps per
    frame move, so each result equals ``simulate`` of that object alone (on CPU with the same
    ``cfg.threads``: the same arithmetic in the same order). A member that blows up or
    escapes ends with its own status at its last valid frame and is masked out; the others
    go on.

    Args:
        positions: B arrays (N_i, 3) [m] (numpy or torch), as ``simulate``'s.
        params: B ``PhysParams``.
        cfg: one ``MPMConfig`` for all.
        volumes: None or B entries, each None or (N_i,) [m³].
        velocities: None or B entries, each None, (3,) or (N_i, 3) [m/s].
        progress: optional callback(frame_done, n_frames).
    Returns:
        B ``SimResult`` in the order given; ``wall_s`` of each is the whole batch's.
    Raises:
        ValueError naming the member (``positions[i]`` …) for bad input, as ``simulate``.
    """
    b = len(positions)
    for name, value in (("params", params), ("volumes", volumes), ("velocities", velocities)):
        if value is not None and len(value) != b:
            raise ValueError(f"simulate_batch: {name} has {len(value)} entries but positions "
                             f"has {b}: give one per object")
    if b == 0:
        return []
    return _run(list(positions), list(params), cfg, list(volumes or [None] * b),
                list(velocities or [None] * b), progress, single=False)


def _prepare(i: Optional[int], positions, params: PhysParams, cfg: MPMConfig, volumes,
             velocities) -> Body:
    """Checks of one member and its initial state (ValueError naming ``[i]`` in a batch)."""
    from physgm.sim.constitutive import material_struct

    where = "" if i is None else f"[{i}]"
    try:
        if not isinstance(params, PhysParams):
            raise ValueError(f"params{where} must be a PhysParams, got {type(params).__name__}")
        x0 = _as_points(positions, f"positions{where}")
        n = x0.shape[0]
        _check_inside(x0, cfg, f"positions{where}")
        dx = cfg.domain_size / cfg.grid_res
        vol = np.full(n, (0.5 * dx) ** 3) if volumes is None else np.asarray(volumes,
                                                                            np.float64)
        if vol.shape != (n,) or not np.isfinite(vol).all() or (vol <= 0).any():
            raise ValueError(f"volumes{where} must be (N,)={n} positive finite values [m³], "
                             f"got shape {vol.shape}")
        v0 = check_run(params, velocities, n, stacklevel=5)
        dt, n_sub = choose_substeps(params, cfg, float(np.linalg.norm(v0, axis=1).max()), n)
    except ValueError as e:
        if i is None:
            raise
        material = getattr(getattr(params, "material", None), "value", "?")
        raise ValueError(f"member {i} ({material}): {e}") from None
    pstate0 = np.ones(n) if params.material.value == "snow" else np.zeros(n)
    return Body(x0, v0, vol, params.density, pstate0, material_struct(params), dt, n_sub)


# Objects are spread over the threads (each thread runs its own objects' frames) when the
# largest share of the work is at most this fraction of the whole; else they share threads.
MAX_SHARE = 0.75


def plan_groups(sizes: list[int], n_sub: list[int], threads: int) -> list[list[int]]:
    """Objects (indices) per thread: the work (particles × substeps) spread greedily, largest
    first; one group when there is one thread, one object, or no even spread."""
    if threads <= 1 or len(sizes) < 2:
        return [list(range(len(sizes)))]
    cost = [n * k for n, k in zip(sizes, n_sub)]
    groups: list[list[int]] = [[] for _ in range(min(threads, len(sizes)))]
    load = [0] * len(groups)
    for i in sorted(range(len(sizes)), key=lambda i: -cost[i]):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += cost[i]
    if max(load) > MAX_SHARE * sum(load):
        return [list(range(len(sizes)))]
    return [sorted(g) for g in groups]


def _run(positions: list, params: list, cfg: MPMConfig, volumes: list, velocities: list,
         progress, single: bool) -> list[SimResult]:
    import warp as wp
    from concurrent.futures import ThreadPoolExecutor

    from physgm.sim import kernels as K
    from physgm.sim.stepper import Stepper, default_threads

    t0 = time.perf_counter()
    bodies = [_prepare(None if single else i, x, p, cfg, vol, vel)
              for i, (x, p, vol, vel) in enumerate(zip(positions, params, volumes, velocities))]
    dx = cfg.domain_size / cfg.grid_res
    device = resolve_device(cfg.device)
    threads = default_threads(device, cfg.threads)
    groups = plan_groups([len(b.x0) for b in bodies], [b.n_sub for b in bodies], threads)
    steppers = [Stepper([bodies[i] for i in g], cfg.grid_res, dx, device, cfg.threads)
                for g in groups]
    for st in steppers:
        st.configure(wp.vec3(*cfg.gravity), K.BOUNDARY_KIND[cfg.boundary], cfg.friction,
                     2.0 * dx, cfg.domain_size - 2.0 * dx,
                     parallel=None if len(steppers) == 1 else False)
    pool = ThreadPoolExecutor(len(steppers)) if len(steppers) > 1 else None
    runs = [_Track(body) for body in bodies]
    try:
        for frame in range(cfg.n_frames):
            if pool is None:
                steppers[0].frame()
            else:
                list(pool.map(Stepper.frame, steppers))
            for g, st in zip(groups, steppers):
                counts, vmax = st.guards()
                xs, Fs, vs = st.state()
                for local, i in enumerate(g):
                    if runs[i].status == "ok" and not runs[i].record(
                            frame, counts[local], vmax[local], xs[local], Fs[local], vs[local],
                            cfg):
                        st.kill(local)
            if progress is not None:
                progress(frame + 1, cfg.n_frames)
            if all(run.status != "ok" for run in runs):
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        for st in steppers:
            st.close()
    wall = time.perf_counter() - t0
    out = []
    for g, st in zip(groups, steppers):
        counts, vmax = st.guards()
        stats = {"device": st.device, "grid_res": cfg.grid_res, "threads": threads,
                 "batch": len(bodies), "parallel": st.parallel}
        out += [(i, runs[i].result(wall, counts[local], vmax[local], cfg, stats))
                for local, i in enumerate(g)]
    return [r for _, r in sorted(out, key=lambda item: item[0])]


class _Track:
    """The frames and status of one member as the batch runs."""

    def __init__(self, body: Body):
        n = len(body.x0)
        self.body, self.status, self.message = body, "ok", ""
        self.x = [body.x0.astype(np.float32)]
        self.F = [np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3))]
        self.v = [body.v0.astype(np.float32)]

    def record(self, frame: int, counts, vmax: float, x, F, v, cfg: MPMConfig) -> bool:
        """Keep frame ``frame + 1`` if it passes the guards; False (and a status) if not."""
        n = len(self.body.x0)
        if counts[0] > 0 or counts[1] > 0 or not np.isfinite(vmax) or vmax > cfg.max_speed:
            self.status = "unstable"
            self.message = (f"frame {frame + 1}: {counts[0]} non-finite particles, {counts[1]} "
                            f"outside the grid, max speed {vmax:.3g} m/s (limit "
                            f"{cfg.max_speed} m/s)")
        elif not (np.isfinite(x).all() and np.isfinite(F).all()):
            self.status, self.message = "unstable", f"frame {frame + 1}: non-finite state"
        elif counts[2] > cfg.escape_fraction * n:
            self.status = "escaped"
            self.message = (f"frame {frame + 1}: {counts[2]} of {n} particles reached the "
                            f"domain edge (limit {cfg.escape_fraction:.1%})")
        else:
            self.x.append(x)
            self.F.append(F)
            self.v.append(v)
            return True
        return False

    def result(self, wall: float, counts, vmax: float, cfg: MPMConfig, stats: dict
               ) -> SimResult:
        frames = len(self.x)
        return SimResult(
            positions=np.stack(self.x), deformation=np.stack(self.F).astype(np.float32),
            velocities=np.stack(self.v), status=self.status, wall_s=wall,
            times=np.arange(frames, dtype=np.float32) * np.float32(cfg.frame_dt),
            substep_dt=self.body.dt, substeps_per_frame=self.body.n_sub, message=self.message,
            n_escaped=int(counts[2]), max_speed=float(vmax),
            stats={**stats, "n_particles": len(self.body.x0)})
