"""``physgm study``: the w/o vs w/ DPO comparison over seeds, so that a figure comes with
how much it moves when only the luck of a run changes.

M data seeds × N DPO seeds. Per data seed, one run of the pipeline's data and pretrain
stages (its own training store and pretraining seed); per (data seed, DPO seed), one run
of its dpo and eval stages, starting from that pretraining (``dpo.init_checkpoint``) on
that store. Every run is scored on the same validation and final test stores (seeds of
the base config, synthesised once beside the training stores). Layout, for a study
``<s>`` (default ``<name>-study``):

    runs/<s>/                   study.json, study.md, config.yaml (the base config),
                                data<D>.zarr (training store of data seed D; with
                                data.pretrain_scenes also data<D>-pretrain.zarr), val.zarr,
                                test.zarr
    runs/<s>-data<D>/           data seed D: stages/{data,pretrain}.json, checkpoints/final
    runs/<s>-data<D>-dpo<S>/    DPO seed S on it: stages/{dpo,eval}.json, checkpoints/dpo,
                                eval tables, plots/

Resumable like ``physgm run``: finished stages of every sub-run are reused (a sub-run made
with other settings is refused, not silently reused). MLflow: a parent run ``<s>/study``
with the aggregated figures (``study/<figure>/{mean,lo,hi,min,max}``), each sub-run's
parent nested under it. Figures and intervals: ``pipeline.study_stats``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from physgm.cli_common import clean_json
from physgm.config import RunConfig
from physgm.config.loading import dump_config

# data seed i is data.seed + 100·i: never the validation (data.seed + 1) or final test
# (data.seed + 7919) seed, so no training store repeats a held-out one
DATA_SEED_STRIDE = 100
# the settings a data + pretrain sub-run depends on (a DPO sub-run: all but serve): a
# finished one is reused only if they match
_DATA_KEYS = ("seed", "sim", "render", "data", "model", "pretrain", "eval.val_scenes",
              "eval.test_scenes", "eval.val_seed", "eval.test_seed")


@dataclass
class StudyPlan:
    """The sub-runs of a study: ``data[i]`` (data + pretrain) and ``dpo[i]`` (its DPO runs)."""

    name: str
    base: RunConfig
    data: list[RunConfig] = field(default_factory=list)
    dpo: list[list[RunConfig]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return Path(self.base.out_dir) / self.name


def derive(cfg: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """``cfg`` with dotted ``changes`` ({"data.seed": 3}), validated again (ValueError)."""
    d = cfg.model_dump(mode="json")
    for key, value in changes.items():
        *path, last = key.split(".")
        node = d
        for part in path:
            node = node[part]
        node[last] = value
    return RunConfig.model_validate(d)


def plan_study(cfg: RunConfig, name: str, data_seeds: int, dpo_seeds: int) -> StudyPlan:
    """The sub-run configs (pure). Data seed i: ``data.seed + 100·i`` and pretraining seed
    ``seed + i``; DPO seed j: ``dpo.seed + j``; validation and final test seeds pinned to
    the base config's, so every run meets the same held-out scenes."""
    if data_seeds < 1 or dpo_seeds < 1:
        raise ValueError(f"--data-seeds and --dpo-seeds must be ≥ 1, got {data_seeds} and "
                         f"{dpo_seeds}")
    if not cfg.eval.test_scenes:
        raise ValueError("physgm study scores every run on one final test store: set "
                         "eval.test_scenes (e.g. --set eval.test_scenes=128)")
    val_seed, test_seed = cfg.eval.seeds(cfg.data.seed)
    root = Path(cfg.out_dir) / name
    plan = StudyPlan(name=name, base=derive(cfg, {"name": name}))
    for i in range(data_seeds):
        ds = cfg.data.seed + DATA_SEED_STRIDE * i
        # each data seed its own pretraining store too (data<D>-pretrain.zarr, the seed
        # data.pretrain_seed + 100·i or data<D>'s default)
        pre_seed = cfg.data.pretrain_seed
        data_cfg = derive(cfg, {"name": f"{name}-data{ds}", "seed": cfg.seed + i,
                                "data.seed": ds, "data.path": str(root / f"data{ds}.zarr"),
                                "data.pretrain_path": None,
                                "data.pretrain_seed": None if pre_seed is None
                                else pre_seed + DATA_SEED_STRIDE * i,
                                "eval.val_seed": val_seed, "eval.test_seed": test_seed})
        final = data_cfg.run_dir / "checkpoints" / "final"
        plan.data.append(data_cfg)
        plan.dpo.append([derive(data_cfg, {"name": f"{name}-data{ds}-dpo{cfg.dpo.seed + j}",
                                           "dpo.seed": cfg.dpo.seed + j,
                                           "dpo.init_checkpoint": str(final)})
                         for j in range(dpo_seeds)])
    return plan


def _settings(cfg: RunConfig, keys: tuple[str, ...]) -> dict:
    """{dotted key: value} of ``cfg`` for ``keys`` (a key may name a whole section)."""
    out = {}
    for key in keys:
        node: Any = cfg.model_dump(mode="json")
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def check_reuse(cfg: RunConfig, keys: tuple[str, ...]) -> None:
    """Record the settings ``keys`` of a sub-run (runs/<sub>/study_config.json); refuse one
    whose recorded settings differ (its finished stages would be reused with the wrong
    ones)."""
    mine = _settings(cfg, keys)
    path = cfg.run_dir / "study_config.json"
    if path.is_file():
        theirs = json.loads(path.read_text())
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError(f"{cfg.run_dir} was made with other settings ({', '.join(diff)}): "
                             "give the study another --name, or remove that folder to redo it")
        return
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mine, indent=1))


def study_parent(plan: StudyPlan, data_seeds: list[int], dpo_seeds: list[int]) -> str:
    """The study's MLflow parent run (created once; its id in runs/<s>/mlflow_study.json)."""
    from runtime import tracking

    marker = plan.root / "mlflow_study.json"
    if marker.is_file():
        return json.loads(marker.read_text())["run_id"]
    cfg = plan.base
    run = tracking.client(cfg).create_run(
        tracking.experiment_id(cfg), run_name=f"{plan.name}/study",
        tags={tracking.STAGE_TAG: "study", tracking.NAME_TAG: plan.name})
    tracking.log_config(run.info.run_id, cfg)
    tracking.client(cfg).log_param(run.info.run_id, "study.data_seeds", json.dumps(data_seeds))
    tracking.client(cfg).log_param(run.info.run_id, "study.dpo_seeds", json.dumps(dpo_seeds))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_id": run.info.run_id}))
    return run.info.run_id


def _sub_run(cfg: RunConfig, runners: dict, study_run: str, say: Callable) -> dict:
    """One sub-run through ``run_pipeline`` (finished stages reused), its MLflow parent
    nested under the study's."""
    from pipeline.run import parent_run, run_pipeline
    from runtime import tracking

    tracking.client(cfg).set_tag(parent_run(cfg), "mlflow.parentRunId", study_run)
    return run_pipeline(cfg, say=say, runners=runners)


def run_study(cfg: RunConfig, name: str | None = None, data_seeds: int = 2, dpo_seeds: int = 3,
              say: Callable = print) -> dict:
    """Run (or resume) the study; returns what runs/<s>/study.json holds."""
    from pipeline.run import held_out_config, stage_data, stage_eval, stage_pretrain, train_dpo
    from pipeline.study_stats import INTERVAL, aggregate, format_study, headline_figures
    from pipeline.study_stats import study_metrics
    from runtime import tracking
    from runtime.ray_cluster import ensure_ray, log_dir

    t0 = time.perf_counter()
    plan = plan_study(cfg, name or f"{cfg.name}-study", data_seeds, dpo_seeds)
    every = tuple(k for k in RunConfig.model_fields if k != "serve")
    for sub in plan.data:
        check_reuse(sub, _DATA_KEYS)
    for sub in (s for group in plan.dpo for s in group):
        check_reuse(sub, every)
    plan.root.mkdir(parents=True, exist_ok=True)
    (plan.root / "config.yaml").write_text(dump_config(plan.base))
    ensure_ray(plan.base, log_dir(plan.base))
    seeds = ([c.data.seed for c in plan.data], [c.dpo.seed for c in plan.dpo[0]])
    study_run = study_parent(plan, *seeds)
    runs = []
    for data_cfg, group in zip(plan.data, plan.dpo):
        say(f"{data_cfg.name}: data seed {data_cfg.data.seed}, pretraining seed {data_cfg.seed}")
        _sub_run(data_cfg, {"data": stage_data, "pretrain": stage_pretrain}, study_run, say)
        for dpo_cfg in group:
            say(f"{dpo_cfg.name}: DPO seed {dpo_cfg.dpo.seed}")
            out = _sub_run(dpo_cfg, {"dpo": train_dpo, "eval": stage_eval}, study_run, say)
            summary = out["eval"]["test"]["summary"]
            runs.append({"name": dpo_cfg.name, "data_seed": data_cfg.data.seed,
                         "dpo_seed": dpo_cfg.dpo.seed, "n_scenes": summary["n_scenes"],
                         "figures": headline_figures(summary)})
    study = {"name": plan.name, "data_seeds": seeds[0], "dpo_seeds": seeds[1],
             "interval": INTERVAL, "test_scenes": runs[0]["n_scenes"],
             "test_seed": held_out_config(plan.data[0], "test").data.seed, "runs": runs,
             "figures": aggregate(runs), "mlflow_run_id": study_run}
    table = format_study(study)
    say(table)
    study["wall_s"] = round(time.perf_counter() - t0, 1)
    tracking.log_metrics(plan.base, study_run, study_metrics(study["figures"]), 0)
    study = clean_json(study)  # NaN (a figure no run has) → null: valid JSON
    (plan.root / "study.json").write_text(json.dumps(study, indent=1))
    (plan.root / "study.md").write_text(table + "\n")
    tracking.log_dict(plan.base, study_run, study, "study.json")
    tracking.log_text(plan.base, study_run, table + "\n", "study.md")
    tracking.end_run(plan.base, study_run)
    return study
