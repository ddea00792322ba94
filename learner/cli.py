"""``physgm dpo`` (preference optimisation of the physics head on a Ray cluster) and
``physgm bench dpo``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from physgm.cli_common import (PASS_THROUGH, ConfigOpt, JsonOpt, SetOpt, echo_json, fail,
                               get_config, run_benchmark)


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm dpo`` and ``physgm bench dpo``."""
    root.command("dpo")(dpo)
    bench.command("dpo", context_settings=PASS_THROUGH)(bench_dpo)


def bench_dpo(ctx: typer.Context) -> None:
    """DPO pairs/hour with 1 and 2 actors side by side, time shares, weight size; with
    --compare-batching each also with the K candidates simulated one after another.
    Options: --actors 1,2 --scenes 8 --epochs 1 --compare-batching --data PATH
    --checkpoint PATH --json."""
    run_benchmark("dpo", list(ctx.args))


def dpo(
    config: ConfigOpt = None, set_: SetOpt = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="pretrained checkpoint (default runs/<name>/checkpoints/final)")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue from runs/<name>/dpo/checkpoint: same step, optimizer, "
        "policy version, scene progress and MLflow run")] = False,
    json_: JsonOpt = False,
) -> None:
    """Refine the physics head with DPO: sim actors sample K parameter sets per scene,
    simulate and render them, the reward service scores them against the GT video, and a
    DeepSpeed learner trains on the best/worst pairs. Ctrl-C checkpoints and exits."""
    from learner.dpo import run_dpo

    cfg = get_config(config, set_)
    try:
        summary = run_dpo(cfg, str(checkpoint) if checkpoint else None, resume=resume,
                          show=not json_)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo("interrupted: checkpoint written; continue with `physgm dpo --resume`",
                   err=True)
        raise typer.Exit(130)
    if json_:
        echo_json(summary)
    else:
        typer.echo(f"DPO done: {summary['steps']} steps, {summary['pairs_learned']} pairs "
                   f"learned, {summary['pairs_per_hour']:.0f} pairs/hour, policy "
                   f"v{summary['policy_version']} → {summary['checkpoint']}")
        if summary.get("loss_trend"):
            from learner.eval_stats import format_loss_trend

            typer.echo(format_loss_trend(summary["loss_trend"]))
