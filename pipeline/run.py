"""``physgm run``: the whole pipeline on one machine, stage by stage.

    synth data (DPO store, image-only pretraining store, validation and test stores)
    → pretrain (DeepSpeed on Ray Train) → DPO (actors, reward, learner)
    → eval table (w/o vs w/ DPO) → Ray Serve up → one prediction → how to look further

Everything goes under ``runs/<name>/``. Each finished stage leaves
``runs/<name>/stages/<stage>.json`` (its summary); a second ``physgm run`` skips finished
stages and resumes an interrupted one (pretraining and DPO from their checkpoints). One
MLflow parent run per ``physgm run``; each stage is a nested run under it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from physgm.config import RunConfig

STAGES = ("data", "pretrain", "dpo", "eval", "serve")


def _stage_file(cfg: RunConfig, stage: str) -> Path:
    return cfg.run_dir / "stages" / f"{stage}.json"


def _done(cfg: RunConfig, stage: str) -> dict | None:
    path = _stage_file(cfg, stage)
    return json.loads(path.read_text()) if path.is_file() else None


def _finish(cfg: RunConfig, stage: str, summary: dict) -> dict:
    path = _stage_file(cfg, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)
    return summary


def parent_run(cfg: RunConfig) -> str:
    """The MLflow parent run of this pipeline (created once, reused by a second run)."""
    from runtime import tracking

    marker = cfg.run_dir / "stages" / "mlflow_parent.json"
    if marker.is_file():
        return json.loads(marker.read_text())["run_id"]
    client = tracking.client(cfg)
    run = client.create_run(tracking.experiment_id(cfg), run_name=f"{cfg.name}/run",
                            tags={tracking.STAGE_TAG: "run", tracking.NAME_TAG: cfg.name})
    tracking.log_config(run.info.run_id, cfg)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_id": run.info.run_id}))
    return run.info.run_id


def _synthesize(cfg: RunConfig, what: str, say: Callable, pool=None) -> dict:
    from physgm.data.build import synthesize

    report = synthesize(cfg.data.path, cfg, pool=pool, on_progress=lambda d, t: say(
        f"  {what}: scenes {d}/{t}", transient=True))
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} {what} scenes failed: {report.failed}")
    return report.summary()


def synthesize_held_out(cfg: RunConfig, say: Callable, pool=None) -> dict:
    """The validation and final test stores of ``eval`` (those with scenes)."""
    out = {}
    for which in ("val", "test"):
        held = held_out_config(cfg, which)
        if held is not None:
            out[which] = _synthesize(held, f"{which} (seed {held.data.seed})", say, pool)
    return out


def synthesize_pretrain(cfg: RunConfig, say: Callable, pool=None) -> dict:
    """The image-only pretraining store (``data.pretrain_scenes`` > 0), else nothing."""
    from physgm.config import pretrain_store_config

    pre = pretrain_store_config(cfg)
    if pre is None:
        return {}
    return {"pretrain": _synthesize(pre, f"pretraining, image-only (seed {pre.data.seed})",
                                    say, pool)}


def stage_data(cfg: RunConfig, parent: str, say: Callable) -> dict:
    """The DPO store (data.path), the image-only pretraining store (``data.pretrain_scenes``)
    and the validation and final test stores (``eval``)."""
    if cfg.data.image_only:
        raise ValueError("data.image_only would make data.path (the DPO store) image-only, but "
                         "DPO and evaluation need GT videos: to pretrain on image-only scenes "
                         "set data.pretrain_scenes instead")
    from contextlib import nullcontext

    from physgm.data.build import worker_pool

    workers = cfg.data.workers  # one pool start-up for the four stores (1: in-process)
    with worker_pool(workers) if workers > 1 else nullcontext() as pool:
        return {"train": _synthesize(cfg, "training", say, pool),
                **synthesize_pretrain(cfg, say, pool), **synthesize_held_out(cfg, say, pool)}


def stage_pretrain(cfg: RunConfig, parent: str, say: Callable) -> dict:
    """Pretraining; first completes the pretraining store (resumable: nothing to do when
    the data stage made it, the missing scenes when data.pretrain_scenes grew since)."""
    from pretrain.train import run_pretrain

    made = synthesize_pretrain(cfg, say).get("pretrain")
    summary = run_pretrain(cfg, resume=True, parent_run_id=parent)
    if made and made["written"]:
        summary["pretrain_store"] = made
    return summary


def register_models(cfg: RunConfig, pretrain_run_id: str | None, dpo_run_id: str) -> dict:
    """Log the pretrained and the DPO checkpoints as MLflow models (in their stages' runs)
    and register both as ``physgm``: alias ``pretrained`` and ``champion`` (the DPO one)."""
    from learner.dpo import dpo_checkpoint_path, pretrained_path
    from serving.mlflow_model import log_physgm_model, register

    out = {}
    for alias, run_id, ckpt in (("pretrained", pretrain_run_id, pretrained_path(cfg, None)),
                                ("champion", dpo_run_id, dpo_checkpoint_path(cfg))):
        if run_id is None:
            continue
        uri = log_physgm_model(cfg, run_id, ckpt)
        out[alias] = {"model_uri": uri, "version": register(cfg, uri, alias)}
    return out


def train_dpo(cfg: RunConfig, parent: str, say: Callable) -> dict:
    """DPO from ``dpo.init_checkpoint`` (or the run's pretraining), resumed if interrupted."""
    from learner.dpo import run_dpo
    from learner.state import has_checkpoint

    resume = has_checkpoint(cfg.run_dir)
    if resume:
        say("  resuming DPO from its checkpoint")
    summary = run_dpo(cfg, resume=resume, parent_run_id=parent)
    summary.pop("coverage", None)
    if summary.get("loss_trend"):
        from learner.eval_stats import format_loss_trend

        say("  " + format_loss_trend(summary["loss_trend"]))
    return summary


def stage_dpo(cfg: RunConfig, parent: str, say: Callable) -> dict:
    """``train_dpo``, then both models registered in MLflow (the one the run serves)."""
    summary = train_dpo(cfg, parent, say)
    pretrained_run = (_done(cfg, "pretrain") or {}).get("mlflow_run_id")
    summary["registered"] = register_models(cfg, pretrained_run, summary["mlflow_run_id"])
    say(f"  registered MLflow model physgm: champion v{summary['registered']['champion']['version']}"
        + (f", pretrained v{summary['registered']['pretrained']['version']}"
           if "pretrained" in summary["registered"] else ""))
    return summary


def held_out_config(cfg: RunConfig, which: str) -> RunConfig | None:
    """The config whose ``data`` is the validation (``which="val"``) or final test store:
    ``eval.val_scenes`` / ``eval.test_scenes`` scenes made like the training data with their
    own seed (``eval.seeds``), in ``val.zarr`` / ``test.zarr`` beside ``data.path`` (so runs
    that share a training store share its held-out stores: ``physgm study``); None when
    that count is 0."""
    n = cfg.eval.val_scenes if which == "val" else cfg.eval.test_scenes
    if not n:
        return None
    seed = cfg.eval.seeds(cfg.data.seed)[0 if which == "val" else 1]
    path = Path(cfg.data.path).parent / f"{which}.zarr"
    data = cfg.data.model_copy(update={"seed": seed, "n_scenes": n, "val_fraction": 0.0,
                                       "test_fraction": 0.0, "path": str(path),
                                       "image_only": False, "pretrain_scenes": 0,
                                       "pretrain_path": None,
                                       "pretrain_seed": None})
    # a held-out store has no held-out stores of its own (and its seed is now data.seed)
    ev = cfg.eval.model_copy(update={"val_scenes": 0, "test_scenes": 0})
    return RunConfig.model_validate({**cfg.model_dump(), "data": data.model_dump(),
                                     "eval": ev.model_dump()})


def _compare(cfg: RunConfig, split: str, n_scenes: int | None, key: str, prefix: str, run,
             say: Callable) -> tuple[dict, list[dict]]:
    """w/o vs w/ DPO on ``split`` of ``cfg.data.path``: the table printed and written to
    runs/<name>/<key>_table.txt, figures logged to MLflow under ``prefix`` (eval, eval/val)
    → ({"summary", "table"}, per-scene rows)."""
    from learner.dpo import dpo_checkpoint_path, pretrained_path
    from learner.eval_summary import format_table, mlflow_metrics
    from learner.evaluate import run_comparison
    from runtime import tracking

    summary, rows = run_comparison(
        cfg, str(pretrained_path(cfg, None)), str(dpo_checkpoint_path(cfg)), n_scenes=n_scenes,
        split=split, on_progress=lambda d, t: say(f"  scenes evaluated {d}/{t}", transient=True),
        tie_eps=cfg.eval.tie_eps)
    table = format_table(summary)
    say(table)
    run_id = run.info.run_id
    tracking.log_metrics(cfg, run_id, mlflow_metrics(summary, prefix), 0)
    tracking.log_text(cfg, run_id, table, f"{key}_table.txt")
    tracking.log_dict(cfg, run_id, {"summary": summary, "scenes": rows}, f"{key}_scenes.json")
    (cfg.run_dir / f"{key}_table.txt").write_text(table + "\n")
    return {"summary": summary, "table": table}, rows


def stage_eval(cfg: RunConfig, parent: str, say: Callable) -> dict:
    """w/o vs w/ DPO on the validation store (MLflow eval/val/*: where settings are chosen),
    then on the final test store (eval/*: what is reported). Without an ``eval.test_scenes``
    store, the test split of data.path stands in for it. Then the plots (pipeline.plots:
    the DPO curve on the validation store, the per-material E bias on the final test)."""
    from pipeline.plots import make_plots
    from runtime import tracking

    out, val_rows = {}, None
    with tracking.start_run(cfg, "eval", parent_run_id=parent) as run:
        val = held_out_config(cfg, "val")
        if val is not None:
            say(f"  validation: {cfg.eval.val_scenes} scenes (seed {val.data.seed}):")
            out["val"], val_rows = _compare(val, "all", None, "eval_val", "eval/val", run, say)
        test = held_out_config(cfg, "test")
        if test is not None:
            say(f"  final test: {cfg.eval.test_scenes} scenes (seed {test.data.seed}, used for "
                "nothing else):")
            out["test"], rows = _compare(test, "all", None, "eval_test", "eval", run, say)
        else:
            say("  held-out test split of the training store:")
            out["test"], rows = _compare(cfg, "test", None, "eval_test", "eval", run, say)
        out["plots"] = make_plots(cfg, val, rows, run.info.run_id, say, val_rows)
    out["mlflow_run_id"] = run.info.run_id
    return out


def stage_serve(cfg: RunConfig, parent: str, say: Callable) -> dict:
    from pipeline.serve_check import serve_and_predict

    return serve_and_predict(cfg, say)


RUNNERS = {"data": stage_data, "pretrain": stage_pretrain, "dpo": stage_dpo,
           "eval": stage_eval, "serve": stage_serve}


def run_pipeline(cfg: RunConfig, say: Callable = print, redo: tuple[str, ...] = (),
                 runners: dict[str, Callable] | None = None) -> dict:
    """Run every stage not finished yet (or in ``redo``); returns {stage: summary}.

    ``runners``: {stage: function(cfg, parent run id, say) → summary} to run instead of
    ``RUNNERS`` (in that order; ``physgm study`` runs data + pretrain, then dpo + eval)."""
    from runtime.ray_cluster import ensure_ray, log_dir

    t0 = time.perf_counter()
    runners = RUNNERS if runners is None else runners
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    logs = ensure_ray(cfg, log_dir(cfg))
    if logs is not None:
        say(f"Ray, Serve and Ray Train logs: {logs}/")
    parent = parent_run(cfg)
    results = {}
    for i, (stage, runner) in enumerate(runners.items(), 1):
        done = _done(cfg, stage)
        if done is not None and stage not in redo:
            say(f"[{i}/{len(runners)}] {stage}: done earlier, reused ({_stage_file(cfg, stage)})")
            results[stage] = {**done, "reused": True}
            continue
        say(f"[{i}/{len(runners)}] {stage} …")
        start = time.perf_counter()
        summary = runner(cfg, parent, say)
        summary["stage_wall_s"] = round(time.perf_counter() - start, 1)
        results[stage] = _finish(cfg, stage, summary)
        say(f"[{i}/{len(runners)}] {stage}: done in {summary['stage_wall_s']:.0f} s")
    from runtime import tracking

    tracking.end_run(cfg, parent)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    return results
