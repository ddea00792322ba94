"""The HTTP API on a real Ray Serve deployment (tiny random-init model, 127.0.0.1): endpoint
contracts, bad inputs, concurrency with batching, hot swap of weights, OpenAPI fuzzing."""
import io
import json
import math
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from uploads import as_views as views
from uploads import bad_ply_uploads, bad_view_uploads, ball, ply_bytes
from uploads import view_jpeg as jpeg
from uploads import view_png as png

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray")
requests = pytest.importorskip("requests")
from ray import serve  # noqa: E402

from physgm.config import build_config  # noqa: E402
from physgm.gaussians import Gaussians  # noqa: E402
from physgm.materials import MATERIALS, PARAM_RANGES, Material  # noqa: E402
from serving.model_source import ModelSource  # noqa: E402
from tiny_model import TINY  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "serving" / "static" / "samples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cfg(port: int):
    return build_config({"model": TINY, "serve": {
        "port": port, "sim": {"n_frames": 6}, "video_size": 48, "max_particles": 1200,
        "max_batch_size": 8, "batch_wait_timeout_s": 0.02, "request_timeout_s": 60,
        "max_ply_gaussians": 3000}})


@pytest.fixture(scope="module")
def server():
    from serving.deploy import start

    cfg = make_cfg(free_port())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start(cfg, ModelSource("random"))
        yield f"http://127.0.0.1:{cfg.serve.port}", cfg
    finally:
        serve.shutdown()
        ray.shutdown()


def model_info():
    return serve.get_deployment_handle("PhysGMModel", app_name="physgm").info.remote().result(
        timeout_s=30)


# ------------------------------------------------------------------ contracts
def test_healthz(server):
    url, _ = server
    r = requests.get(url + "/healthz", timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model_version"].startswith("random-init-seed0")


def test_predict_contract(server):
    url, _ = server
    r = requests.post(url + "/v1/predict", files=views(png(), jpeg()), timeout=60)
    assert r.status_code == 200, r.text
    p = r.json()
    assert set(p) == {"material", "params", "model_version", "views", "cameras"}
    assert p["views"] == 2 and p["cameras"] == "default"
    assert r.headers["X-Model-Version"] == p["model_version"]
    assert p["model_version"] == requests.get(url + "/healthz").json()["model_version"]
    probs = p["material"]["probs"]
    assert set(probs) == {m.value for m in MATERIALS}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    name = p["material"]["name"]
    assert probs[name] == max(probs.values())
    mat = Material(name)
    assert set(p["params"]) == set(PARAM_RANGES[mat])
    E = p["params"]["E"]
    lo, hi = PARAM_RANGES[mat]["E"]
    assert lo <= E["mean"] <= hi                                     # Pa
    assert E["log10_mean"] == pytest.approx(math.log10(E["mean"]), abs=1e-6)
    assert E["std"] > 0 and E["log10_std"] > 0
    assert "log10_mean" not in p["params"]["nu"]                     # not a log10 parameter
    # the same views with explicit cameras: used, and they change the prediction
    cams = json.loads((SAMPLES / "samples.json").read_text())[0]["cameras"]
    r2 = requests.post(url + "/v1/predict", files=views(png(), jpeg()),
                       data={"cameras": json.dumps(cams)}, timeout=60)
    assert r2.status_code == 200 and r2.json()["cameras"] == "given"
    assert r2.json()["material"]["probs"] != probs
    # deterministic for identical input
    again = requests.post(url + "/v1/predict", files=views(png(), jpeg()), timeout=60).json()
    assert again["material"]["probs"] == pytest.approx(probs, abs=1e-6)


def test_gaussians_ply(server, tmp_path):
    url, cfg = server
    r = requests.post(url + "/v1/gaussians", files=views(png(), png(seed=1)), timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["X-Model-Version"].startswith("random-init")
    assert r.content.startswith(b"ply\nformat binary_little_endian")
    (tmp_path / "g.ply").write_bytes(r.content)
    g = Gaussians.load_ply(tmp_path / "g.ply")
    s = cfg.model.image_size
    assert len(g) == 2 * s * s                          # one per pixel of every view
    assert torch.isfinite(g.means).all() and (g.scales > 0).all()
    few = requests.post(url + "/v1/gaussians?min_opacity=0.5", files=views(png()), timeout=60)
    (tmp_path / "h.ply").write_bytes(few.content)
    h = Gaussians.load_ply(tmp_path / "h.ply")
    assert len(h) < s * s and (h.opacities >= 0.5 - 1e-4).all()


def test_simulate_video_and_overrides(server, tmp_path):
    from physgm.video import read_video

    url, cfg = server
    r = requests.post(url + "/v1/simulate", files=views(png(), png(seed=1)), timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["X-Sim-Status"] in ("ok", "unstable", "escaped")
    (tmp_path / "v.mp4").write_bytes(r.content)
    frames = read_video(tmp_path / "v.mp4")
    assert frames.shape[1:] == (cfg.serve.video_size, cfg.serve.video_size, 3)
    assert frames.shape[0] == cfg.serve.sim.n_frames + 1
    assert frames.max() > 30                           # something is drawn
    predicted = json.loads(r.headers["X-Sim-Params"])
    assert predicted["material"] in {m.value for m in MATERIALS}

    r = requests.post(url + "/v1/simulate?format=gif", files=views(png()),
                      data={"material": "snow", "E": "200000"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/gif" and r.content.startswith(b"GIF8")
    params = json.loads(r.headers["X-Sim-Params"])
    assert params["material"] == "snow" and params["E"] == 2e5
    assert set(params) - {"material"} == set(PARAM_RANGES[Material.snow])

    for data, needle in (({"E": "1e12"}, "range"), ({"material": "water"}, "material"),
                         ({"E": "nan"}, "E"), ({"E": "-5"}, "E")):
        bad = requests.post(url + "/v1/simulate", files=views(png()), data=data, timeout=60)
        assert bad.status_code == 422, (data, bad.text)
        assert needle in bad.json()["detail"]
    bad = requests.post(url + "/v1/simulate?format=avi", files=views(png()), timeout=60)
    assert bad.status_code == 422 and "format" in bad.json()["detail"]


def test_demo_page_and_openapi(server):
    url, _ = server
    page = requests.get(url + "/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="predict"' in page.text and "/static/app.js" in page.text
    for asset in ("app.js", "style.css", "samples/samples.json", "samples/jelly_cube_v0.png"):
        assert requests.get(f"{url}/static/{asset}", timeout=30).status_code == 200
    spec = requests.get(url + "/openapi.json", timeout=30).json()
    assert {"/healthz", "/v1/predict", "/v1/gaussians", "/v1/simulate"} <= set(spec["paths"])
    predict = spec["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"200", "400", "413", "415", "422"} <= set(predict["responses"])
    assert "video/mp4" in spec["paths"]["/v1/simulate"]["post"]["responses"]["200"]["content"]


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("endpoint", ["/v1/predict", "/v1/gaussians", "/v1/simulate"])
def test_bad_inputs_get_4xx_with_detail(server, endpoint):
    url, _ = server
    for name, (kwargs, *codes) in bad_view_uploads(SAMPLES).items():
        r = requests.post(url + endpoint, timeout=60, **kwargs)
        assert r.status_code in codes, (name, r.status_code, r.text[:200])
        detail = r.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 10, (name, detail)
    assert requests.get(url + "/healthz", timeout=30).status_code == 200   # replica alive
    assert requests.post(url + endpoint.replace("simulate", "predict"), files=views(png()),
                         timeout=60).status_code == 200


def test_pretrained_and_dpo_side_by_side(server):
    """Model multiplexing: the header serve_multiplexed_model_id (or the field model) picks
    the model; the random-init server's stand-ins are seeds 0 (= the default) and 1."""
    url, _ = server
    listed = requests.get(url + "/v1/models", timeout=30).json()
    assert set(listed["models"]) == {"pretrained", "dpo"}
    assert listed["default"]["model_version"].startswith("random-init-seed0")
    default = requests.post(url + "/v1/predict", files=views(png()), timeout=60).json()
    assert "model" not in default
    got = {}
    for mid in ("pretrained", "dpo"):
        r = requests.post(url + "/v1/predict", files=views(png()), timeout=60,
                          headers={"serve_multiplexed_model_id": mid})
        assert r.status_code == 200, r.text
        got[mid] = r.json()
        assert got[mid]["model"] == mid
    assert got["dpo"]["model_version"].startswith("random-init-seed1")
    assert got["pretrained"]["material"]["probs"] == pytest.approx(
        default["material"]["probs"], abs=1e-6)
    assert got["dpo"]["material"]["probs"] != pytest.approx(got["pretrained"]["material"]["probs"],
                                                            abs=1e-4)
    field = requests.post(url + "/v1/predict", files=views(png()), data={"model": "dpo"},
                          timeout=60).json()
    assert field["material"]["probs"] == pytest.approx(got["dpo"]["material"]["probs"], abs=1e-6)
    bad = requests.post(url + "/v1/predict", files=views(png()), timeout=60,
                        headers={"serve_multiplexed_model_id": "nope"})
    assert bad.status_code == 422 and "pretrained" in bad.json()["detail"]


def test_simulate_an_uploaded_3dgs_scene(server, tmp_path):
    """POST /v1/simulate with a 3DGS PLY in place of images: physics predicted from renders
    of it, then filled, simulated and rendered; bad PLYs are 4xx."""
    from physgm.video import read_video

    url, cfg = server
    scene = ply_bytes(ball(1500, radius=30.0, centre=(0.0, 100.0, 0.0)), 3,
                      extra={"label": np.arange(1500.0)})
    r = requests.post(url + "/v1/simulate", files={"gaussians": ("scene.ply", scene)},
                      data={"material": "jelly", "model": "dpo"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["X-Sim-Appearance"] == "ply" and r.headers["X-Model-Id"] == "dpo"
    assert json.loads(r.headers["X-Sim-Params"])["material"] == "jelly"
    assert int(r.headers["X-Sim-Particles"]) <= cfg.serve.max_particles
    (tmp_path / "v.mp4").write_bytes(r.content)
    frames = read_video(tmp_path / "v.mp4")
    assert frames.shape[0] == cfg.serve.sim.n_frames + 1 and frames.max() > 30
    ok = requests.post(url + "/v1/simulate?format=gif", timeout=120,
                       files={"gaussians": ("s.ply", ply_bytes(ball(400), 0))})
    assert ok.status_code == 200 and ok.content.startswith(b"GIF8"), ok.text
    assert json.loads(ok.headers["X-Sim-Params"])["material"] in {m.value for m in MATERIALS}
    for name, (data, form, code) in bad_ply_uploads(max_gaussians=3000).items():
        bad = requests.post(url + "/v1/simulate", files={"gaussians": ("s.ply", data)},
                            data=form, timeout=60)
        assert bad.status_code == code, (name, bad.status_code, bad.text[:200])
        assert len(bad.json()["detail"]) > 10
    both = requests.post(url + "/v1/simulate", timeout=60, files=[
        ("images", ("a.png", png(), "image/png")), ("gaussians", ("s.ply", scene))])
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert requests.get(url + "/healthz", timeout=30).status_code == 200


def test_every_deployment_reports_healthy(server):
    status = serve.status().applications["physgm"]
    assert status.status == "RUNNING"
    assert {name: d.status for name, d in status.deployments.items()} == {
        "PhysGMIngress": "HEALTHY", "PhysGMModel": "HEALTHY", "PhysGMSim": "HEALTHY"}


def test_fifty_concurrent_predicts_are_batched(server):
    url, _ = server
    before = model_info()["batch_sizes"]
    data = [png(seed=i) for i in range(50)]

    def one(i):
        return requests.post(url + "/v1/predict", files=views(data[i]), timeout=120)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(one, range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert all(r.json()["material"]["name"] in {m.value for m in MATERIALS} for r in responses)
    after = model_info()["batch_sizes"]
    grown = {int(k): after.get(k, 0) - before.get(k, 0) for k in after}
    assert sum(k * n for k, n in grown.items()) >= 50
    assert max(k for k, n in grown.items() if n > 0) > 1     # some requests shared a batch


def test_openapi_fuzzing_finds_no_server_error(server):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    url, _ = server
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    tested, codes = 0, []
    for result in schema.get_all_operations():
        op = result.ok()
        n = 6 if op.path == "/v1/simulate" else 25

        @settings(max_examples=n, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            response = case.call(base_url=url, timeout=120)
            codes.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])
            assert response.status_code < 500

        check()
        tested += 1
    assert tested >= 4 and len(codes) >= 40
    assert any(400 <= c < 500 for c in codes) and max(codes) < 500


# ------------------------------------------------------------------ hot swap (last: it
# changes the served weights)
def test_hot_swap_changes_version_without_failed_requests(server, tmp_path):
    from physgm.config import ModelConfig
    from physgm.model import PhysGM, save_model
    from serving.deploy import hot_swap

    url, cfg = server
    old = requests.get(url + "/healthz").json()["model_version"]
    # a source the replicas cannot load is reported and leaves the old weights serving
    with pytest.raises(RuntimeError, match="no PhysGM checkpoint"):
        hot_swap(cfg, ModelSource("checkpoint", str(tmp_path / "missing")))
    assert requests.get(url + "/healthz").json()["model_version"] == old
    assert requests.post(url + "/v1/predict", files=views(png()), timeout=60).status_code == 200
    swaps_before = model_info()["counters"]["swaps"]
    torch.manual_seed(123)
    ckpt = tmp_path / "trained" / "checkpoints" / "final"
    save_model(ckpt, PhysGM(ModelConfig(**TINY), load_backbone=False), ModelConfig(**TINY))

    seen, failures, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                r = requests.post(url + "/v1/predict", files=views(png()), timeout=60)
                if r.status_code == 200:
                    seen.append(r.json()["model_version"])
                else:
                    failures.append((r.status_code, r.text[:200]))
            except requests.RequestException as err:
                failures.append(repr(err))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    hot_swap(cfg, ModelSource("checkpoint", str(ckpt)))
    deadline = time.time() + 60
    while time.time() < deadline and (not seen or seen[-1] == old):
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[:3]
    new = requests.get(url + "/healthz").json()["model_version"]
    assert new != old and new.startswith("trained/final@")
    assert old in seen and new in seen
    first_new = seen.index(new)
    assert set(seen[first_new:]) == {new}           # never back to the old weights
    info = model_info()
    assert info["counters"]["swaps"] == swaps_before + 1   # reconfigured in place, no restart


def test_api_key_is_required_once_configured(server):
    """Redeploy with an API key (what binding beyond 127.0.0.1 demands): /v1/* needs the
    X-API-Key header, the page, health and OpenAPI stay open."""
    from serving.deploy import APP_NAME, build_app

    url, cfg = server
    key = "test-key-" + "x" * 24
    keyed = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"api_key": key})})
    serve.run(build_app(keyed, ModelSource("random"), api_key=key), name=APP_NAME,
              route_prefix="/", blocking=False)
    r = requests.post(url + "/v1/predict", files=views(png()), timeout=60)
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    r = requests.post(url + "/v1/predict", files=views(png()), timeout=60,
                      headers={"X-API-Key": "wrong-" + "y" * 20})
    assert r.status_code == 401
    r = requests.post(url + "/v1/predict", files=views(png()), timeout=60,
                      headers={"X-API-Key": key})
    assert r.status_code == 200 and r.json()["model_version"].startswith("random-init")
    for path in ("/healthz", "/", "/openapi.json"):
        assert requests.get(url + path, timeout=30).status_code == 200
