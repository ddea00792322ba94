"""``physgm pretrain`` and ``physgm bench pretrain``. Ray, DeepSpeed and MLflow are imported
inside the commands, so ``physgm --help`` stays fast."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from physgm.cli_common import (PASS_THROUGH, ConfigOpt, JsonOpt, SetOpt, echo_json, fail,
                               get_config, run_benchmark)


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm pretrain`` and ``physgm bench pretrain``."""
    root.command("pretrain")(pretrain)
    bench.command("pretrain", context_settings=PASS_THROUGH)(bench_pretrain)


def bench_pretrain(ctx: typer.Context) -> None:
    """Training samples/s and peak memory: DeepSpeed engine vs a plain PyTorch loop.

    Same model and batches. Options: --steps N --batch-size N --views N --size PX --json."""
    run_benchmark("pretrain", list(ctx.args))


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
        echo_json(summary)
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
