"""MPM throughput: physgm's warp MLS-MPM side by side with Taichi's on the same workload.

Workload per size (particles N, grid res³): a jelly cube (fixed-corotated, E = 1e5 Pa,
ν = 0.3, ρ = 1000 kg/m³) from ``taichi_mpm.cube_positions`` (same particles for both),
the same substep (CFL 0.3), gravity and "separate" walls; both are timed over the same
number of substeps after a warm-up, with the same CPU thread count. Prints one JSON line:
per size ``warp_pss`` and ``taichi_pss`` (particle-substeps/s) and ``ratio`` = warp/taichi,
plus how the cost grows (ns per particle-substep) and a CUDA row when a GPU is present.
``batched``: K objects through ``simulate_batch`` against the same K through ``simulate``
one after another (``mpm_batch``), per size, with the speed-up.

    python benchmarks/bench_mpm.py --sizes 5000:32,50000:64,200000:128 --threads 2
    physgm bench mpm --json --batch-sizes 500:32,2500:32 --k 8
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.mpm_batch import DEFAULT_BATCH_SIZES, bench_batch  # noqa: E402
from benchmarks.taichi_mpm import cfl_dt, cube_positions, run_taichi  # noqa: E402

DEFAULT_SIZES = "500:32,2500:32,5000:32,50000:64,200000:128"


def substeps_for(n: int) -> int:
    """About 4 M particle-substeps per timed run (seconds on a laptop core)."""
    return int(np.clip(4e6 // max(n, 1), 10, 400))


def run_warp(x0: np.ndarray, grid_res: int, substeps: int, dt: float, threads: int,
             device: str = "cpu", warmup: int = 5) -> dict:
    """Time ``substeps`` substeps of physgm's stepper on one jelly cube, as ``simulate`` runs
    them (a frame of ``substeps`` substeps: one recorded graph, or the threads' phases)."""
    import warp as wp

    from physgm.materials import PhysParams
    from physgm.sim.constitutive import material_struct
    from physgm.sim.kernels import BOUNDARY_KIND
    from physgm.sim.solver import resolve_device
    from physgm.sim.stepper import Body, Stepper

    device = resolve_device(device)
    n = x0.shape[0]
    dx = 1.0 / grid_res
    params = PhysParams.default("jelly", E=1e5, nu=0.3, density=1000.0)

    def stepper(n_sub: int) -> Stepper:
        body = Body(x0.astype(np.float64), np.zeros((n, 3)), np.full(n, (dx / 2) ** 3), 1000.0,
                    np.zeros(n), material_struct(params), dt, n_sub)
        s = Stepper([body], grid_res, dx, device, threads)
        s.configure(wp.vec3(0.0, -9.8, 0.0), BOUNDARY_KIND["separate"], 0.0, 2 * dx,
                    1 - 2 * dx)
        return s

    warm = stepper(warmup)
    s = stepper(substeps)
    try:
        warm.frame()  # compiles and loads the kernels
        s.prepare()  # records the frame: part of the set-up, as in simulate
        wp.synchronize_device(device)
        t0 = time.perf_counter()
        s.frame()
        wp.synchronize_device(device)
        wall = time.perf_counter() - t0
        (x,), _, _ = s.state()
        counts, _ = s.guards()
    finally:
        warm.close()
        s.close()
    return {"wall_s": wall, "pss": n * substeps / wall, "com_y": float(x[:, 1].mean()),
            "finite": bool(np.isfinite(x).all() and counts[0, 0] == 0), "threads": s.threads,
            "parallel": s.parallel, "device": device}


def bench(sizes: list[tuple[int, int]], threads: int, taichi: bool = True,
          substeps: int | None = None) -> dict:
    import warp as wp

    rows = []
    for n_req, res in sizes:
        x0 = cube_positions(n_req, res)
        n = x0.shape[0]
        steps = substeps or substeps_for(n)
        dt = cfl_dt(res)
        w = run_warp(x0, res, steps, dt, threads)
        row = {"n_particles": n, "grid_res": res, "substeps": steps, "threads": w["threads"],
               "warp_pss": round(w["pss"]), "warp_ns_per_ps": round(1e9 / w["pss"], 1),
               "warp_finite": w["finite"]}
        if taichi:
            t = run_taichi(n, res, steps, dt=dt, threads=threads, warmup_substeps=5)
            row.update({"taichi_pss": round(t["particle_substeps_per_s"]),
                        "ratio": round(w["pss"] / t["particle_substeps_per_s"], 3),
                        # same physics: both dropped the cube by the same amount
                        "com_y_warp": round(w["com_y"], 4),
                        "com_y_taichi": round(float(t["com_final"][1]), 4)})
        if wp.is_cuda_available():
            c = run_warp(x0, res, steps * 10, dt, 1, device="cuda")
            row["warp_cuda_pss"] = round(c["pss"])
        rows.append(row)
    return {"benchmark": "mpm", "unit": "particle-substeps/s", "threads": threads,
            "cpu_count": os.cpu_count(), "sizes": rows}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(a), int(b)) for a, b in (item.split(":") for item in text.split(","))]
    except ValueError:
        raise SystemExit(f"--sizes expects N:RES pairs like {DEFAULT_SIZES}, got '{text}'")


def parse_sizes_or_none(text: str) -> list[tuple[int, int]]:
    return [] if text.strip().lower() in ("", "none", "0") else parse_sizes(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="physgm bench mpm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="N:RES pairs, comma-separated")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="CPU threads for both simulators")
    ap.add_argument("--substeps", type=int, default=None, help="timed substeps per size "
                    "(default: ~4 M particle-substeps)")
    ap.add_argument("--no-taichi", action="store_true", help="skip the Taichi peer")
    ap.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES,
                    help="N:RES pairs of the batched-vs-sequential rows ('none' to skip)")
    ap.add_argument("--k", type=int, default=8, help="objects per batch")
    ap.add_argument("--json", action="store_true", help="(always one JSON line; kept for "
                    "symmetry with the other commands)")
    args = ap.parse_args(argv)
    if args.k < 1 or args.threads < 1:
        raise SystemExit(f"--k and --threads must be ≥ 1, got {args.k} and {args.threads}")
    result = bench(parse_sizes_or_none(args.sizes), args.threads, taichi=not args.no_taichi,
                   substeps=args.substeps)
    result["batched"] = bench_batch(parse_sizes_or_none(args.batch_sizes), args.k,
                                    args.threads)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
