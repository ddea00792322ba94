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
    if ray.is_initialized():
        return logs
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
    return logs


def _driver_logs_to(path: Path) -> None:
    """Send the driver's Ray library loggers to ``path`` instead of the console."""
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
