"""``physgm pretrain`` and ``physgm eval`` (registered in physgm/cli.py). Ray, DeepSpeed
and MLflow are imported inside the commands, so ``physgm --help`` stays fast."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from physgm.cli import ConfigOpt, JsonOpt, SetOpt, fail, get_config


def _clean(value):
    """NaN/inf → None so the JSON line stays valid JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pretrain(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue from the newest checkpoint under runs/<name>/checkpoints: "
        "same weights, optimizer, LR schedule, data position, RNG and MLflow run")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="delete runs/<name>/checkpoints and start over")] = False,
    no_ray: Annotated[bool, typer.Option(
        "--no-ray", help="one in-process DeepSpeed worker instead of Ray Train (debugging)")]
    = False,
    stop_at: Annotated[Optional[int], typer.Option(
        help="checkpoint and stop after this step (continue later with --resume)")] = None,
    parent_run_id: Annotated[Optional[str], typer.Option(
        help="MLflow run to nest this stage's run under (set by `physgm run`)")] = None,
    json_: JsonOpt = False,
) -> None:
    """Supervised pretraining with DeepSpeed workers on Ray Train, tracked in MLflow.

    Gaussians are rendered into held-out views; physics learns from the annotator's labels;
    validation scores against the TRUE parameters. Writes runs/<name>/checkpoints/final."""
    from pretrain.train import run_pretrain

    cfg = get_config(config, set_)
    if resume and fresh:
        fail("--resume and --fresh exclude each other: pick one")
    try:
        summary = run_pretrain(cfg, resume=resume, fresh=fresh, parent_run_id=parent_run_id,
                               use_ray=not no_ray, progress=not json_, stop_at=stop_at)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        fail(str(err))
    if json_:
        typer.echo(json.dumps(_clean(summary), default=str))
        return
    m = summary.get("metrics", {})
    if summary["status"] == "already_done":
        typer.echo(f"nothing to do: {summary['checkpoint']} is at step {summary['step']} "
                   f"(raise pretrain.steps to train further)")
        return
    figures = ", ".join(f"{k} {m[k]:.4g}" for k in ("loss", "psnr", "material_acc",
                                                     "E_mae_log10") if k in m)
    verb = "pretrained" if summary["status"] == "ok" else "stopped"
    typer.echo(f"{verb} at step {summary['step']} in {summary['wall_s']:.0f} s: {figures} → "
               f"{summary['checkpoint']} (MLflow run {summary['mlflow_run_id']})")


def evaluate(
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="checkpoint directory or .pt file (default runs/<name>/checkpoints/final)")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="scene store (default data.path)")] = None,
    split: Annotated[str, typer.Option(
        help="train | val | test | all (every scene: for a store never trained on, e.g. one "
             "synthesised with another data.seed)")] = "test",
    scenes: Annotated[int, typer.Option(help="at most this many scenes (0 = all)")] = 0,
    views: Annotated[Optional[int], typer.Option(
        help="input views per scene (default pretrain.val_views)")] = None,
    log_mlflow: Annotated[bool, typer.Option(
        "--log-mlflow", help="also log the figures as eval/* metrics of a new MLflow run")]
    = False,
    dpo: Annotated[Optional[Path], typer.Option(
        "--dpo", help="a DPO checkpoint (e.g. runs/<name>/checkpoints/dpo): also compare "
        "w/o vs w/ DPO on simulated videos (video reward, win rate, material, log10 E)")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = False,
) -> None:
    """Score a checkpoint on held-out scenes against the TRUE physical parameters.

    Novel-view PSNR, material accuracy, log10 E and ν errors, next to the annotator's own
    accuracy and errors on the same scenes. With --dpo, also the paper-style table of the
    pretrained model (w/o DPO) against the DPO model (w/ DPO), each simulated at its mean
    parameters and scored against the GT video."""
    from pretrain.evaluate import evaluate_checkpoint, format_report, mlflow_metrics

    cfg = get_config(config, set_)
    ckpt = checkpoint or cfg.run_dir / "checkpoints" / "final"
    if split not in ("train", "val", "test", "all"):
        fail(f"--split must be train, val, test or all, got {split!r}")
    try:
        result = evaluate_checkpoint(ckpt, cfg, data, split, scenes, views)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    metrics = mlflow_metrics(result)
    if dpo is not None:
        from learner.dpo import ensure_ray
        from learner.evaluate import format_table, run_comparison
        from learner.evaluate import mlflow_metrics as dpo_metrics

        if data is not None:
            cfg.data.path = str(data)
        ensure_ray(cfg)
        try:
            summary, _ = run_comparison(cfg, str(ckpt), str(dpo), scenes or None, split)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        result["dpo_comparison"] = summary
        result["dpo_table"] = format_table(summary)
        metrics.update(dpo_metrics(summary))
    if log_mlflow:
        from pretrain import tracking

        with tracking.start_run(cfg, "eval") as run:
            tracking.log_metrics(cfg, run.info.run_id, metrics, 0)
        result["mlflow_run_id"] = run.info.run_id
    if json_:
        typer.echo(json.dumps(_clean(result)))
    else:
        typer.echo(format_report(result))
        if "dpo_table" in result:
            typer.echo("\n" + result["dpo_table"])
