"""How the Serve application is bound (no Ray started): resources, autoscaling, the model's
user_config, the deployment versions that make a weights change a reconfigure, the models
served side by side, the health checks and serving/serve_config.yaml; then `serve run` of
that file for real."""
import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

pytest.importorskip("ray")

from physgm.config import build_config  # noqa: E402
from serving.deploy import build_app  # noqa: E402
from serving.model_source import ModelSource  # noqa: E402


def parts(app):
    ingress = app._bound_deployment
    model, sim = (a._bound_deployment for a in ingress.init_args[:2])
    return ingress, model, sim


def test_resources_batching_and_autoscaling_come_from_the_config():
    cfg = build_config({"serve": {"replicas": 3, "num_cpus": 2, "num_gpus": 0.25,
                                  "max_batch_size": 16, "batch_wait_timeout_s": 0.05,
                                  "sim_replicas": 2, "sim_num_gpus": 0.5}})
    ingress, model, sim = parts(build_app(cfg, ModelSource("random", seed=3)))
    assert (ingress.name, model.name, sim.name) == ("PhysGMIngress", "PhysGMModel", "PhysGMSim")
    assert model.num_replicas == 3 and sim.num_replicas == 2
    assert model.ray_actor_options == {"num_cpus": 2.0, "num_gpus": 0.25, "resources": {}}
    assert sim.ray_actor_options["num_gpus"] == 0.5
    assert ingress.ray_actor_options["num_cpus"] == 0
    random = {"kind": "random", "location": None, "model_version": None}
    assert model.user_config == {**random, "seed": 3, "max_batch_size": 16,
                                 "batch_wait_timeout_s": 0.05,   # and the stand-in pair:
                                 "models": {"pretrained": {**random, "seed": 3},
                                            "dpo": {**random, "seed": 4}}}
    settings = ingress.init_args[2]
    assert settings["limits"]["max_bytes"] == 20 * 2 ** 20 and settings["api_key_digest"] is None

    auto = build_config({"serve": {"autoscaling": True, "min_replicas": 1, "max_replicas": 6,
                                   "target_ongoing_requests": 4}})
    _, model, _ = parts(build_app(auto, ModelSource("random")))
    scaling = model._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == \
        (1, 6, 4)


def test_versions_change_only_with_what_needs_new_replicas(tmp_path):
    cfg = build_config({})
    a = parts(build_app(cfg, ModelSource("random")))
    b = parts(build_app(cfg, ModelSource("checkpoint", str(tmp_path), model_version="v2")))
    assert [d.version for d in a] == [d.version for d in b]          # weights: reconfigure
    assert a[1].user_config != b[1].user_config
    batching = parts(build_app(build_config({"serve": {"max_batch_size": 1}}),
                               ModelSource("random")))
    assert [d.version for d in batching] == [d.version for d in a]   # live setting too
    sim = parts(build_app(build_config({"serve": {"sim": {"grid_res": 48}}}),
                          ModelSource("random")))
    assert sim[2].version != a[2].version and sim[1].version == a[1].version
    model = parts(build_app(build_config({"model": {"dim": 64}}), ModelSource("random")))
    assert model[1].version != a[1].version and model[2].version == a[2].version
    keyed = parts(build_app(cfg, ModelSource("random"), api_key="k" * 20))
    assert keyed[0].version != a[0].version and keyed[0].init_args[2]["api_key_digest"]
    assert "k" * 20 not in str(keyed[0].init_args)                   # only the digest travels


# ------------------------------------------------------------------ Serve config file
ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "serving" / "serve_config.yaml"


def test_serve_config_is_what_serve_build_writes_and_builds_the_app():
    from ray.serve.schema import ServeDeploySchema

    from serving.deploy import app_builder

    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)           # what serve run/deploy parse
    assert schema.http_options.host == "127.0.0.1"            # loopback, like physgm serve
    (app_cfg,) = schema.applications
    assert (app_cfg.name, app_cfg.route_prefix, app_cfg.import_path) == (
        "physgm", "/", "serving.deploy:app_builder")
    ingress, model, sim = parts(app_builder(app_cfg.args))
    names = {d.name for d in app_cfg.deployments}
    assert names == {ingress.name, model.name, sim.name}     # every entry names a deployment
    for d in app_cfg.deployments:
        assert d.num_replicas >= 1 and "num_cpus" in d.ray_actor_options.model_dump()
        assert d.health_check_period_s > 0
    assert model.user_config["kind"] == "random"              # runs without a checkpoint
    with pytest.raises(ValueError, match="checkpointt"):
        app_builder({"checkpointt": "x"})                     # a typo is refused, named


def test_models_beside_the_default_one(tmp_path):
    from physgm.config import ServeConfig
    from serving.model_source import parse_source, resolve_models

    run = tmp_path / "run" / "checkpoints"
    for name in ("final", "dpo"):
        (run / name).mkdir(parents=True)
        (run / name / "model.pt").write_bytes(b"weights")
    got = resolve_models(ServeConfig(), ModelSource("checkpoint", str(run / "dpo")))
    assert {k: Path(v.location).name for k, v in got.items()} == {"pretrained": "final",
                                                                 "dpo": "dpo"}
    (run / "final" / "model.pt").unlink()
    assert resolve_models(ServeConfig(), ModelSource("checkpoint", str(run / "dpo"))) == {}
    cfg = ServeConfig(models={"champion": "models:/physgm@champion", "base": "random:7"})
    got = resolve_models(cfg, ModelSource("random"))
    assert got["champion"].kind == "mlflow" and got["base"] == ModelSource("random", seed=7)
    with pytest.raises(ValueError, match="ids"):
        resolve_models(ServeConfig(models={"bad id!": "random"}), ModelSource("random"))
    with pytest.raises(FileNotFoundError, match="no PhysGM checkpoint"):
        parse_source(str(tmp_path / "nowhere"))


def test_health_checks_fail_when_a_replica_is_broken():
    """check_health is what Serve polls; raising gets the replica replaced."""
    from physgm.config import ServeConfig
    from serving.model_deployment import MAX_CONSECUTIVE_ERRORS, ModelDeployment
    from serving.sim_deployment import STUCK_AFTER, SimDeployment

    model = ModelDeployment.func_or_class({"image_size": 32, "patch_size": 8, "dim": 32,
                                           "depth": 1, "heads": 2, "backbone_depth": 1},
                                          device="cpu")
    with pytest.raises(RuntimeError, match="no weights"):
        model.check_health()
    asyncio.run(model.reconfigure({"kind": "random"}))
    model.check_health()
    model.consecutive_errors = MAX_CONSECUTIVE_ERRORS
    with pytest.raises(RuntimeError, match="failed"):
        model.check_health()
    sim = SimDeployment.func_or_class(ServeConfig(request_timeout_s=1).model_dump(mode="json"),
                                      warmup=False)
    sim.check_health()
    sim._busy_since = time.monotonic() - STUCK_AFTER - 1
    with pytest.raises(RuntimeError, match="request_timeout_s"):
        sim.check_health()


def test_serve_run_with_the_config_file_answers(tmp_path):
    """`serve run serving/serve_config.yaml` (only the port changed: this machine is shared)
    → /healthz 200 and a prediction; Ctrl-C stops it."""
    requests = pytest.importorskip("requests")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = yaml.safe_load(CONFIG.read_text())
    raw["http_options"]["port"] = port
    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    serve_cli = Path(sys.executable).parent / "serve"
    proc = subprocess.Popen([str(serve_cli), "run", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.time() + 240, None
        while time.time() < deadline and proc.poll() is None:
            try:
                health = requests.get(url + "/healthz", timeout=5)
                if health.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1.0)
        assert health is not None and health.status_code == 200, "".join(lines[-30:])
        assert health.json()["model_version"].startswith("random-init")
        img = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 60, 30)).save(img, format="PNG")
        r = requests.post(url + "/v1/predict", timeout=120,
                          files=[("images", ("v.png", img.getvalue(), "image/png"))])
        assert r.status_code == 200, r.text
        assert r.json()["material"]["name"] in {"jelly", "metal", "plasticine", "sand", "snow"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(timeout=10)


@pytest.mark.slow
def test_serve_deploy_to_a_running_head(tmp_path):
    """`ray start --head` (dashboard on 127.0.0.1), then `serve deploy` of the config file
    → /healthz 200 and both multiplexed models listed. About 60 s on the 2-core machine."""
    requests = pytest.importorskip("requests")
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    gcs, dash, http = ports
    raw = yaml.safe_load(CONFIG.read_text())
    raw["http_options"]["port"] = http
    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    bin_dir = Path(sys.executable).parent
    # a short session dir: Ray's unix sockets live under it (paths ≤ 107 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="physgm-ray-")
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port",
         str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--include-dashboard", "true", "--temp-dir", ray_tmp,
         "--disable-usage-stats"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dashboard = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(dashboard + "/api/version", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(1.0)
        out = subprocess.run([str(bin_dir / "serve"), "deploy", str(config), "-a", dashboard],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        health = None
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                health = requests.get(f"http://127.0.0.1:{http}/healthz", timeout=5)
                if health.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1.0)
        assert health is not None and health.status_code == 200
        models = requests.get(f"http://127.0.0.1:{http}/v1/models", timeout=30).json()
        assert set(models["models"]) == {"pretrained", "dpo"}
    finally:
        os.killpg(head.pid, signal.SIGTERM)      # the head and every process it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        time.sleep(2)
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_registered_models_give_the_pair_by_alias(tmp_path, own_mlflow_uri):
    """Serving models:/physgm@champion puts models:/physgm@pretrained beside it as
    'pretrained' and the champion as 'dpo', when the registry (MLFLOW_TRACKING_URI: this
    test's own store, see conftest) holds both aliases."""
    from mlflow import MlflowClient

    from physgm.config import ServeConfig
    from serving.model_source import resolve_models

    champion = ModelSource("mlflow", "models:/physgm@champion")
    client = MlflowClient(tracking_uri=own_mlflow_uri)
    client.create_registered_model("physgm")
    versions = [client.create_model_version("physgm", source=str(tmp_path / alias)).version
                for alias in ("pretrained", "champion")]
    client.set_registered_model_alias("physgm", "champion", versions[1])
    assert resolve_models(ServeConfig(), champion) == {}            # no 'pretrained' alias yet
    client.set_registered_model_alias("physgm", "pretrained", versions[0])
    got = resolve_models(ServeConfig(), champion)
    assert {k: v.location for k, v in got.items()} == {
        "pretrained": "models:/physgm@pretrained", "dpo": "models:/physgm@champion"}
    assert resolve_models(ServeConfig(), ModelSource("mlflow", "runs:/abc/checkpoint")) == {}
