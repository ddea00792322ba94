"""``physgm serve``: the HTTP endpoint and demo page on Ray Serve; ``physgm bench serve``.

    physgm serve --random-init                 # untrained model, smoke tests
    physgm serve                               # newest runs/*/checkpoints/{final,dpo}
    physgm serve --checkpoint runs/quickstart/checkpoints/final --port 8000
    physgm serve --model-uri runs:/<run_id>/checkpoints/final
    PHYSGM_API_KEY=... physgm serve --host 0.0.0.0   # beyond localhost only with a key

Ray: connects to the cluster in RAY_ADDRESS when set, else starts a local one.
"""
from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from physgm.cli_common import PASS_THROUGH, ConfigOpt, SetOpt, fail, get_config, run_benchmark


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm serve`` and ``physgm bench serve``."""
    root.command("serve")(serve_command)
    bench.command("serve", context_settings=PASS_THROUGH)(bench_serve_command)


def serve_command(
    host: Annotated[Optional[str], typer.Option(help="bind address (default serve.host, "
                                                "127.0.0.1); others need an API key")] = None,
    port: Annotated[Optional[int], typer.Option(help="HTTP port (default serve.port)")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(help="checkpoint dir or .pt file (or an "
                                                      "MLflow URI)")] = None,
    model_uri: Annotated[Optional[str], typer.Option("--model-uri", help="MLflow URI of a "
                                                     "checkpoint dir: runs:/<id>/<path>, "
                                                     "models:/<name>/<version>")] = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="serve an untrained "
                                              "model (smoke tests)")] = False,
    replicas: Annotated[Optional[int], typer.Option(help="model replicas (serve.replicas)")] = None,
    config: ConfigOpt = None, set_: SetOpt = None,
) -> None:
    """Serve the model over HTTP: predict, Gaussians, simulate, demo page (serving/README.md).

    POST /v1/predict, /v1/gaussians, /v1/simulate; GET /healthz, / (demo), /openapi.json."""
    from serving.model_source import resolve_source
    from serving.security import check_bind, resolve_api_key

    cfg = get_config(config, set_)
    updates = {k: v for k, v in {"host": host, "port": port, "checkpoint": checkpoint,
                                 "model_uri": model_uri, "replicas": replicas}.items()
               if v is not None}
    if random_init:
        updates.update(random_init=True, checkpoint=None, model_uri=None)
    try:
        cfg.serve = cfg.serve.model_validate({**cfg.serve.model_dump(), **updates})
        source = resolve_source(cfg.serve, cfg.out_dir)
        check_bind(cfg.serve.host, resolve_api_key(cfg.serve.api_key))
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))

    import ray
    from ray import serve

    from runtime.ray_cluster import ensure_ray
    from serving.deploy import start

    typer.echo(f"starting Ray Serve with {source.describe()} …")
    ensure_ray()
    try:
        start(cfg, source)
        url = f"http://{cfg.serve.host}:{cfg.serve.port}"
        typer.secho(f"serving at {url}/  (API docs {url}/docs; Ctrl-C stops)", fg="green")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopping")
    except ValueError as err:
        fail(str(err))
    finally:
        serve.shutdown()
        ray.shutdown()


def bench_serve_command(ctx: typer.Context) -> None:
    """/v1/predict p50/p95 latency and requests/s with batching on and off, /v1/simulate time
    (quickstart and a larger object). Options: --requests N --concurrency N --sim-sizes
    32:16:5000:2:64,64:25:40000:4:128 --no-sim --json."""
    run_benchmark("serve", list(ctx.args))
