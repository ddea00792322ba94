"""Which node each role of a run config lands on: pure bookkeeping, no Ray.

Roles (resources per instance, from the config):

| stage    | role            | count                     | CPU / GPU                            |
|----------|-----------------|---------------------------|--------------------------------------|
| pretrain | pretrain_worker | pretrain.num_workers      | cpus_per_worker / 1 if use_gpu       |
| dpo      | learner         | 1                         | 1 / dpo.learner_gpus                 |
| dpo      | sim_actor       | dpo.n_actors              | dpo.actor_cpus / dpo.actor_gpus      |
| dpo      | reward_replica  | reward.replicas           | reward.num_cpus / reward.num_gpus    |
| serve    | serve_model     | serve.replicas (max_replicas with autoscaling) | num_cpus / num_gpus |
| serve    | serve_sim       | serve.sim_replicas        | sim_num_cpus / sim_num_gpus          |

(``runtime.capacity.stage_demands``, which the live check before each stage uses too.) A
role takes the custom resources its config names (``dpo.actor_resources``, …): that is what
pins it to its node type (``ROLE_RESOURCE`` says which one each role is meant for). Host
memory per role comes from the cluster file's ``metadata.physgm.memory_gib``. Stages run one at a time; within a stage every
instance must be placed at once. Packing is first-fit, largest instances first, opening the
smallest node type that fits when no open node has room.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cluster.instances import GIB

# role → custom resource that pins it (None: goes wherever CPU/GPU allow)
ROLE_RESOURCE: dict[str, str | None] = {
    "pretrain_worker": "learner", "learner": "learner", "sim_actor": "sim_actor",
    "reward_replica": "reward", "serve_model": "serve", "serve_sim": "serve"}
STAGES = ("pretrain", "dpo", "serve")
EPS = 1e-9


@dataclass
class Finding:
    level: str      # "error" | "warning" | "info"
    topic: str      # schema | node_type | placement | security | setup | config
    message: str


@dataclass
class NodeType:
    name: str
    instance_type: str | None
    resources: dict[str, float]     # CPU, GPU, memory [bytes], custom resources
    min_workers: int
    max_workers: int
    head: bool = False
    spot: bool = False
    gpu_model: str = ""


@dataclass
class Role:
    name: str
    stage: str
    count: int
    demand: dict[str, float]        # per instance; memory in bytes
    source: str                     # the config fields behind count and demand


@dataclass
class StagePlan:
    stage: str
    nodes: dict[str, int] = field(default_factory=dict)            # node type → nodes
    placed: dict[str, dict[str, int]] = field(default_factory=dict)  # role → {type: n}
    gpus: float = 0.0


def fmt_demand(res: dict[str, float]) -> str:
    parts = []
    for k in ("CPU", "GPU", "memory"):
        if k in res:
            parts.append(f"memory {res[k] / GIB:.0f} GiB" if k == "memory" else f"{k} {res[k]:g}")
    parts += [f"{k} {v:g}" for k, v in sorted(res.items()) if k not in ("CPU", "GPU", "memory")]
    return ", ".join(parts)


def role_demands(cfg, types: list[NodeType], memory_gib: dict[str, float]
                 ) -> tuple[list[Role], list[Finding]]:
    """The roles of ``cfg`` (a RunConfig) with what each instance asks of a node: the same
    demands the live check uses (``runtime.capacity.stage_demands``: CPU, GPU and the custom
    resources the config names), plus host memory from the cluster file."""
    from runtime.capacity import STAGES as ROLE_STAGES
    from runtime.capacity import stage_demands

    offered = {k for t in types for k in t.resources}
    roles, found = [], []
    for stage in ROLE_STAGES:
        for d in stage_demands(cfg, stage):
            demand = dict(d.per)
            gpu = demand.get("GPU", 0.0)
            if gpu > 1 and not float(gpu).is_integer():
                found.append(Finding("error", "config", f"{d.role}: {gpu:g} GPUs ({d.fields}): "
                                     "Ray takes a fraction ≤ 1 or a whole number of GPUs"))
            for k in sorted(set(demand) - {"CPU", "GPU"} - offered):
                found.append(Finding("error", "placement", f"{d.role} asks for the custom "
                                     f"resource '{k}' ({d.fields}) that no node type offers: it "
                                     "would wait forever; add it to a node type's resources or "
                                     "drop it from the config"))
            pin = ROLE_RESOURCE.get(d.role)
            if pin is not None and pin not in demand:
                found.append(Finding("info", "placement", f"{d.role} is not pinned to a node type "
                                     f"(no '{pin}' in {d.fields.split(', ')[-1]}), so it goes "
                                     "wherever CPUs/GPUs are free"))
            if d.role in memory_gib:
                demand["memory"] = memory_gib[d.role] * GIB
            roles.append(Role(d.role, stage, int(d.count), demand, d.fields))
    return roles, found


def _fits(free: dict[str, float], demand: dict[str, float]) -> bool:
    """Memory is only checked where the node's memory is known (declared or detected)."""
    return all(free.get(k, 0.0) + EPS >= v for k, v in demand.items()
               if v > 0 and (k != "memory" or k in free))


def _shortfall(t: NodeType, demand: dict[str, float]) -> str:
    short = [f"{k} {t.resources.get(k, 0.0) / (GIB if k == 'memory' else 1):g} < "
             f"{v / (GIB if k == 'memory' else 1):g}"
             for k, v in demand.items() if v > 0 and t.resources.get(k, 0.0) + EPS < v
             and (k != "memory" or k in t.resources)]
    return f"{t.name}: " + ", ".join(short)


def pack_stage(stage: str, roles: list[Role], types: list[NodeType], max_workers: int
               ) -> tuple[StagePlan, list[Finding]]:
    """Place every instance of ``roles`` at once. Node types may exceed ``max_workers`` in the
    plan; that, like a role that fits no node type, is reported as an error."""
    plan, found = StagePlan(stage), []
    nodes: list[tuple[NodeType, dict[str, float]]] = []
    for t in types:  # the head and every type's min_workers are up anyway
        for _ in range(1 if t.head else t.min_workers):
            nodes.append((t, dict(t.resources)))
    workers = [t for t in types if not t.head]
    by_size = sorted(workers, key=lambda t: (t.resources.get("GPU", 0), t.resources.get("CPU", 0),
                                             t.resources.get("memory", 0)))
    instances = [(r, i) for r in roles for i in range(r.count)]
    instances.sort(key=lambda ri: (-ri[0].demand.get("GPU", 0), -ri[0].demand.get("CPU", 0),
                                   -ri[0].demand.get("memory", 0)))
    unplaceable: set[str] = set()
    for role, _ in instances:
        if role.name in unplaceable:
            continue
        slot = next((n for n in nodes if _fits(n[1], role.demand)), None)
        if slot is None:
            fresh = next((t for t in by_size if _fits(t.resources, role.demand)), None)
            if fresh is None:
                unplaceable.add(role.name)
                why = "; ".join(_shortfall(t, role.demand) for t in workers) or "no worker types"
                found.append(Finding("error", "placement", f"stage {stage}: {role.name} needs "
                                     f"{fmt_demand(role.demand)} per instance ({role.source}) and "
                                     f"fits no node type ({why}): lower those fields or add a "
                                     "node type that has it"))
                continue
            slot = (fresh, dict(fresh.resources))
            nodes.append(slot)
        for k, v in role.demand.items():
            if k != "memory" or k in slot[1]:
                slot[1][k] = slot[1].get(k, 0.0) - v
        where = plan.placed.setdefault(role.name, {})
        where[slot[0].name] = where.get(slot[0].name, 0) + 1
        plan.gpus += role.demand.get("GPU", 0.0)
    for t in types:
        plan.nodes[t.name] = sum(1 for n in nodes if n[0] is t)
    for t in workers:
        if plan.nodes[t.name] > t.max_workers:
            who = ", ".join(f"{role} × {where[t.name]}" for role, where in plan.placed.items()
                            if t.name in where)
            found.append(Finding("error", "placement", f"stage {stage} needs {plan.nodes[t.name]} "
                                 f"{t.name} nodes ({who}) but available_node_types.{t.name}."
                                 f"max_workers is {t.max_workers}: raise it to "
                                 f"{plan.nodes[t.name]} or lower the role counts"))
    total = sum(c for name, c in plan.nodes.items() if name in {t.name for t in workers})
    if total > max_workers:
        found.append(Finding("error", "placement", f"stage {stage} needs {total} worker nodes but "
                             f"max_workers is {max_workers}: raise max_workers to {total}"))
    return plan, found


def plan_stages(roles: list[Role], types: list[NodeType], max_workers: int
                ) -> tuple[list[StagePlan], list[Finding]]:
    plans, found = [], []
    for stage in STAGES:
        plan, f = pack_stage(stage, [r for r in roles if r.stage == stage and r.count > 0],
                             types, max_workers)
        plans.append(plan)
        found += f
        spot = sorted({t for role in ("pretrain_worker", "learner")
                       for t in plan.placed.get(role, {})
                       if any(n.name == t and n.spot for n in types)})
        if spot:
            found.append(Finding("warning", "placement", f"stage {stage}: training runs on spot "
                                 f"nodes ({', '.join(spot)}): a preemption costs the steps since "
                                 "the last checkpoint (resume with --resume)"))
    return plans, found

