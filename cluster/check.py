"""``physgm cluster check``: validate a Ray cluster launcher YAML offline, and check that
every role of a run config fits the cluster's node types.

1. Ray's own validation: ``prepare_config`` (merge with the provider's defaults, as ``ray
   up`` does) and ``validate_config`` (``ray/autoscaler/ray-schema.json`` plus Ray's rules).
   ``ray up`` itself needs cloud credentials; this needs none.
2. Node types: CPU, GPU, memory and custom resources, against the EC2 table in
   ``cluster/instances.py`` (what Ray's AWS provider would detect).
3. Placement (``cluster/placement.py``): each stage's roles packed onto nodes within
   ``min_workers``/``max_workers``.
4. Exposure and setup: dashboard and MLflow bound to loopback, no public port but ssh, file
   mounts present, the commit pinned, checkpoint names matching what the setup downloads.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from cluster.instances import GIB, lookup
from cluster.placement import (ROLE_RESOURCE, Finding, NodeType, Role, StagePlan, fmt_demand,
                               plan_stages, role_demands)
from physgm.config import RunConfig

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ENV_FILE = "cluster.env"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# Files cluster/setup.sh always downloads into checkpoints/ (the others are named in cluster.env).
FIXED_DOWNLOADS = {"lpips_vgg.pth", "vgg16-397923af.pth"}


class ClusterCheckError(ValueError):
    """The cluster file cannot be read at all (missing, not YAML, not a mapping)."""


@dataclass
class CheckReport:
    cluster_file: str
    config_file: Optional[str]
    findings: list[Finding] = field(default_factory=list)
    node_types: list[NodeType] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)
    plans: list[StagePlan] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def ok(self, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.warnings)

    def to_dict(self) -> dict:
        return {"cluster_file": self.cluster_file, "config_file": self.config_file,
                "ok": self.ok(), "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [asdict(f) for f in self.findings],
                "node_types": [asdict(n) for n in self.node_types],
                "roles": [asdict(r) for r in self.roles],
                "plans": [asdict(p) for p in self.plans]}


def load_cluster_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ClusterCheckError(f"cluster file not found: {p} (try cluster/ray_cluster.yaml)")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ClusterCheckError(f"{p} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ClusterCheckError(f"{p} must hold a mapping (cluster_name:, provider:, ...)")
    return raw


def ray_validate(raw: dict) -> tuple[Optional[dict], list[Finding]]:
    """Ray's ``prepare_config`` + ``validate_config``: (prepared config or None, findings)."""
    import jsonschema
    import ray
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    try:
        jsonschema.validate(raw, schema)  # the file as written (names a missing field)
        prepared = prepare_config(copy.deepcopy(raw))
        validate_config(prepared)  # merged with the provider's defaults, as `ray up` sees it
    except jsonschema.ValidationError as err:
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        return None, [Finding("error", "schema", f"{where}: {err.message} (Ray {ray.__version__} "
                              "cluster schema, ray/autoscaler/ray-schema.json)")]
    except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as err:
        return None, [Finding("error", "schema", f"Ray rejects the config: "
                              f"{type(err).__name__}: {err}")]
    return prepared, [Finding("info", "schema", f"valid for the Ray {ray.__version__} cluster "
                              "launcher (prepare_config + validate_config)")]


def node_types(prepared: dict) -> tuple[list[NodeType], list[Finding]]:
    """Node types with their resources completed from the EC2 table, as Ray's AWS provider
    would: CPU/GPU/memory filled in where undeclared, and declarations beyond the hardware
    refused."""
    out, found = [], []
    head_name = prepared["head_node_type"]
    for name, nt in prepared["available_node_types"].items():
        conf = nt.get("node_config", {})
        itype = conf.get("InstanceType")
        res = {k: float(v) for k, v in (nt.get("resources") or {}).items()}
        inst = lookup(itype)
        where = f"available_node_types.{name}"
        if inst is None:
            found.append(Finding("warning", "node_type", f"{where}: instance type {itype!r} is not in "
                                 "cluster/instances.py: CPU/GPU taken as declared, memory unchecked"))
            if "CPU" not in res:
                found.append(Finding("error", "node_type", f"{where}: declare resources.CPU (and GPU) "
                                     f"for the unknown instance type {itype!r}"))
        else:
            detected = {"CPU": inst.vcpus, "GPU": inst.gpus, "memory": inst.ray_memory_bytes}
            for key, have in detected.items():
                if key not in res:
                    res[key] = float(have)
                elif res[key] > have:
                    unit = f"{have / GIB:.0f} GiB" if key == "memory" else str(have)
                    found.append(Finding("error", "node_type", f"{where}: resources.{key} = "
                                         f"{res[key]:g} but {itype} has {unit}: lower it"))
            if inst.gpus and res.get("GPU", 0) < inst.gpus:
                found.append(Finding("warning", "node_type", f"{where}: declares GPU "
                                     f"{res.get('GPU', 0):g} of {itype}'s {inst.gpus}: the rest stay idle"))
        is_head = name == head_name
        out.append(NodeType(
            name=name, instance_type=itype, resources=res, head=is_head,
            min_workers=0 if is_head else int(nt.get("min_workers", 0)),
            max_workers=0 if is_head else int(nt.get("max_workers", prepared["max_workers"])),
            spot=(conf.get("InstanceMarketOptions") or {}).get("MarketType") == "spot",
            gpu_model=inst.gpu_model if inst else ""))
    return out, found


def _commands(prepared: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands",
            "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    cmds = [c for k in keys for c in prepared.get(k) or []]
    for nt in prepared["available_node_types"].values():
        cmds += list(nt.get("initialization_commands") or []) + list(nt.get("worker_setup_commands") or [])
    return [str(c) for c in cmds]


def exposure_findings(prepared: dict, env: dict[str, str]) -> list[Finding]:
    """Nothing but ssh may listen on a public address."""
    found = []
    for cmd in _commands(prepared):
        for host in re.findall(r"--dashboard-host[= ]+(\S+)", cmd):
            if host.strip("'\"") not in LOOPBACK:
                found.append(Finding("error", "security", f"the Ray dashboard binds to {host} "
                                     "(public): use --dashboard-host=127.0.0.1 and reach it "
                                     "with `ray dashboard CLUSTER.yaml`"))
        if re.search(r"(^|[\s=:'\"])(0\.0\.0\.0|::)([\s:'\"]|$)", cmd) and "--dashboard-host" not in cmd:
            found.append(Finding("error", "security", f"a command binds to all interfaces: "
                                 f"{cmd.strip()[:120]!r}: bind to 127.0.0.1 and port-forward"))
    if env.get("PHYSGM_MLFLOW_HOST", "127.0.0.1") in {"0.0.0.0", "::"}:
        found.append(Finding("error", "security", "PHYSGM_MLFLOW_HOST in cluster.env binds MLflow "
                             "to all interfaces: use 127.0.0.1 (or the head's private IP)"))
    sg = (prepared.get("provider") or {}).get("security_group") or {}
    for rule in sg.get("IpPermissions") or []:
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges") or []) or \
            any(r.get("CidrIpv6") == "::/0" for r in rule.get("Ipv6Ranges") or [])
        ports = (rule.get("FromPort"), rule.get("ToPort"))
        if public and ports != (22, 22):
            found.append(Finding("error", "security", f"provider.security_group opens ports "
                                 f"{ports[0]}–{ports[1]} to the internet: open only ssh (22) and "
                                 "port-forward the dashboard, MLflow and Serve"))
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a shell env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return env


def mount_findings(prepared: dict, base: Path) -> tuple[list[Finding], dict[str, str]]:
    """File mounts must exist locally (``ray up`` stops otherwise); the env file's settings."""
    found, env = [], {}
    for remote, local in (prepared.get("file_mounts") or {}).items():
        p = Path(str(local)).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.exists():
            hint = ("create it with `ray get-auth-token --generate`" if p.name == "auth_token"
                    else "create it, or remove the mount")
            found.append(Finding("warning", "setup", f"file_mounts {remote}: {local} does not exist "
                                 f"here, and `ray up` stops at a missing mount: {hint}"))
            continue
        env_path = p / ENV_FILE if p.is_dir() else p
        if env_path.name == ENV_FILE and env_path.is_file():
            env = read_env_file(env_path)
    return found, env


def setup_findings(env: dict[str, str], cfg: Optional[RunConfig]) -> list[Finding]:
    """The commit is pinned, and the config names the checkpoints setup.sh downloads."""
    if not env:
        return [Finding("warning", "setup", f"no {ENV_FILE} among the file mounts: the commit "
                        "pin and checkpoint names cannot be checked")]
    found = []
    if not SHA_RE.match(env.get("PHYSGM_COMMIT", "")):
        found.append(Finding("warning", "setup", "PHYSGM_COMMIT in cluster.env is not a full "
                             "40-character SHA: setup.sh stops until it is (git rev-parse HEAD)"))
    if not env.get("PHYSGM_REPO"):
        found.append(Finding("warning", "setup", "PHYSGM_REPO in cluster.env is empty: set the URL "
                             "the nodes clone (or a git bundle, see cluster.env)"))
    if cfg is None:
        return found
    downloads = FIXED_DOWNLOADS | {env.get(k, "") for k in (
        "PHYSGM_SAM2_CHECKPOINT", "PHYSGM_COTRACKER_CHECKPOINT", "PHYSGM_DINOV3_FILE")}
    wanted = []
    if cfg.reward.backend == "sam2_cotracker" and not cfg.reward.random_init:
        wanted += [("reward.sam2_checkpoint", cfg.reward.sam2_checkpoint),
                   ("reward.cotracker_checkpoint", cfg.reward.cotracker_checkpoint)]
    if cfg.model.backbone == "dinov3":
        wanted.append(("model.backbone_checkpoint", cfg.model.backbone_checkpoint))
        if not env.get("PHYSGM_DINOV3_URI"):
            found.append(Finding("warning", "setup", "PHYSGM_DINOV3_URI in cluster.env is empty "
                                 "but model.backbone is dinov3: give the gated weights' location"))
    wanted += [("model.lpips_checkpoint", cfg.model.lpips_checkpoint),
               ("model.lpips_vgg_checkpoint", cfg.model.lpips_vgg_checkpoint)]
    for key, value in wanted:
        if value is None:
            if not key.startswith("model.lpips"):
                found.append(Finding("error", "config", f"{key} is not set: point it at "
                                     "checkpoints/<file> (cluster/setup.sh downloads it)"))
            continue
        p = Path(value)
        if p.parent != Path("checkpoints") or p.name not in downloads:
            found.append(Finding("error", "config", f"{key} = {value}, but cluster/setup.sh puts "
                                 f"{', '.join(sorted(d for d in downloads if d))} in checkpoints/: "
                                 "use one of those, or change cluster.env"))
    return found


def memory_table(prepared: dict) -> tuple[dict[str, float], list[Finding]]:
    raw = ((prepared.get("metadata") or {}).get("physgm") or {}).get("memory_gib") or {}
    table, found = {}, []
    for role, gib in raw.items():
        if role not in ROLE_RESOURCE:
            found.append(Finding("warning", "config", f"metadata.physgm.memory_gib.{role}: unknown "
                                 f"role (roles: {', '.join(ROLE_RESOURCE)})"))
        elif not isinstance(gib, (int, float)) or gib < 0:
            found.append(Finding("error", "config", f"metadata.physgm.memory_gib.{role} must be "
                                 f"a number of GiB ≥ 0, got {gib!r}"))
        else:
            table[role] = float(gib)
    return table, found


def check_cluster(cluster_file: str | Path, cfg: Optional[RunConfig] = None,
                  config_file: Optional[str] = None, base: Optional[Path] = None) -> CheckReport:
    """Run every check; ``cfg`` None checks the cluster file alone. Local file-mount paths
    resolve from ``base`` (default: the current directory, as for ``ray up``)."""
    report = CheckReport(str(cluster_file), config_file)
    prepared, found = ray_validate(load_cluster_yaml(cluster_file))
    report.findings += found
    if prepared is None:
        return report
    report.node_types, found = node_types(prepared)
    report.findings += found
    mounts, env = mount_findings(prepared, Path.cwd() if base is None else base)
    report.findings += mounts + exposure_findings(prepared, env) + setup_findings(env, cfg)
    if cfg is not None:
        memory, found = memory_table(prepared)
        report.findings += found
        report.roles, found = role_demands(cfg, report.node_types, memory)
        report.findings += found
        report.plans, found = plan_stages(report.roles, report.node_types, prepared["max_workers"])
        report.findings += found
    return report


def format_report(report: CheckReport, strict: bool = False) -> str:
    lines = [f"cluster: {report.cluster_file}" + (f"   config: {report.config_file}"
                                                   if report.config_file else "")]
    if report.node_types:
        lines.append("node types:")
        for n in report.node_types:
            gpu = f" ({n.gpu_model})" if n.gpu_model and n.resources.get("GPU") else ""
            lines.append(f"  {n.name:<12} {n.instance_type or '?':<14} {fmt_demand(n.resources)}"
                         f"{gpu}  workers {n.min_workers}–{n.max_workers}"
                         f"{'  spot' if n.spot else ''}{'  (head)' if n.head else ''}")
    if report.plans:
        lines.append("stages:")
        for p in report.plans:
            nodes = ", ".join(f"{c} × {t}" for t, c in p.nodes.items() if c)
            lines.append(f"  {p.stage:<9} {p.gpus:g} GPUs on {nodes}")
            for role, where in p.placed.items():
                lines.append(f"    {role:<16} → " + ", ".join(f"{c} on {t}" for t, c in where.items()))
    shown = [f for f in report.findings if f.level != "info"] or []
    if shown:
        lines.append("findings:")
        lines += [f"  {f.level:<7} [{f.topic}] {f.message}" for f in shown]
    ok = report.ok(strict)
    lines.append("OK" if ok else f"FAILED: {len(report.errors)} error(s)"
                 + (f", {len(report.warnings)} warning(s) (--strict)" if strict else ""))
    return "\n".join(lines)
