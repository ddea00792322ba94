"""GPU-hours per stage of a run config, from per-simulation and per-step figures.

The work is exact (from the config and the simulator's own substep rule); the speeds are
measurements you pass in. A figure not measured yet stays ``None`` and the rows that need it
print ``TBD(measured)`` instead of a number.

- simulation: particles × substeps, substeps = n_frames × substeps per frame from the CFL
  bound of each material's default parameters (``physgm.sim.stability.choose_substeps``);
  seconds = particle-substeps / ``sim_pss``.
- data: one simulation + one rendered video per scene.
- pretrain: steps × ``pretrain_step_s`` × GPUs.
- DPO: one task per training scene and epoch (or ``dpo.steps × dpo.batch_pairs`` tasks); a
  task is K simulations and videos on an actor and K reward calls. Wall time is the slower
  of the actors and the reward replicas; every GPU of the stage is held for all of it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from physgm.config import RunConfig
from physgm.materials import Material, PhysParams
from physgm.sim.stability import choose_substeps

TBD = "TBD(measured)"


@dataclass
class Figures:
    """Measured speeds (None = not measured yet)."""

    sim_pss: Optional[float] = None            # particle-substeps/s of one actor's MPM
    render_s_per_frame: Optional[float] = None  # one frame at render.width × height [s]
    reward_s_per_video: Optional[float] = None  # one candidate scored, reference cached [s]
    pretrain_step_s: Optional[float] = None     # one optimizer step incl. grad_accum [s]


def simulation_work(cfg: RunConfig, n_particles: Optional[int] = None) -> dict:
    """Substeps and particle-substeps of one simulation per material (defaults), and their
    mean over ``cfg.data.materials``."""
    n = int(n_particles or cfg.data.max_particles)
    per = {}
    for name in cfg.data.materials:
        dt, sub = choose_substeps(PhysParams.default(Material(name)), cfg.sim)
        steps = sub * cfg.sim.n_frames
        per[name] = {"substep_dt_s": dt, "substeps_per_frame": sub, "substeps": steps,
                     "particle_substeps": steps * n}
    mean = sum(v["particle_substeps"] for v in per.values()) / len(per)
    return {"particles": n, "grid_res": cfg.sim.grid_res, "n_frames": cfg.sim.n_frames,
            "materials": per, "mean_particle_substeps": mean}


def _mul(*xs: Optional[float]) -> Optional[float]:
    out = 1.0
    for x in xs:
        if x is None:
            return None
        out *= x
    return out


def _add(*xs: Optional[float]) -> Optional[float]:
    return None if any(x is None for x in xs) else sum(xs)


def stage_costs(cfg: RunConfig, fig: Figures) -> list[dict]:
    """One row per stage: wall hours and GPU-hours (None where a figure is missing)."""
    work = simulation_work(cfg)["mean_particle_substeps"]
    sim_s = None if fig.sim_pss is None else work / fig.sim_pss
    video_s = lambda frames: _mul(frames, fig.render_s_per_frame)  # noqa: E731
    rows = []

    data_scene_s = _add(sim_s, video_s(cfg.data.video_frames))
    data_gpu_h = _mul(cfg.data.n_scenes, data_scene_s, 1 / 3600)
    rows.append({"stage": "data", "work": f"{cfg.data.n_scenes} scenes × (1 simulation + "
                 f"{cfg.data.video_frames}-frame video)", "gpus": None,
                 "wall_h": None, "gpu_h": data_gpu_h})

    p = cfg.pretrain
    gpus = p.num_workers if p.use_gpu else 0
    wall = _mul(p.steps, fig.pretrain_step_s, 1 / 3600)
    rows.append({"stage": "pretrain", "work": f"{p.steps} steps × {gpus} GPUs", "gpus": gpus,
                 "wall_h": wall, "gpu_h": _mul(wall, gpus)})

    d, r = cfg.dpo, cfg.reward
    train = round(cfg.data.n_scenes * (1 - cfg.data.val_fraction - cfg.data.test_fraction))
    tasks = d.steps * d.batch_pairs if d.steps else d.epochs * train
    task_actor_s = _mul(d.k, _add(sim_s, video_s(cfg.sim.n_frames + 1)))
    actor_wall = _mul(tasks, task_actor_s, 1 / d.n_actors)
    reward_wall = _mul(tasks, d.k, fig.reward_s_per_video, 1 / r.replicas)
    wall = None if actor_wall is None or reward_wall is None else max(actor_wall, reward_wall) / 3600
    held = d.n_actors * d.actor_gpus + r.replicas * r.num_gpus + d.learner_gpus
    rows.append({"stage": "dpo", "work": f"{tasks} tasks × K={d.k} (simulate, render, reward)",
                 "gpus": held, "wall_h": wall, "gpu_h": _mul(wall, held)})
    return rows


def cost_report(cfg: RunConfig, fig: Figures, cpu_pss: tuple[float, float] | None = None) -> dict:
    """Work, per-stage rows and, for reference, one simulation's seconds at ``cpu_pss``
    (low, high) particle-substeps/s."""
    work = simulation_work(cfg)
    out = {"figures": asdict(fig), "simulation": work, "stages": stage_costs(cfg, fig)}
    if cpu_pss:
        lo, hi = cpu_pss
        out["cpu_sim_s"] = [work["mean_particle_substeps"] / hi, work["mean_particle_substeps"] / lo]
    return out


def format_costs(report: dict) -> str:
    w = report["simulation"]
    lines = [f"one simulation: {w['particles']} particles, {w['grid_res']}³ grid, "
             f"{w['n_frames']} frames"]
    for name, m in w["materials"].items():
        lines.append(f"  {name:<11} {m['substeps_per_frame']:>5} substeps/frame  "
                     f"{m['particle_substeps']:.3g} particle-substeps")
    lines.append(f"  mean        {w['mean_particle_substeps']:.3g} particle-substeps")
    if "cpu_sim_s" in report:
        lo, hi = report["cpu_sim_s"]
        lines.append(f"  at the CPU rate given: {lo / 60:.0f}–{hi / 60:.0f} min per simulation")
    fmt = lambda x: TBD if x is None else f"{x:,.0f}"  # noqa: E731
    lines.append(f"{'stage':<9} {'GPUs':>6} {'wall h':>15} {'GPU-h':>15}  work")
    for r in report["stages"]:
        gpus = "-" if r["gpus"] is None else f"{r['gpus']:g}"
        wall = "-" if r["stage"] == "data" else fmt(r["wall_h"])
        lines.append(f"{r['stage']:<9} {gpus:>6} {wall:>15} {fmt(r['gpu_h']):>15}  {r['work']}")
    return "\n".join(lines)
