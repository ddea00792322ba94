"""The one Ray bootstrap of every stage: connect to the cluster of ``RAY_ADDRESS`` (a
``ray job submit`` entrypoint has it set) or start a private local instance.

Locally the logical CPU count is at least what the DPO roles reserve, so that a 2-core
machine can host 2 sim actors + the learner + a reward replica (they take turns on the
cores). With ``logs`` (a folder) the console stays quiet: the workers' output is not
forwarded to the driver, the driver's own Ray/Serve/Train loggers write to
``logs/driver.log``, and ``logs/ray`` links to the session's log folder (every worker's
stdout/stderr).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import ray

from physgm.config import RunConfig

# loggers that print INFO lines and warnings on the driver's console: Ray's libraries, and
# MLflow's store migrations (alembic) on a new sqlite store
QUIET_LOGGERS = ("ray", "ray.serve", "ray.train", "ray.tune", "ray.data", "ray.util",
                 "mlflow", "alembic")


_LOGS: Optional[Path] = None  # the log folder of this process's Ray (None: the console)


def log_dir(cfg: RunConfig) -> Path:
    """Where a run's Ray, Serve and Ray Train logs go: ``runs/<name>/logs``."""
    return cfg.run_dir / "logs"


def cpus_needed(cfg: RunConfig) -> float:
    """Logical CPUs the DPO roles reserve at once: actors, learner, reward replicas."""
    return (cfg.dpo.n_actors * cfg.dpo.actor_cpus + 1.0
            + cfg.reward.replicas * cfg.reward.num_cpus)


def worker_env() -> dict[str, str]:
    """Environment every Ray worker gets (the driver's is not copied to other nodes)."""
    return {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}


def ensure_ray(cfg: Optional[RunConfig] = None, logs: Optional[Path] = None) -> Optional[Path]:
    """Initialise Ray once per process; returns the folder the logs go to (None: console).

    ``RAY_ADDRESS`` set: connect to that cluster. Otherwise a fresh local instance
    (``address="local"``: never a stray cluster on this host), no dashboard."""
    global _LOGS
    if ray.is_initialized():
        return _LOGS  # where this process's Ray sends its logs (set by the first call)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = logs is not None
    if quiet:
        _driver_logs_to(Path(logs) / "driver.log")
    common = dict(runtime_env={"env_vars": worker_env()}, log_to_driver=not quiet,
                  logging_level=logging.WARNING if quiet else logging.INFO)
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**common)
    else:
        cpus = max(os.cpu_count() or 1, int(cpus_needed(cfg) + 0.999) if cfg else 0)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **common)
    if quiet:
        _link_session_logs(Path(logs))
    _LOGS = logs
    return logs


def _driver_logs_to(path: Path) -> None:
    """Send the driver's Ray library loggers to ``path`` instead of the console (MLflow and
    Ray Serve are imported first: each installs its own console handler on import)."""
    import mlflow  # noqa: F401
    import ray.serve  # noqa: F401

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False


def _link_session_logs(log_dir: Path) -> None:
    """``log_dir/ray`` → this Ray session's log folder (workers' stdout/stderr, raylet…)."""
    try:
        session = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    except AttributeError:  # a client connection: the logs live on the head node
        return
    link = log_dir / "ray"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(session, target_is_directory=True)


class ClusterTooSmall(ValueError):
    """The connected cluster cannot host a stage's roles; the message says which settings
    to change (a ValueError: the settings do not fit this cluster)."""


def cluster_nodes() -> list[dict]:
    """Total resources of each alive node of the connected cluster."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def autoscaler_max_resources() -> Optional[dict]:
    """The most each resource could reach on an autoscaling cluster (node types × their max
    counts, from the autoscaler's cluster config); None on a fixed cluster."""
    try:
        from ray._private.state import state

        return state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - a private API: a fixed cluster is the safe answer
        return None


def check_stage_fits(cfg: RunConfig, stage: str, say=print) -> None:
    """Before a stage starts its roles: raise ``ClusterTooSmall`` if the cluster cannot host
    them all at once (saying what is missing and which settings to change); on an
    autoscaling cluster whose node types could, say what it will wait for instead."""
    from runtime.capacity import pack, shortfall_message, stage_demands, total

    demands = stage_demands(cfg, stage)
    nodes = cluster_nodes()
    unplaced = pack(demands, nodes)
    if not unplaced:
        return
    message = shortfall_message(stage, demands, nodes, unplaced)
    ceiling = autoscaler_max_resources()
    if ceiling and all(ceiling.get(k, 0) + 1e-9 >= v for k, v in total(demands).items()):
        say(f"waiting for the autoscaler: {message.splitlines()[0]}; its node types can "
            "provide it, so the roles stay pending until new nodes join")
        return
    raise ClusterTooSmall(message)


def wait_ready(pending: dict, what: str, warn_after_s: float = 60.0, say=print) -> list:
    """``ray.get`` of ``pending`` ({name: ObjectRef}), saying every ``warn_after_s`` seconds
    which are still not ready and what the cluster is short of (actors wait for resources
    without a word otherwise). Returns the values in the order of ``pending``."""
    import time

    refs = dict(pending)
    left = list(refs.values())
    start = last = time.monotonic()
    while left:
        _, left = ray.wait(left, num_returns=len(left), timeout=min(5.0, warn_after_s))
        now = time.monotonic()
        if left and now - last >= warn_after_s:
            names = [n for n, r in refs.items() if r in left]
            avail = ray.available_resources()
            say(f"still waiting after {now - start:.0f} s for {what}: {', '.join(names)} "
                f"(free in the cluster: CPU {avail.get('CPU', 0):g}, GPU {avail.get('GPU', 0):g}"
                "; `ray status` lists the pending demands)")
            last = now
    return ray.get(list(refs.values()))


def wait_serve_app(name: str, what: str, warn_after_s: float = 60.0, say=print,
                   timeout_s: float = 3600.0) -> None:
    """Wait until the Serve application ``name`` is RUNNING (its replicas started), saying
    every ``warn_after_s`` seconds what it still waits for; raise if it fails to deploy."""
    import time

    from ray import serve

    start = last = time.monotonic()
    while True:
        app = serve.status().applications.get(name)
        status = str(getattr(app, "status", "")).rsplit(".", 1)[-1]
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"{what} failed to deploy: {getattr(app, 'message', '')}")
        now = time.monotonic()
        if now - start > timeout_s:
            raise TimeoutError(f"{what} did not start within {timeout_s:.0f} s")
        if now - last >= warn_after_s:
            avail = ray.available_resources()
            say(f"still waiting after {now - start:.0f} s for {what} ({status or 'not deployed'};"
                f" free in the cluster: CPU {avail.get('CPU', 0):g}, GPU "
                f"{avail.get('GPU', 0):g}; `ray status` lists the pending demands)")
            last = now
        time.sleep(0.5)
