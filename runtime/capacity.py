"""Does a stage fit the cluster? What each role asks for (from the config), packed onto the
cluster's nodes before anything starts: pure bookkeeping, no Ray (``ray_cluster`` feeds it
the live nodes). A stage whose roles cannot all be placed would otherwise wait silently for
resources that never come (Ray keeps the actors pending).

Roles per stage (per instance; every role also takes its configured custom resources):

| stage    | role            | count               | CPU / GPU                               |
|----------|-----------------|---------------------|-----------------------------------------|
| pretrain | pretrain_worker | pretrain.num_workers | pretrain.cpus_per_worker / 1 if use_gpu |
| dpo      | learner         | 1                   | 1 / dpo.learner_gpus                    |
| dpo      | sim_actor       | dpo.n_actors        | dpo.actor_cpus / dpo.actor_gpus         |
| dpo      | reward_replica  | reward.replicas     | reward.num_cpus / reward.num_gpus       |
| serve    | serve_model     | serve.replicas      | serve.num_cpus / serve.num_gpus         |
| serve    | serve_sim       | serve.sim_replicas  | serve.sim_num_cpus / serve.sim_num_gpus |
"""
from __future__ import annotations

from dataclasses import dataclass

from physgm.config import RunConfig

EPS = 1e-9
STAGES = ("pretrain", "dpo", "serve")


@dataclass(frozen=True)
class RoleDemand:
    """``count`` instances of ``role``, each asking ``per`` (CPU, GPU, custom resources);
    ``fields``: the config settings behind them (what a user changes)."""

    role: str
    count: int
    per: dict
    fields: str


def _ask(cpu: float, gpu: float, custom: dict) -> dict:
    out = {"CPU": float(cpu)}
    if gpu:
        out["GPU"] = float(gpu)
    out.update({k: float(v) for k, v in custom.items() if v})
    return out


def stage_demands(cfg: RunConfig, stage: str) -> list[RoleDemand]:
    """The roles ``stage`` starts at once, with what each instance asks for."""
    p, d, r, s = cfg.pretrain, cfg.dpo, cfg.reward, cfg.serve
    if stage == "pretrain":
        return [RoleDemand("pretrain_worker", p.num_workers,
                           _ask(p.cpus_per_worker, 1 if p.use_gpu else 0, p.resources_per_worker),
                           "pretrain.num_workers, pretrain.cpus_per_worker, pretrain.use_gpu, "
                           "pretrain.resources_per_worker")]
    if stage == "dpo":
        return [RoleDemand("learner", 1, _ask(1, d.learner_gpus, d.learner_resources),
                           "dpo.learner_gpus, dpo.learner_resources"),
                RoleDemand("sim_actor", d.n_actors,
                           _ask(d.actor_cpus, d.actor_gpus, d.actor_resources),
                           "dpo.n_actors, dpo.actor_cpus, dpo.actor_gpus, dpo.actor_resources"),
                RoleDemand("reward_replica", r.replicas, _ask(r.num_cpus, r.num_gpus, r.resources),
                           "reward.replicas, reward.num_cpus, reward.num_gpus, reward.resources")]
    if stage == "serve":
        model = s.max_replicas if s.autoscaling else s.replicas
        return [RoleDemand("serve_model", model, _ask(s.num_cpus, s.num_gpus, s.resources),
                           "serve.replicas (max_replicas when autoscaling), serve.num_cpus, "
                           "serve.num_gpus, serve.resources"),
                RoleDemand("serve_sim", s.sim_replicas,
                           _ask(s.sim_num_cpus, s.sim_num_gpus, s.sim_resources),
                           "serve.sim_replicas, serve.sim_num_cpus, serve.sim_num_gpus, "
                           "serve.sim_resources")]
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def total(demands: list[RoleDemand]) -> dict:
    """What all roles of a stage ask for together."""
    out: dict = {}
    for d in demands:
        for k, v in d.per.items():
            out[k] = out.get(k, 0.0) + v * d.count
    return out


def _fits(free: dict, ask: dict) -> bool:
    return all(free.get(k, 0.0) + EPS >= v for k, v in ask.items() if v > 0)


def pack(demands: list[RoleDemand], nodes: list[dict]) -> dict[str, int]:
    """First-fit, largest instances first, onto ``nodes`` (each a dict of the node's total
    resources): {role: instances that found no room} (empty: everything fits)."""
    free = [dict(n) for n in nodes]
    instances = sorted(((d, i) for d in demands for i in range(d.count)),
                       key=lambda di: (-di[0].per.get("GPU", 0.0), -di[0].per.get("CPU", 0.0)))
    unplaced: dict[str, int] = {}
    for d, _ in instances:
        node = next((n for n in free if _fits(n, d.per)), None)
        if node is None:
            unplaced[d.role] = unplaced.get(d.role, 0) + 1
            continue
        for k, v in d.per.items():
            node[k] = node.get(k, 0.0) - v
    return unplaced


def _fmt(res: dict) -> str:
    keys = [k for k in ("CPU", "GPU") if k in res] + sorted(k for k in res if k not in ("CPU", "GPU"))
    return "{" + ", ".join(f"{k}: {res[k]:g}" for k in keys) + "}"


def shortfall_message(stage: str, demands: list[RoleDemand], nodes: list[dict],
                      unplaced: dict[str, int]) -> str:
    """What is missing, and which settings to change."""
    have: dict = {}
    for n in nodes:
        for k, v in n.items():
            if k in ("CPU", "GPU") or not k.startswith(("node:", "memory", "object_store")):
                have[k] = have.get(k, 0.0) + v
    need = total(demands)
    lines = [f"the cluster cannot host the {stage} stage: it needs {_fmt(need)} at once and its "
             f"{len(nodes)} node(s) have {_fmt({k: have.get(k, 0.0) for k in need})}"]
    for d in demands:
        if d.role in unplaced:
            lines.append(f"  {d.role}: {unplaced[d.role]} of {d.count} instance(s) of "
                         f"{_fmt(d.per)} find no node with room (settings: {d.fields})")
    lines.append("  change those settings (fewer or smaller instances, no custom resource the "
                 "nodes lack) or add nodes that have the resources")
    return "\n".join(lines)
