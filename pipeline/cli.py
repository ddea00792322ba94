"""``physgm run`` (the whole pipeline) and ``physgm eval`` (a checkpoint, and w/o vs w/
DPO, on held-out scenes): the two commands that span several stages."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from physgm.cli_common import ConfigOpt, JsonOpt, SetOpt, echo_json, fail, get_config


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm run``, ``physgm study`` and ``physgm eval``."""
    root.command("run")(run)
    root.command("study")(study)
    root.command("eval")(evaluate)


class _Say:
    """Stage messages for `physgm run`; transient ones (progress counters) overwrite one
    line in place."""

    def __init__(self, quiet: bool):
        self.quiet, self.open_line = quiet, False

    def __call__(self, message: str, transient: bool = False) -> None:
        if self.quiet:
            return
        if transient:
            sys.stdout.write("\r" + message)
            sys.stdout.flush()
            self.open_line = True
            return
        if self.open_line:
            sys.stdout.write("\n")
            self.open_line = False
        typer.echo(message)


def stage_times(results: dict) -> str:
    """The per-stage wall-time table of a ``run_pipeline`` result (reused stages: "reused")."""
    from pipeline.run import STAGES

    rows = [f"  {'stage':<10}{'wall s':>8}"]
    for stage in STAGES:
        s = results.get(stage, {})
        rows.append(f"  {stage:<10}{s.get('stage_wall_s', float('nan')):>8.0f}"
                    + ("   (reused)" if s.get("reused") else ""))
    return "\n".join(rows)


def run(config: ConfigOpt = Path("configs/quickstart.yaml"), set_: SetOpt = None,
        redo: Annotated[Optional[list[str]], typer.Option(
            help="stage to run again even if finished: data, pretrain, dpo, eval, serve")] = None,
        json_: JsonOpt = False) -> None:
    """Run the whole pipeline on this machine: synth data → pretrain → DPO → eval table
    (w/o vs w/ DPO) → Ray Serve → one prediction. Output under runs/<name>/; a second run
    reuses finished stages and resumes an interrupted one."""
    from pipeline.run import STAGES, run_pipeline

    cfg = get_config(config, set_)
    bad = [s for s in (redo or []) if s not in STAGES]
    if bad:
        fail(f"--redo takes stages among {', '.join(STAGES)}; got {', '.join(bad)}")
    from runtime.ray_cluster import ClusterTooSmall

    try:
        results = run_pipeline(cfg, say=_Say(quiet=json_), redo=tuple(redo or ()))
    except ClusterTooSmall as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished stages are kept and the running one checkpointed; "
                   "the same `physgm run` command resumes", err=True)
        raise typer.Exit(130)
    if json_:
        echo_json(results)
        return
    from runtime.tracking import tracking_uri

    typer.echo(f"\nall stages done in {results['wall_s']:.0f} s; outputs under {cfg.run_dir}/")
    typer.echo(stage_times(results))
    typer.echo(f"  MLflow UI:  mlflow ui --backend-store-uri {tracking_uri(cfg)} "
               "--host 127.0.0.1   (then open http://127.0.0.1:5000)")
    typer.echo(f"  demo page:  physgm serve --checkpoint {cfg.run_dir}/checkpoints/dpo   "
               f"(then open http://127.0.0.1:{cfg.serve.port}/)")


def study(config: ConfigOpt = Path("configs/quickstart.yaml"), set_: SetOpt = None,
          dpo_seeds: Annotated[int, typer.Option(
              "--dpo-seeds", min=1, help="DPO seeds per data seed (dpo.seed, dpo.seed + 1, …)")]
          = 3,
          data_seeds: Annotated[int, typer.Option(
              "--data-seeds", min=1, help="data + pretraining seeds (data.seed + 100·i, "
              "seed + i), each its own training store and pretraining")] = 2,
          name: Annotated[Optional[str], typer.Option(
              help="study name: outputs under runs/<name>/ and runs/<name>-data<D>[-dpo<S>]/ "
              "(default <config name>-study)")] = None,
          json_: JsonOpt = False) -> None:
    """Every headline figure of w/o vs w/ DPO on the final test store as a mean ± 95 %
    t-interval over seeds: data and pretraining once per data seed, DPO and eval once per
    (data seed, DPO seed). Writes runs/<name>/study.json and study.md and an MLflow parent
    run; a second call reuses finished sub-runs."""
    from pipeline.study import run_study
    from runtime.ray_cluster import ClusterTooSmall

    cfg = get_config(config, set_)
    try:
        result = run_study(cfg, name, data_seeds, dpo_seeds, say=_Say(quiet=json_))
    except (ClusterTooSmall, ValueError, FileNotFoundError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished sub-runs and stages are kept; the same `physgm "
                   "study` command resumes", err=True)
        raise typer.Exit(130)
    if json_:
        echo_json(result)
        return
    typer.echo(f"\nstudy done in {result['wall_s']:.0f} s: {cfg.out_dir}/{result['name']}/"
               "study.md and study.json")


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
    ceiling: Annotated[int, typer.Option(
        "--ceiling", min=0, help="also the ceiling of DPO's E: each scene's pretrained physics "
        "with E on a grid of this many values over its material's true range (0 = off; 7 "
        "costs ~7 simulations per scene): the reward-optimal constant E per material and, "
        "with --dpo, the fraction of the gap DPO closes")] = 0,
    e_shifts: Annotated[Optional[str], typer.Option(
        "--e-shifts", help="also what the video prefers for E around the model's prediction: "
        "each scene's pretrained physics of its true material with E moved by these decades "
        "from the predicted E, e.g. '-0.45,-0.3,-0.15,0,0.15,0.3' (one simulation per shift "
        "and scene): the mean reward per shift and material, and the bias left if E moved "
        "where the video prefers it")] = None,
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
    shifts = None
    if e_shifts is not None:
        from learner.e_shift import parse_shifts

        try:
            shifts = parse_shifts(e_shifts)
        except ValueError as err:
            fail(str(err))
    try:
        result = evaluate_checkpoint(ckpt, cfg, data, split, scenes, views)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    metrics = mlflow_metrics(result)
    comparison_rows = None
    if dpo is not None or ceiling or shifts:  # these simulate the store's scenes as Ray tasks
        from runtime.ray_cluster import ensure_ray, log_dir

        if data is not None:
            cfg.data.path = str(data)
        ensure_ray(cfg, log_dir(cfg))
    if dpo is not None:
        from learner.eval_summary import format_table
        from learner.eval_summary import mlflow_metrics as dpo_metrics
        from learner.evaluate import run_comparison

        try:
            summary, comparison_rows = run_comparison(cfg, str(ckpt), str(dpo), scenes or None,
                                                      split)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        result["dpo_comparison"] = summary
        result["dpo_table"] = format_table(summary)
        metrics.update(dpo_metrics(summary))
    if ceiling:
        from learner.ceiling import format_ceiling, run_ceiling, summarize_ceiling

        try:
            rows = run_ceiling(cfg, str(ckpt), ceiling, scenes or None, split)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        result["ceiling"] = summarize_ceiling(rows, comparison_rows)
        result["ceiling_table"] = format_ceiling(result["ceiling"])
    if shifts:
        from learner.e_shift import format_shifts, run_shifts, summarize_shifts

        try:
            rows = run_shifts(cfg, str(ckpt), shifts, scenes or None, split)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        result["e_shifts"] = summarize_shifts(rows)
        result["e_shifts_table"] = format_shifts(result["e_shifts"])
    if log_mlflow:
        from runtime import tracking

        with tracking.start_run(cfg, "eval") as run:
            tracking.log_metrics(cfg, run.info.run_id, metrics, 0)
        result["mlflow_run_id"] = run.info.run_id
    if json_:
        echo_json(result)
    else:
        typer.echo(format_report(result))
        for key in ("dpo_table", "ceiling_table", "e_shifts_table"):
            if key in result:
                typer.echo("\n" + result[key])
