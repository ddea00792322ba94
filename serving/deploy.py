"""Bind, start and hot-swap the Serve application (ingress → model, simulation).

    handle = start(cfg, source)              # Serve's HTTP proxy on serve.host:serve.port
    hot_swap(cfg, new_source)                # new weights on every model replica, in place
    serve run serving/serve_config.yaml      # the same application from a Serve config file
                                             # (import_path serving.deploy:app_builder)

Each deployment gets a version derived from its constructor arguments, so redeploying the
same application with a new model ``user_config`` (``hot_swap``) reconfigures the running
model replicas instead of replacing them, and a change that needs new replicas (other
constructor arguments, resources) still rolls them.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Optional

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

import physgm
from physgm.config import RunConfig
from serving.app import PhysGMIngress
from serving.inputs import CameraDefaults, Limits
from serving.model_deployment import ModelDeployment
from serving.model_source import ModelSource, resolve_models
from serving.security import check_bind, key_digest, resolve_api_key
from serving.sim_deployment import SimDeployment

APP_NAME = "physgm"
# the ServeConfig fields the simulation replicas use: changing any other one (batching,
# limits...) leaves them running
SIM_FIELDS = {"sim", "max_particles", "fill_interior", "min_opacity", "object_size",
              "drop_height", "video_size", "video_fps", "request_timeout_s"}


def _version(name: str, *args) -> str:
    """Deployment version: changes exactly when the code release or the constructor
    arguments change (Serve then replaces replicas; otherwise it only reconfigures)."""
    blob = json.dumps([name, physgm.__version__, *args], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _versioned(deployment, version: str, **options):
    # Serve's Python API assigns a random version on every serve.run (so any redeploy would
    # restart replicas); the pinned version makes a user_config-only change a reconfigure.
    return deployment.options(version=version, _internal=True, **options)


def model_user_config(cfg: RunConfig, source: ModelSource,
                      models: Optional[dict[str, ModelSource]] = None) -> dict:
    """The model deployment's user_config: the default source, batching, and the
    multiplexed models (``resolve_models`` when ``models`` is None)."""
    s = cfg.serve
    models = resolve_models(s, source) if models is None else models
    return {**source.to_user_config(), "max_batch_size": s.max_batch_size,
            "batch_wait_timeout_s": s.batch_wait_timeout_s,
            "models": {k: v.to_user_config() for k, v in models.items()}}


def build_app(cfg: RunConfig, source: ModelSource, api_key: Optional[str] = None,
              warmup: bool = True):
    """The bound application: replicas, resources, batching and limits from ``cfg.serve``."""
    s = cfg.serve
    model_args = (cfg.model.model_dump(mode="json"), s.device)
    scaling = ({"autoscaling_config": {"min_replicas": s.min_replicas,
                                       "max_replicas": s.max_replicas,
                                       "target_ongoing_requests": s.target_ongoing_requests}}
               if s.autoscaling else {"num_replicas": s.replicas})
    model = _versioned(ModelDeployment, _version("model", *model_args),
                       ray_actor_options={"num_cpus": s.num_cpus, "num_gpus": s.num_gpus,
                                          "resources": dict(s.resources)},
                       max_ongoing_requests=s.max_ongoing_requests,
                       user_config=model_user_config(cfg, source), **scaling
                       ).bind(*model_args)
    sim_args = (s.model_dump(mode="json", include=SIM_FIELDS), warmup)
    sim = _versioned(SimDeployment, _version("sim", *sim_args), num_replicas=s.sim_replicas,
                     ray_actor_options={"num_cpus": s.sim_num_cpus, "num_gpus": s.sim_num_gpus,
                                        "resources": dict(s.sim_resources)}
                     ).bind(*sim_args)
    limits = Limits.from_config(s)
    settings = {"limits": limits.__dict__, "cameras": CameraDefaults.from_config(s).__dict__,
                "timeout_s": s.request_timeout_s, "api_key_digest": key_digest(api_key),
                "ply": {"max_gaussians": s.max_ply_gaussians, "keep": s.max_particles}}
    return _versioned(PhysGMIngress, _version("ingress", settings),
                      num_replicas=s.ingress_replicas, ray_actor_options={"num_cpus": 0}
                      ).bind(model, sim, settings)


def _serve_http_elsewhere(host: str, port: int) -> Optional[str]:
    """How the Serve instance already running in this Ray instance takes HTTP when that is
    not on ``host:port``; None when Serve is not running or listens there."""
    from ray.serve.config import ProxyLocation
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    controller = client._controller
    location = ray.get(controller.get_proxy_location.remote(), timeout=60)
    if location == ProxyLocation.Disabled:
        return "without an HTTP proxy"
    http = ray.get(controller.get_http_config.remote(), timeout=60)
    if (http.host, int(http.port)) != (host, int(port)):
        return f"with its HTTP proxies on {http.host}:{http.port}"
    return None


def start(cfg: RunConfig, source: ModelSource, host: Optional[str] = None,
          port: Optional[int] = None, warmup: bool = True):
    """Start Serve's HTTP proxy (``host``/``port``, default ``cfg.serve``) and deploy; Ray
    must be initialised. Returns the ingress handle. Raises ValueError for a non-loopback
    host without an API key, RuntimeError when Serve already runs in this Ray instance
    without an HTTP proxy or with one elsewhere (``serve.start`` would keep that one,
    only logging that the new http_options are ignored, and nothing would answer on
    ``host:port``)."""
    host = host or cfg.serve.host
    port = port or cfg.serve.port
    api_key = resolve_api_key(cfg.serve.api_key)
    check_bind(host, api_key)
    running = _serve_http_elsewhere(host, port)
    if running:
        raise RuntimeError(f"Ray Serve already runs in this Ray instance {running}, and its "
                           f"HTTP options cannot change while it runs: the app would not be "
                           f"reachable on {host}:{port}. Stop it first (serve.shutdown(); "
                           "e.g. a DPO run's reward service left running)")
    serve.start(http_options={"host": host, "port": port,
                              "request_timeout_s": cfg.serve.request_timeout_s + 30})
    return serve.run(build_app(cfg, source, api_key, warmup), name=APP_NAME, route_prefix="/",
                     blocking=False)


def hot_swap(cfg: RunConfig, source: ModelSource, warmup: bool = True):
    """Serve ``source``'s weights: redeploy the same application with only the model's
    user_config changed, so Serve calls ``ModelDeployment.reconfigure`` on every running
    replica (each loads the new weights beside the old and swaps; no request fails).
    ``cfg`` must be the config the application was started with. Raises RuntimeError when
    the replicas could not load ``source`` (they keep serving the old weights)."""
    api_key = resolve_api_key(cfg.serve.api_key)
    handle = serve.run(build_app(cfg, source, api_key, warmup), name=APP_NAME,
                       route_prefix="/", blocking=False)
    model = serve.get_deployment_handle("PhysGMModel", app_name=APP_NAME)
    want = source.describe()
    deadline = time.monotonic() + cfg.serve.request_timeout_s
    while True:
        info = model.info.remote().result(timeout_s=cfg.serve.request_timeout_s)
        if info["source"] == want:
            return handle
        if (info["last_error"] or "").startswith(want) or time.monotonic() > deadline:
            raise RuntimeError(f"the model replicas kept serving {info['model_version']} "
                               f"({info['source']}): {info['last_error'] or 'timed out'}")
        time.sleep(0.2)


class ServeAppArgs(BaseModel):
    """The ``args`` of serving/serve_config.yaml: what ``physgm serve`` takes. ``config``: a
    YAML config (paths relative to the working directory of the Serve controller's build
    task: the cluster's, for ``serve deploy``); ``set``: ``a.b=c`` overrides; then the
    model: ``checkpoint`` (path) | ``model_uri`` (MLflow) | ``random_init``, else the newest
    ``runs/*/checkpoints/{final,dpo}``; ``models``: {id: source} served beside it."""

    model_config = ConfigDict(extra="forbid")

    config: Optional[str] = None
    set: list[str] = Field(default_factory=list)
    checkpoint: Optional[str] = None
    model_uri: Optional[str] = None
    random_init: bool = False
    models: Optional[dict[str, str]] = None
    model_version: Optional[str] = None


def _proxy_host() -> Optional[str]:
    """The host Serve's HTTP proxies bind (the config file's http_options), if readable."""
    if not ray.is_initialized():             # `serve build`, tests: nothing to ask
        return None
    try:
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        return ray.get(controller.get_http_config.remote(), timeout=10).host
    except Exception:  # noqa: BLE001 - not in a Serve cluster (tests, `serve build`)
        return None


def app_builder(args: dict):
    """``import_path: serving.deploy:app_builder`` (``serve run`` / ``serve deploy``
    serving/serve_config.yaml): the application ``physgm serve`` deploys, built from
    ``ServeAppArgs``. The config file's ``deployments`` entries then override the replicas
    and resources derived from ``serve.*``. Refuses a non-loopback ``http_options.host``
    without an API key (``serve.api_key`` or env PHYSGM_API_KEY, e.g. in the runtime_env)."""
    from physgm.config import load_config
    from serving.model_source import resolve_source

    a = ServeAppArgs.model_validate(args or {})
    cfg = load_config(a.config, a.set)
    updates = {k: v for k, v in {"checkpoint": a.checkpoint, "model_uri": a.model_uri,
                                 "models": a.models, "model_version": a.model_version}.items()
               if v is not None}
    if a.random_init:
        updates.update(random_init=True, checkpoint=None, model_uri=None)
    cfg.serve = cfg.serve.model_validate({**cfg.serve.model_dump(), **updates})
    source = resolve_source(cfg.serve, cfg.out_dir)
    api_key = resolve_api_key(cfg.serve.api_key)
    host = _proxy_host()
    if host is not None:
        check_bind(host, api_key)
    return build_app(cfg, source, api_key)
