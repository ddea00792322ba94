"""``physgm cluster``: check a cluster launcher file against a run config, and estimate the
GPU-hours of a run. Both work offline; Ray is imported inside the commands."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from physgm.cli_common import fail, get_config

app = typer.Typer(help="Cluster launch: offline checks and cost estimates (cluster/README.md).",
                  no_args_is_help=True, add_completion=False)

PAPER = Path("configs/paper.yaml")


@app.callback()
def _main() -> None:
    """Cluster commands."""


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm cluster {check,costs}``."""
    root.add_typer(app, name="cluster")


@app.command("check")
def check(
    cluster_file: Path = typer.Argument(Path("cluster/ray_cluster.yaml"),
                                        help="Ray cluster launcher YAML"),
    config: Optional[Path] = typer.Option(PAPER, "--config", "-c",
                                          help="run config whose roles must fit the cluster"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="config override a.b=c"),
    no_config: bool = typer.Option(False, "--no-config", help="check the cluster file alone"),
    strict: bool = typer.Option(False, "--strict", help="fail on warnings too"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON line"),
) -> None:
    """Validate CLUSTER_FILE offline with Ray's own validator (ray up needs credentials) and
    check that every role of --config (pretrain workers, DPO learner, sim actors, reward
    replicas, Serve replicas) fits a node type. Exit 1 on errors, 2 on unreadable input."""
    from cluster.check import ClusterCheckError, check_cluster, format_report

    cfg = None if no_config else get_config(config, set_)
    try:
        report = check_cluster(cluster_file, cfg, None if no_config else str(config))
    except ClusterCheckError as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(report.to_dict() | {"ok": report.ok(strict)}))
    else:
        typer.echo(format_report(report, strict))
    if not report.ok(strict):
        raise typer.Exit(1)


@app.command("costs")
def costs(
    config: Optional[Path] = typer.Option(PAPER, "--config", "-c", help="run config"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="config override a.b=c"),
    sim_pss: Optional[float] = typer.Option(None, help="MPM particle-substeps/s per actor"),
    render_s: Optional[float] = typer.Option(None, help="seconds to render one frame"),
    reward_s: Optional[float] = typer.Option(None, help="seconds to score one video"),
    step_s: Optional[float] = typer.Option(None, help="seconds per pretraining step"),
    cpu_pss: Optional[str] = typer.Option("1.2e6,1.9e6", help="LOW,HIGH CPU particle-substeps/s "
                                          "for a reference line ('' to omit)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON line"),
) -> None:
    """GPU-hours per stage from measured figures; missing figures print TBD(measured)."""
    from cluster.costs import Figures, cost_report, format_costs

    cfg = get_config(config, set_)
    try:
        cpu = tuple(float(x) for x in cpu_pss.split(",")) if cpu_pss else None
        if cpu is not None and (len(cpu) != 2 or min(cpu) <= 0):
            raise ValueError
    except ValueError:
        fail("--cpu-pss takes LOW,HIGH, e.g. 1.2e6,1.9e6")
    report = cost_report(cfg, Figures(sim_pss, render_s, reward_s, step_s), cpu)
    typer.echo(json.dumps(report) if as_json else format_costs(report))
