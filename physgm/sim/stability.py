"""Substep selection and the CFL check (pure math, no warp).

The explicit MLS-MPM update is stable while information travels less than a cell per
substep: dt ≤ C · dx / (c + v), with c the elastic P-wave speed sqrt((λ + 2μ)/ρ) [m/s] and v
the fastest material speed expected [m/s]. ``cfg.cfl`` (C) picks the automatic substep at
the rest stiffness. Snow stiffens as it compacts (by up to ``SNOW_MAX_HARDENING``), so its
substep also keeps the fully hardened wave speed at Courant ≤ 1 (``CFL_LIMIT``). Sand takes
a third of ``cfg.cfl`` (``COURANT_SCALE``): its explicit Drucker–Prager flow gains volume in
proportion to the substep (mean det F after a column collapse at 32³, φ = 40°: +2.5 % at
Courant 0.3, +1.1 % at 0.15, +0.4 % at 0.1).

What is checked is the substep the run will take: frame_dt / round(frame_dt / dt), which
can be larger than a given ``cfg.substep_dt``. A substep beyond Courant 1, or more than
``cfg.max_substeps_per_frame`` substeps per frame, is refused before anything runs, with
the estimated cost and what to change.
"""
from __future__ import annotations

import math

import numpy as np

from physgm.config import MPMConfig
from physgm.materials import SNOW_MAX_HARDENING, Material, PhysParams

CFL_LIMIT = 1.0  # Courant number above which a substep is rejected outright
COURANT_SCALE = {Material.sand: 1.0 / 3.0}  # accuracy, not stability: see the docstring
# Throughput assumed in the cost estimate of a refusal [particle-substeps/s]: the low end
# of what `physgm bench mpm` measures on 2 CPU cores (README); CUDA is taken 50× faster.
CPU_PARTICLE_SUBSTEPS_PER_S = 1.5e6
CUDA_SPEEDUP = 50.0


def expected_speed(cfg: MPMConfig, initial_speed: float = 0.0) -> float:
    """Upper estimate of particle speed [m/s]: initial speed plus a fall across the domain."""
    g = float(np.linalg.norm(cfg.gravity))
    return float(initial_speed) + math.sqrt(2.0 * g * cfg.domain_size)


def hardened_wave_speed(params: PhysParams) -> float:
    """Largest P-wave speed the material reaches [m/s]: snow at its capped hardening
    √(SNOW_MAX_HARDENING) × the rest speed; the rest speed for the others."""
    c = params.wave_speed()
    return c * math.sqrt(SNOW_MAX_HARDENING) if params.material is Material.snow else c


def stable_dt(params: PhysParams, cfg: MPMConfig, initial_speed: float = 0.0,
              courant: float | None = None) -> float:
    """Largest substep [s] with Courant number ``courant`` at the rest stiffness and at most
    ``CFL_LIMIT`` at the hardened stiffness (snow). The default ``courant`` is the automatic
    choice: ``cfg.cfl`` × the material's ``COURANT_SCALE``."""
    dx = cfg.domain_size / cfg.grid_res
    v = expected_speed(cfg, initial_speed)
    if courant is None:
        courant = cfg.cfl * COURANT_SCALE.get(params.material, 1.0)
    dt = courant * dx / (params.wave_speed() + v)
    return min(dt, CFL_LIMIT * dx / (hardened_wave_speed(params) + v))


def courant_number(dt: float, params: PhysParams, cfg: MPMConfig,
                   initial_speed: float = 0.0) -> float:
    """Courant number of substep ``dt`` [s] at the hardened wave speed plus expected speed."""
    dx = cfg.domain_size / cfg.grid_res
    return dt * (hardened_wave_speed(params) + expected_speed(cfg, initial_speed)) / dx


def _refuse_cost(params: PhysParams, cfg: MPMConfig, n: int, initial_speed: float,
                 n_particles: int | None) -> None:
    if n <= cfg.max_substeps_per_frame:
        return
    rate = CPU_PARTICLE_SUBSTEPS_PER_S * (CUDA_SPEEDUP if cfg.device == "cuda" else 1.0)
    cost = ""
    if n_particles:
        hours = n * cfg.n_frames * n_particles / rate / 3600.0
        cost = (f", about {hours:.3g} h for {cfg.n_frames} frames of {n_particles} particles "
                f"at ~{rate / 1e6:.3g} M particle-substeps/s")
    raise ValueError(
        f"{params.material.value} with E={params.E:.3g} Pa, nu={params.nu:g}, "
        f"density={params.density:.3g} kg/m³ (wave speed {hardened_wave_speed(params):.3g} "
        f"m/s), initial speed {initial_speed:.3g} m/s on a {cfg.grid_res}³ grid needs {n} "
        f"substeps per frame{cost}, above sim.max_substeps_per_frame="
        f"{cfg.max_substeps_per_frame}: lower E, nu or the initial speed, or coarsen "
        f"sim.grid_res; or raise sim.max_substeps_per_frame to accept the cost")


def choose_substeps(params: PhysParams, cfg: MPMConfig, initial_speed: float = 0.0,
                    n_particles: int | None = None) -> tuple[float, int]:
    """(substep_dt [s], substeps per frame). Substeps per frame = round(frame_dt / substep_dt)
    (at least 1); with an automatic substep the count is rounded up so dt stays under the bound.
    ``n_particles`` only sharpens the cost estimate of a refusal.

    Raises ValueError when the substep taken (after rounding) violates the CFL bound, or the
    run needs more than ``cfg.max_substeps_per_frame`` substeps per frame.
    """
    if cfg.substep_dt is None:
        n = max(1, math.ceil(cfg.frame_dt / stable_dt(params, cfg, initial_speed)))
        _refuse_cost(params, cfg, n, initial_speed, n_particles)
        return cfg.frame_dt / n, n
    n = max(1, round(cfg.frame_dt / cfg.substep_dt))
    dt = cfg.frame_dt / n  # frames stay exactly frame_dt apart
    limit = stable_dt(params, cfg, initial_speed, courant=CFL_LIMIT)
    if dt > limit:
        raise ValueError(
            f"substep_dt={cfg.substep_dt:.3g} s (taken as frame_dt/{n} = {dt:.3g} s) violates "
            f"the CFL bound for {params.material.value} (E={params.E:.3g} Pa, wave speed "
            f"{hardened_wave_speed(params):.3g} m/s, dx={cfg.domain_size / cfg.grid_res:.3g} "
            f"m, Courant {courant_number(dt, params, cfg, initial_speed):.3g}): use "
            f"substep_dt ≤ {limit:.3g} s, or leave it unset to choose it automatically")
    _refuse_cost(params, cfg, n, initial_speed, n_particles)
    return dt, n
