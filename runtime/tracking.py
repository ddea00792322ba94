"""The one MLflow layer of every stage (pretrain, dpo, eval, serve): store, experiment, runs,
params, metrics and artifacts.

One store per output folder: ``sqlite:///<out_dir>/mlflow.db`` with artifacts under
``<out_dir>/mlartifacts`` (``runs/`` by default), or whatever ``MLFLOW_TRACKING_URI`` says.
Experiment ``physgm``; one parent run per ``physgm run`` and a nested run per stage
(``start_run(cfg, "pretrain", parent_run_id=…)``); a stage resumed with ``--resume``
continues its own run (``run_id=…``). Params are the whole resolved config, flattened
(``sim.grid_res``, ``pretrain.lr``, …).

Everything logs by run id through a client (``log_metrics(cfg, run_id, …)``,
``log_artifacts``, ``log_dict``, ``log_text``), never through MLflow's process-global active
run, so Ray workers and actors log to the same run as the driver.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional, Union

from physgm.config import RunConfig, flatten

EXPERIMENT = "physgm"
STAGE_TAG = "physgm.stage"
NAME_TAG = "physgm.run_name"
# MLflow 3's UI opens an experiment in its model-training view (runs, metrics, models) with
# this tag; untagged, an experiment is shown as a GenAI one (traces, evaluations)
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow's limit on a param value (longer ones are cut, the key keeps the prefix)
_MAX_PARAM_CHARS = 6000


def _quiet() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri(cfg: RunConfig) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<out_dir>/mlflow.db`` (resolved to
    an absolute path, so Ray workers in other working directories hit the same store)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = (Path(cfg.out_dir) / "mlflow.db").resolve()
    return f"sqlite:///{db}"


def artifact_root(cfg: RunConfig) -> str:
    """Where new experiments keep artifacts: ``<out_dir>/mlartifacts`` as a file URI."""
    return (Path(cfg.out_dir) / "mlartifacts").resolve().as_uri()


def client(cfg_or_uri: Union[RunConfig, str]):
    """An ``MlflowClient`` on the config's store (or on a tracking URI)."""
    _quiet()
    from mlflow.tracking import MlflowClient

    uri = cfg_or_uri if isinstance(cfg_or_uri, str) else tracking_uri(cfg_or_uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(cfg: RunConfig) -> str:
    """Id of the ``physgm`` experiment of this store, created (with its artifact root under
    ``out_dir``) on first use."""
    c = client(cfg)
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        if exp.tags.get(KIND_TAG) != KIND:
            c.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
        return exp.experiment_id
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    try:
        return c.create_experiment(EXPERIMENT, artifact_location=artifact_root(cfg),
                                   tags={KIND_TAG: KIND})
    except Exception:  # another process created it in between
        exp = c.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id


def config_params(cfg: RunConfig) -> dict[str, str]:
    """The whole resolved config as MLflow params: flattened keys, JSON-ish string values."""
    out = {}
    for key, value in flatten(cfg).items():
        text = value if isinstance(value, str) else json.dumps(value)
        out[key] = text[:_MAX_PARAM_CHARS]
    return out


def log_config(run_id: str, cfg: RunConfig) -> list[str]:
    """Log the config as params of ``run_id``. Params the run already has are kept (MLflow
    params are immutable); returns the keys whose value differs from the run's."""
    from mlflow.entities import Param

    c = client(cfg)
    have = c.get_run(run_id).data.params
    params = config_params(cfg)
    new = [Param(k, v) for k, v in params.items() if k not in have]
    for i in range(0, len(new), 100):       # MLflow takes at most 100 params per batch
        c.log_batch(run_id, params=new[i:i + 100])
    return sorted(k for k, v in params.items() if k in have and have[k] != v)


def start_run(cfg: RunConfig, stage: str, parent_run_id: Optional[str] = None,
              run_id: Optional[str] = None):
    """Start (or with ``run_id`` resume) the MLflow run of one stage and log the config.

    Returns ``mlflow.ActiveRun`` (use as a context manager; it ends the run). Without
    ``run_id`` a new run named ``<cfg.name>/<stage>`` is created in experiment ``physgm``:
    nested under ``parent_run_id`` (or under the active run, if any)."""
    _quiet()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    exp = experiment_id(cfg)
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
    else:
        active = mlflow.active_run()
        nested = active is not None or parent_run_id is not None
        if active is not None and parent_run_id not in (None, active.info.run_id):
            raise ValueError(f"an MLflow run ({active.info.run_id}) is active; end it before "
                             f"starting a stage under parent {parent_run_id}")
        run = mlflow.start_run(experiment_id=exp, run_name=f"{cfg.name}/{stage}",
                               nested=nested, parent_run_id=parent_run_id,
                               tags={STAGE_TAG: stage, NAME_TAG: cfg.name})
    log_config(run.info.run_id, cfg)
    return run


def log_metrics(cfg_or_uri: Union[RunConfig, str], run_id: str, metrics: Mapping[str, float],
                step: int) -> None:
    """Log finite metrics at ``step`` in one batch (NaN/inf are skipped: MLflow rejects
    some of them and they would hide real values in plots)."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()
             if v is not None and math.isfinite(float(v))]
    if batch:
        client(cfg_or_uri).log_batch(run_id, metrics=batch)


def log_artifacts(cfg_or_uri: Union[RunConfig, str], run_id: str, local_dir: Union[str, Path],
                  artifact_path: Optional[str] = None) -> None:
    """Copy a local directory into the run's artifacts (under ``artifact_path``)."""
    client(cfg_or_uri).log_artifacts(run_id, str(local_dir), artifact_path)


def log_dict(cfg_or_uri: Union[RunConfig, str], run_id: str, data: dict, name: str) -> None:
    """``data`` as the JSON (or YAML, by ``name``'s suffix) artifact ``name`` of the run."""
    client(cfg_or_uri).log_dict(run_id, data, name)


def log_text(cfg_or_uri: Union[RunConfig, str], run_id: str, text: str, name: str) -> None:
    """``text`` as the artifact ``name`` of the run."""
    client(cfg_or_uri).log_text(run_id, text, name)


def end_run(cfg_or_uri: Union[RunConfig, str], run_id: str, status: str = "FINISHED") -> None:
    """Mark a run FINISHED / FAILED / KILLED (for runs not ended by their context manager)."""
    client(cfg_or_uri).set_terminated(run_id, status=status)
