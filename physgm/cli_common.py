"""What every ``physgm`` command shares: option types, config loading, error printing, JSON
output and the benchmark runner. A leaf module: it imports no stage, so each stage's
``cli.py`` can import it and still import on its own.

The convention of a stage CLI (``physgm/data/cli.py``, ``pretrain/cli.py``,
``reward/cli.py``, ``learner/cli.py``, ``serving/cli.py``, ``cluster/cli.py``,
``pipeline/cli.py``): a module that defines its Typer commands and a
``register(root, bench)`` function that adds them to the ``physgm`` app (``root``) and its
``bench`` group; heavy imports (ray, deepspeed, mlflow, warp) stay inside the command
functions so that ``physgm --help`` is fast. Options use the types below, bad input exits
with status 2 through ``fail``, and ``--json`` prints one line through ``echo_json``.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from physgm.config import ConfigError, RunConfig, load_config

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="YAML config (see configs/quickstart.yaml, configs/paper.yaml).")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config value: --set sim.grid_res=64 (repeatable, YAML values).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print figures as one JSON line.")]
# context settings of a command that hands its arguments on (the `physgm bench` scripts)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def get_config(config: Optional[Path], overrides: Optional[list[str]]) -> RunConfig:
    """Load the config or exit with status 2 and a message that says what to change."""
    try:
        return load_config(config, overrides)
    except ConfigError as err:
        fail(str(err))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def clean_json(value: Any) -> Any:
    """NaN/inf → None, recursively, so a printed line stays valid JSON."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def echo_json(value: Any) -> None:
    """One JSON line on stdout (NaN/inf as null; other objects as their str)."""
    typer.echo(json.dumps(clean_json(value), default=str))


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def run_benchmark(name: str, argv: list[str]) -> None:
    """Run ``benchmarks/bench_<name>.py``'s ``main(argv)`` (benchmarks live in the repo)."""
    import importlib.util

    path = repo_root() / "benchmarks" / f"bench_{name}.py"
    if not path.is_file():
        fail(f"benchmark script {path.name} not found: `physgm bench` runs from a source "
             "checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location(f"benchmarks.bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(repo_root()))
    spec.loader.exec_module(module)
    module.main(argv)
