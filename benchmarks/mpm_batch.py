"""Batched vs sequential MPM: K objects through ``simulate_batch`` against the same K through
``simulate`` one after another, side by side in one process (same workload, same threads).

Two workloads per size (N particles per object, grid res³):
- ``same``: K jelly cubes of the same parameters (the batching itself);
- ``mixed``: K cubes cycling through the five materials at their default parameters, as
  the K candidates of a DPO task are (different substeps: a member moves only in its own).
Throughput is particle-substeps per second of wall time, over the whole call (validation,
set-up and per-frame read-back included, as a caller sees it).
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.taichi_mpm import cube_positions

DEFAULT_BATCH_SIZES = "500:32,2500:32,10000:32,500:64,2500:64,10000:64"
MIXED = ("jelly", "metal", "plasticine", "sand", "snow")


def _workload(kind: str, n: int, res: int, k: int):
    from physgm.materials import PhysParams

    x0 = cube_positions(n, res).astype(np.float64)
    rng = np.random.default_rng(0)
    xs = [x0 + rng.uniform(-0.02, 0.02, 3) for _ in range(k)]  # each cube a little apart
    if kind == "same":
        params = [PhysParams.default("jelly", E=1e5, nu=0.3, density=1000.0)] * k
    else:
        params = [PhysParams.default(MIXED[i % len(MIXED)]) for i in range(k)]
    return xs, params


def _frames(xs, params, cfg, budget: float) -> int:
    """Frames for about ``budget`` particle-substeps in all (at least 1)."""
    from physgm.sim import choose_substeps

    per_frame = sum(len(x) * choose_substeps(p, cfg)[1] for x, p in zip(xs, params))
    return int(np.clip(round(budget / per_frame), 1, 50))


def compare(n: int, res: int, k: int, threads: int, kind: str = "same",
            budget: float = 2e7) -> dict:
    """One row: K objects of ~n particles on a res³ grid, batched vs sequential."""
    from physgm.config import MPMConfig
    from physgm.sim import simulate, simulate_batch

    xs, params = _workload(kind, n, res, k)
    cfg = MPMConfig(grid_res=res, device="cpu", threads=threads, boundary="separate",
                    n_frames=1)
    cfg = cfg.model_copy(update={"n_frames": _frames(xs, params, cfg, budget)})
    warm = cfg.model_copy(update={"n_frames": 1})
    simulate_batch(xs[:2], params[:2], warm)  # kernels compiled and loaded before timing
    t0 = time.perf_counter()
    seq = [simulate(x, p, cfg) for x, p in zip(xs, params)]
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    bat = simulate_batch(xs, params, cfg)
    t_bat = time.perf_counter() - t0
    work = sum(r.particle_substeps for r in seq)
    same = max(float(np.abs(a.positions - b.positions).max()) for a, b in zip(seq, bat)
               if a.positions.shape == b.positions.shape)
    return {"workload": kind, "k": k, "n_particles": len(xs[0]), "grid_res": res,
            "frames": cfg.n_frames, "substeps_per_frame": sorted({r.substeps_per_frame
                                                                   for r in seq}),
            "sequential_pss": round(work / t_seq), "batched_pss": round(work / t_bat),
            "speedup": round(t_seq / t_bat, 2), "max_position_diff_m": same,
            "statuses_equal": [a.status for a in seq] == [b.status for b in bat]}


def bench_batch(sizes: list[tuple[int, int]], k: int, threads: int,
                kinds: tuple[str, ...] = ("same", "mixed")) -> list[dict]:
    return [compare(n, res, k, threads, kind) for n, res in sizes for kind in kinds]
