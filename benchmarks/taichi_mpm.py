"""Taichi MLS-MPM peer benchmark: the same jelly-cube workload as the warp simulator.

A 3D MLS-MPM (Hu et al. 2018) in Taichi, written in the style of Taichi's ``mpm88`` /
``mpm3d`` examples, so that ``physgm.sim`` (warp) can be timed side by side with a
well-known reference implementation on the same workload and thread count:

- quadratic B-spline weights, APIC affine momentum ``C (N,3,3)``;
- MLS force folded into the P2G affine term:
  ``affine = -dt * vol * 4 / dx**2 * tau + mass * C``;
- fixed-corotated elasticity (Kirchhoff stress) ``tau = 2 mu (F - R) F^T + lam (J - 1) J I``
  with ``R`` from the SVD of ``F``;
- grid update with gravity ``(0, -9.8, 0)`` m/s² and the "separate" boundary: in cells
  within 3 of a wall the outward normal velocity is clamped to zero;
- G2P with ``F <- (I + dt C) F``.

Domain ``[0, 1]³`` m, ``dx = 1 / grid_res``, particle volume ``(dx/2)³`` (8 per cell),
density 1000 kg/m³, ``E = 1e5`` Pa, ``nu = 0.3`` unless given. The particles fill a cube
centred at ``(0.5, 0.4, 0.5)`` on a jittered lattice of 2 particles per cell per axis.

Run as a script, it prints one JSON line::

    python benchmarks/taichi_mpm.py --particles 5000 --grid 32 --substeps 200 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np

GRAVITY = (0.0, -9.8, 0.0)  # m/s²
BOUND_CELLS = 3
CUBE_CENTER = (0.5, 0.4, 0.5)  # m
CFL = 0.3


def lame(E_pa: float, nu: float) -> tuple[float, float]:
    """Lamé parameters ``(mu_pa, lam_pa)`` from Young's modulus ``E_pa`` and Poisson's ``nu``."""
    if not 0.0 < nu < 0.5:
        raise ValueError(f"nu={nu} is outside (0, 0.5); pass a Poisson ratio such as 0.3")
    if E_pa <= 0:
        raise ValueError(f"E={E_pa} Pa must be positive; pass e.g. 1e5")
    mu = E_pa / (2.0 * (1.0 + nu))
    lam = E_pa * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    return mu, lam


def cfl_dt(grid_res: int, E_pa: float = 1e5, nu: float = 0.3, density: float = 1000.0) -> float:
    """Substep ``dt_s = 0.3 * dx / c`` with the P-wave speed ``c = sqrt((lam + 2 mu) / rho)``."""
    mu, lam = lame(E_pa, nu)
    wave_speed = math.sqrt((lam + 2.0 * mu) / density)
    return CFL * (1.0 / grid_res) / wave_speed


def cube_positions(n_particles: int, grid_res: int, seed: int = 0) -> np.ndarray:
    """Jelly cube on a jittered lattice, 2 particles per cell per axis.

    The cube has ``m = round(n_particles ** (1/3))`` particles per side (``m³ ≈ n_particles``),
    side ``m * dx / 2`` m, centred at ``CUBE_CENTER``; each lattice point is jittered
    uniformly within ±1/4 of the lattice spacing. Returns positions ``(m³, 3)`` float32 in m.
    Raises ValueError when the cube does not fit above the boundary cells of the grid.
    """
    if n_particles < 1:
        raise ValueError(f"n_particles={n_particles}: pass at least 1 particle")
    if grid_res < 2 * BOUND_CELLS + 2:
        raise ValueError(f"grid_res={grid_res} is too small; pass at least {2 * BOUND_CELLS + 2}")
    dx = 1.0 / grid_res
    spacing = dx / 2.0
    m = max(1, round(n_particles ** (1.0 / 3.0)))
    side = m * spacing
    center = np.asarray(CUBE_CENTER)
    if np.any(center - side / 2 < BOUND_CELLS * dx) or np.any(center + side / 2 > 1 - BOUND_CELLS * dx):
        max_side = 2 * min(min(c - BOUND_CELLS * dx, 1 - BOUND_CELLS * dx - c) for c in CUBE_CENTER)
        max_particles = int(max_side / spacing) ** 3
        raise ValueError(
            f"{n_particles} particles at 2 per cell per axis make a {side:.3f} m cube that does not fit "
            f"a {grid_res}³ grid; raise grid_res or use at most {max_particles} particles"
        )
    rng = np.random.default_rng(seed)
    idx = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    jitter = rng.uniform(-0.25, 0.25, size=idx.shape)
    pos = center - side / 2 + (idx + 0.5 + jitter) * spacing
    return pos.astype(np.float32)


def _build_substep(ti, x, v, C, F, grid_v, grid_m, *, grid_res, dt, p_vol, p_mass, mu, lam):
    """One MLS-MPM substep as a Taichi kernel over the given fields (P2G, grid update, G2P).

    Fields: ``x, v (N,) vec3``, ``C, F (N,) mat3``, ``grid_v (R,R,R) vec3``, ``grid_m (R,R,R)``.
    Everything else is baked into the kernel as compile-time constants.
    """
    inv_dx = float(grid_res)
    dx = 1.0 / grid_res
    gravity = ti.Vector(list(GRAVITY))
    mls_scale = -dt * p_vol * 4.0 * inv_dx * inv_dx

    @ti.kernel
    def substep():
        for I in ti.grouped(grid_m):
            grid_v[I] = ti.Vector.zero(ti.f32, 3)
            grid_m[I] = 0.0
        # P2G: scatter mass and APIC + MLS momentum.
        for p in x:
            Xp = x[p] * inv_dx
            base = ti.cast(Xp - 0.5, ti.i32)
            fx = Xp - base
            w = [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2]
            Fp = F[p]
            U, _sig, Vm = ti.svd(Fp)
            R = U @ Vm.transpose()
            J = Fp.determinant()
            tau = 2.0 * mu * (Fp - R) @ Fp.transpose() + ti.Matrix.identity(ti.f32, 3) * lam * (J - 1.0) * J
            affine = mls_scale * tau + p_mass * C[p]
            for i, j, k in ti.static(ti.ndrange(3, 3, 3)):
                offset = ti.Vector([i, j, k])
                dpos = (offset - fx) * dx
                weight = w[i][0] * w[j][1] * w[k][2]
                grid_v[base + offset] += weight * (p_mass * v[p] + affine @ dpos)
                grid_m[base + offset] += weight * p_mass
        # Grid update: momentum -> velocity, gravity, "separate" walls.
        for I in ti.grouped(grid_m):
            if grid_m[I] > 0:
                vel = grid_v[I] / grid_m[I] + dt * gravity
                for d in ti.static(range(3)):
                    if I[d] < BOUND_CELLS and vel[d] < 0:
                        vel[d] = 0.0
                    if I[d] > grid_res - BOUND_CELLS and vel[d] > 0:
                        vel[d] = 0.0
                grid_v[I] = vel
        # G2P: gather velocity and affine field, advect, update F.
        for p in x:
            Xp = x[p] * inv_dx
            base = ti.cast(Xp - 0.5, ti.i32)
            fx = Xp - base
            w = [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2]
            new_v = ti.Vector.zero(ti.f32, 3)
            new_C = ti.Matrix.zero(ti.f32, 3, 3)
            for i, j, k in ti.static(ti.ndrange(3, 3, 3)):
                offset = ti.Vector([i, j, k])
                dpos = offset - fx  # in cells
                weight = w[i][0] * w[j][1] * w[k][2]
                g_v = grid_v[base + offset]
                new_v += weight * g_v
                new_C += 4.0 * inv_dx * weight * g_v.outer_product(dpos)
            v[p] = new_v
            x[p] += dt * new_v
            F[p] = (ti.Matrix.identity(ti.f32, 3) + dt * new_C) @ F[p]
            C[p] = new_C

    return substep


def _init_taichi(ti, arch: str, threads: int | None) -> None:
    """(Re)start Taichi on ``arch``; safe to call repeatedly in one process."""
    kwargs = {"default_fp": ti.f32, "log_level": ti.WARN, "random_seed": 0}
    if arch == "cpu":
        kwargs["arch"] = ti.cpu
        if threads is not None:
            kwargs["cpu_max_num_threads"] = int(threads)
    else:
        kwargs["arch"] = ti.cuda
    ti.reset()
    # ti.init prints a banner on stdout; keep stdout for the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        ti.init(**kwargs)


def run_taichi(
    n_particles: int,
    grid_res: int,
    substeps: int,
    dt: float = None,
    threads: int = None,
    arch="cpu",
    warmup_substeps=20,
    *,
    E: float = 1e5,
    nu: float = 0.3,
    density: float = 1000.0,
    seed: int = 0,
) -> dict:
    """Simulate the jelly cube with Taichi MLS-MPM and time the substep loop.

    Args:
        n_particles: requested count; the cube holds ``round(n**(1/3))**3`` (reported).
        grid_res: grid cells per axis ``R`` (grid ``R³`` over the unit cube, ``dx = 1/R`` m).
        substeps: timed substeps, after ``warmup_substeps`` untimed ones (compilation).
        dt: substep in s; default ``cfl_dt(grid_res, E, nu, density)``.
        threads: CPU threads (``ti.init(cpu_max_num_threads=threads)``); None = Taichi default.
        arch: "cpu" or "cuda".
        E, nu, density: Young's modulus (Pa), Poisson ratio, density (kg/m³).

    Returns a dict with ``n_particles, grid_res, substeps, wall_s`` (timed loop only,
    synchronised), ``particle_substeps_per_s, threads, backend``, and for checking the
    physics: ``dt, sim_time_s`` (simulated time over warm-up + timed substeps),
    ``com_initial, com_final`` (centre of mass, m) and ``has_nan``.
    """
    if arch not in ("cpu", "cuda"):
        raise ValueError(f"arch={arch!r} is not supported; use 'cpu' or 'cuda'")
    if substeps < 1 or warmup_substeps < 0:
        raise ValueError(f"substeps={substeps}, warmup_substeps={warmup_substeps}: need substeps >= 1, warmup >= 0")
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}: pass a positive thread count or None")
    if dt is None:
        dt = cfl_dt(grid_res, E, nu, density)
    if dt <= 0:
        raise ValueError(f"dt={dt} s must be positive")
    mu, lam = lame(E, nu)
    positions = cube_positions(n_particles, grid_res, seed=seed)
    n = positions.shape[0]

    # Taichi wraps every kernel call with a print-buffer flush when stdout is not the raw
    # console (pytest, redirection); that overhead does not belong in the timing.
    os.environ.setdefault("TI_ENABLE_PYBUF", "0")
    with contextlib.redirect_stdout(sys.stderr):
        import taichi as ti
    _init_taichi(ti, arch, threads)

    x = ti.Vector.field(3, ti.f32, shape=n)
    v = ti.Vector.field(3, ti.f32, shape=n)
    C = ti.Matrix.field(3, 3, ti.f32, shape=n)
    F = ti.Matrix.field(3, 3, ti.f32, shape=n)
    grid_v = ti.Vector.field(3, ti.f32, shape=(grid_res,) * 3)
    grid_m = ti.field(ti.f32, shape=(grid_res,) * 3)
    x.from_numpy(positions)
    v.from_numpy(np.zeros((n, 3), np.float32))
    C.from_numpy(np.zeros((n, 3, 3), np.float32))
    F.from_numpy(np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)).copy())

    p_vol = (0.5 / grid_res) ** 3
    substep = _build_substep(
        ti, x, v, C, F, grid_v, grid_m,
        grid_res=grid_res, dt=float(dt), p_vol=p_vol, p_mass=p_vol * density, mu=mu, lam=lam,
    )
    for _ in range(warmup_substeps):
        substep()
    ti.sync()
    t0 = time.perf_counter()
    for _ in range(substeps):
        substep()
    ti.sync()
    wall_s = time.perf_counter() - t0

    final = x.to_numpy()
    has_nan = not (np.isfinite(final).all() and np.isfinite(F.to_numpy()).all())
    version = ".".join(str(p) for p in ti.__version__)
    used_threads = threads if threads is not None else (os.cpu_count() if arch == "cpu" else None)
    return {
        "n_particles": int(n),
        "grid_res": int(grid_res),
        "substeps": int(substeps),
        "wall_s": wall_s,
        "particle_substeps_per_s": n * substeps / wall_s,
        "threads": used_threads,
        "backend": f"taichi-{version}-{arch}",
        "dt": float(dt),
        "sim_time_s": float(dt) * (warmup_substeps + substeps),
        "com_initial": positions.astype(np.float64).mean(axis=0).tolist(),
        "com_final": np.nanmean(final.astype(np.float64), axis=0).tolist(),
        "has_nan": bool(has_nan),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Taichi MLS-MPM peer benchmark (prints one JSON line)")
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--substeps", type=int, default=200)
    parser.add_argument("--dt", type=float, default=None, help="substep in s (default: CFL 0.3)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--arch", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--E", type=float, default=1e5, help="Young's modulus in Pa")
    parser.add_argument("--nu", type=float, default=0.3)
    args = parser.parse_args(argv)
    result = run_taichi(
        args.particles, args.grid, args.substeps, dt=args.dt, threads=args.threads,
        arch=args.arch, warmup_substeps=args.warmup, E=args.E, nu=args.nu,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
