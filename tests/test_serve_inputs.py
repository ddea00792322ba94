"""serving: input validation, request guards, model sources and the simulation pipeline,
without Ray."""
import asyncio
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from uploads import bomb_jpeg, bomb_png

from physgm.camera import Camera, orbit_cameras
from physgm.config import ModelConfig, ServeConfig, build_config
from physgm.materials import MATERIALS, PARAM_RANGES, Material
from serving.inputs import (CameraDefaults, InputError, Limits, declared_size, decode_image,
                            parse_cameras, parse_views, prepare_views, sniff_image_type)
from serving.security import RequestGuard, check_bind, key_digest, resolve_api_key
from tiny_model import TINY

LIMITS = Limits(min_px=32, max_px=256, max_views=4, max_bytes=1 << 20)


def png(w=48, h=40, mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(w=64, h=64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)).save(
        buf, format="JPEG")
    return buf.getvalue()


def status_of(fn, *args, **kwargs) -> int:
    with pytest.raises(InputError) as exc:
        fn(*args, **kwargs)
    assert exc.value.detail and isinstance(exc.value.detail, str)
    return exc.value.status


# ------------------------------------------------------------------ images
def test_image_type_is_read_from_content():
    assert sniff_image_type(png()) == "png"
    assert sniff_image_type(jpeg()) == "jpeg"
    assert sniff_image_type(b"GIF89a...") is None
    assert sniff_image_type(b"") is None


def test_decode_png_jpeg_and_transparency():
    img = decode_image(png(48, 40), "a", LIMITS)
    assert img.shape == (40, 48, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (200, 30, 30)
    assert decode_image(jpeg(), "b", LIMITS).shape == (64, 64, 3)
    half = decode_image(png(40, 40, "RGBA", (200, 100, 0, 128)), "c", LIMITS)
    assert tuple(half[0, 0]) == (100, 50, 0)          # composited over black
    grey = decode_image(png(40, 40, "L", 77), "d", LIMITS)
    assert tuple(grey[0, 0]) == (77, 77, 77)


@pytest.mark.parametrize("data,status", [
    (b"", 400),                                       # empty
    (b"not an image at all", 415),                    # not an image
    (b"GIF89a" + b"\0" * 100, 415),                   # an image type we do not take
    (png()[:60], 400),                                # truncated PNG
    (png()[:8] + b"\0" * 50, 400),                    # PNG magic, garbage header
    (png(16, 16), 422),                               # too small
    (png(300, 40), 422),                              # too large a side
])
def test_bad_images_name_the_problem(data, status):
    assert status_of(decode_image, data, "view.png", LIMITS) == status


def test_header_size_checked_before_decoding():
    big = png(20000, 33)          # a cheap file with a huge side: rejected from the header
    with pytest.raises(InputError, match="20000×33 px") as exc:
        decode_image(big, "big.png", LIMITS)
    assert exc.value.status == 422 and "resize" in exc.value.detail


def test_declared_size_bombs_are_refused_before_any_decoder():
    """A few dozen bytes declaring 100,000 × 100,000 px (PIL's own guard raised a
    DecompressionBombError, a 500 behind the API): refused from the header, PNG and JPEG."""
    for data, size in ((bomb_png(), "100000×100000"), (bomb_jpeg(), "65000×65000"),
                       (bomb_png(5000, 40), "5000×40"), (bomb_jpeg(64, 9000), "64×9000")):
        assert declared_size(data, sniff_image_type(data)) == tuple(
            int(v) for v in size.split("×"))
        with pytest.raises(InputError, match=size) as exc:
            decode_image(data, "bomb", LIMITS)
        assert exc.value.status == 422 and len(data) < 300
    assert declared_size(jpeg(77, 55), "jpeg") == (77, 55)
    assert declared_size(b"\xff\xd8\xff\xe0\x00", "jpeg") is None       # cut in a segment


# ------------------------------------------------------------------ cameras
def cam_json(cams):
    return json.dumps([{"K": c.K.tolist(), "c2w": c.c2w.tolist()} for c in cams])


def test_cameras_parse_and_validate():
    cams = orbit_cameras(2, 1.0, 20.0, width=48, height=40)
    parsed = parse_cameras(cam_json(cams), [(48, 40), (48, 40)])
    assert len(parsed) == 2 and parsed[0].width == 48 and parsed[0].height == 40
    assert torch.allclose(parsed[1].c2w, cams[1].c2w)
    assert parse_cameras(None, [(48, 40)]) is None and parse_cameras("  ", [(48, 40)]) is None
    good = json.loads(cam_json(cams))
    nan = json.loads(cam_json(cams))
    nan[0]["K"][0][0] = float("nan")
    scaled = json.loads(cam_json(cams))
    scaled[1]["c2w"][0][0] *= 2.0
    cases = {
        "{not json": 400,
        json.dumps({"K": 1}): 422,                       # not a list
        json.dumps(good[:1]): 422,                       # one camera for two images
        json.dumps([good[0], {"K": good[0]["K"]}]): 422,  # c2w missing
        json.dumps([good[0], {"K": [[1, 0], [0, 1]], "c2w": good[0]["c2w"]}]): 422,
        json.dumps(nan): 422,                            # NaN (Python's json writes NaN)
        json.dumps(scaled): 422,                         # not a rigid pose
        json.dumps([good[0], "camera"]): 422,
        "[" * 70000: 413,                                # over the length cap
        "[" * 5000: 400,                                 # nesting: RecursionError in json
        "[" + "9" * 5000 + "]": 400,                     # over Python's int-digit limit
    }
    for text, status in cases.items():
        assert status_of(parse_cameras, text, [(48, 40), (48, 40)]) == status, text


def test_prepare_views_crops_and_rescales_cameras_consistently():
    """A world point seen at pixel p of the original view lands at the same place of the
    cropped, resized view (the crop moves the principal point, the resize scales K)."""
    cam = Camera.look_at((0.3, 0.5, 1.5), (0.0, 0.0, 0.0), 40.0, 96, 64)
    point = torch.tensor([[0.05, 0.02, -0.03]])
    uv, _ = cam.project(point)
    img = np.zeros((64, 96, 3), np.uint8)
    mi = prepare_views([img], [cam], 32)
    assert mi.images.shape == (1, 3, 32, 32) and mi.plucker.shape == (1, 6, 32, 32)
    assert mi.origins.shape == (1, 32, 32, 3) and mi.directions.shape == (1, 32, 32, 3)
    uv2, _ = mi.cameras[0].project(point)
    expected = (uv[0] - torch.tensor([16.0, 0.0])) * 0.5     # crop 16 px left, then 64 → 32
    assert torch.allclose(uv2[0], expected, atol=1e-4)
    assert mi.cameras_given
    np.testing.assert_allclose(np.linalg.norm(mi.directions, axis=-1), 1.0, atol=1e-5)


def test_default_cameras_follow_the_config():
    cfg = ServeConfig()
    d = CameraDefaults.from_config(cfg)
    mi = prepare_views([np.zeros((40, 40, 3), np.uint8)] * 3, None, 32, d)
    assert not mi.cameras_given and len(mi.cameras) == 3
    for cam in mi.cameras:
        dist = float((cam.position - torch.tensor(cfg.default_camera_target)).norm())
        assert dist == pytest.approx(cfg.default_camera_radius, rel=1e-5)
        fov = 2 * math.degrees(math.atan(16 / cam.fy))
        assert fov == pytest.approx(cfg.default_camera_fov_deg, rel=1e-4)


def test_parse_views_counts_and_order_of_checks():
    views = [("a.png", png())] * 2
    mi = parse_views(views, None, LIMITS, 32)
    assert mi.n_views == 2 and mi.images.dtype == np.float32
    assert mi.images.min() >= 0 and mi.images.max() <= 1
    assert status_of(parse_views, [], None, LIMITS, 32) == 422
    assert status_of(parse_views, [("a.png", png())] * 5, None, LIMITS, 32) == 422
    assert status_of(parse_views, views, "[]", LIMITS, 32) == 422


# ------------------------------------------------------------------ security
def test_bind_policy_and_key_resolution(monkeypatch):
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("::1", None)
    with pytest.raises(ValueError, match="API key"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValueError, match="16 characters"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", "x" * 32)
    monkeypatch.delenv("PHYSGM_API_KEY", raising=False)
    assert resolve_api_key(None) is None
    monkeypatch.setenv("PHYSGM_API_KEY", "from-env-" + "k" * 16)
    assert resolve_api_key(None).startswith("from-env")
    assert resolve_api_key("from-config-" + "k" * 16).startswith("from-config")


async def _call_asgi(app, path="/v1/predict", method="POST", headers=(), chunks=(b"",)):
    """Drive an ASGI app with a request streamed in ``chunks``; returns (status, body)."""
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]
    out = {}

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] = out.get("body", b"") + message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], json.loads(out["body"]) if out.get("body") else None


def test_request_guard_caps_size_checks_key_and_type():
    seen = {}

    async def inner(scope, receive, send):   # reads the whole body, like a form parser
        total = 0
        while True:
            msg = await receive()
            total += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        seen["bytes"] = total
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    key = "k" * 24
    guard = RequestGuard(inner, max_bytes=1000, api_key_digest=key_digest(key))
    mp = ("content-type", "multipart/form-data; boundary=x")
    auth = ("x-api-key", key)
    run = asyncio.run
    assert run(_call_asgi(guard, headers=[mp, auth], chunks=[b"a" * 500]))[0] == 200
    assert seen["bytes"] == 500
    seen.clear()
    status, body = run(_call_asgi(guard, headers=[mp, auth, ("content-length", "5000")]))
    assert status == 413 and "MB" in body["detail"] and not seen    # body never read
    status, body = run(_call_asgi(guard, headers=[mp, auth], chunks=[b"a" * 600] * 3))
    assert status == 413 and "bytes" not in seen                     # streamed, cut off
    assert run(_call_asgi(guard, headers=[mp]))[0] == 401            # no key
    assert run(_call_asgi(guard, headers=[mp, ("x-api-key", "wrong" * 5)]))[0] == 401
    status, body = run(_call_asgi(guard, headers=[auth, ("content-type", "application/json")]))
    assert status == 415 and "multipart/form-data" in body["detail"]
    assert run(_call_asgi(guard, headers=[mp, auth, ("content-length", "x")]))[0] == 400
    # the page, health and docs stay open
    assert run(_call_asgi(guard, path="/healthz", method="GET"))[0] == 200


# ------------------------------------------------------------------ model sources
def test_model_source_precedence_and_versions(tmp_path):
    from physgm.model import PhysGM, save_model
    from serving.model_source import ModelSource, load_source, newest_checkpoint, resolve_source

    mcfg = ModelConfig(**TINY)
    with pytest.raises(FileNotFoundError, match="--random-init"):
        resolve_source(ServeConfig(), tmp_path)
    assert resolve_source(ServeConfig(random_init=True), tmp_path).kind == "random"
    assert resolve_source(ServeConfig(model_uri="runs:/abc/ckpt"), tmp_path).kind == "mlflow"
    assert resolve_source(ServeConfig(checkpoint="models:/physgm/3"), tmp_path).kind == "mlflow"
    with pytest.raises(FileNotFoundError, match="model.pt"):
        resolve_source(ServeConfig(checkpoint=str(tmp_path / "nowhere")), tmp_path)

    a, _, va = load_source(ModelSource("random", seed=1), mcfg)
    b, _, vb = load_source(ModelSource("random", seed=1), mcfg)
    _, _, vc = load_source(ModelSource("random", seed=2), mcfg)
    assert va == vb != vc                            # same seed, same weights, same label
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    for name in ("old", "new"):
        save_model(tmp_path / name / "checkpoints" / "final", PhysGM(mcfg, load_backbone=False),
                   mcfg)
    newest = newest_checkpoint(tmp_path)
    assert newest.parent.parent.name == "new"
    src = resolve_source(ServeConfig(), tmp_path)
    assert src.kind == "checkpoint" and src.location == str(newest.resolve())
    model, cfg, version = load_source(src, ModelConfig())
    assert cfg.dim == TINY["dim"] and version.startswith("new/final@")
    # DPO's model, written after pretraining's, is the one served by default
    save_model(tmp_path / "old" / "checkpoints" / "dpo", PhysGM(mcfg, load_backbone=False),
               mcfg)
    assert resolve_source(ServeConfig(), tmp_path).location.endswith("old/checkpoints/dpo")
    assert load_source(ModelSource("checkpoint", src.location, model_version="v7"),
                       ModelConfig())[2] == "v7"


# ------------------------------------------------------------------ simulation pipeline
def test_resolve_params_overrides_and_ranges():
    from serving.scene import resolve_params

    mu = np.zeros((len(MATERIALS), 8), np.float32)
    p = resolve_params(mu, "jelly")
    assert p.material == Material.jelly
    lo, hi = PARAM_RANGES[Material.metal]["E"]
    assert lo <= resolve_params(mu, "jelly", "metal").E <= hi
    assert resolve_params(mu, "jelly", None, 2e5).E == 2e5
    for bad in (1e9, float("nan"), 1.0):
        with pytest.raises(ValueError, match="range"):
            resolve_params(mu, "jelly", None, bad)


def test_object_is_placed_inside_the_domain_with_its_volume_kept():
    from physgm.gaussians import Gaussians
    from serving.scene import place_in_domain, sample_object_gaussians, select_object

    req = sample_object_gaussians(400)
    g = Gaussians(*(torch.tensor(req[k]) for k in ("means", "scales", "quats", "opacities",
                                                   "colors")))
    rgb = req["pixel_rgb"].copy()
    rgb[:100] = 0.0                                  # "background" pixels are left out
    sel, appearance = select_object(g, rgb, 0.3, 250)
    assert len(sel) == 250 and appearance == "predicted"
    cfg = ServeConfig(max_particles=1500)
    obj = place_in_domain(sel, cfg, seed=0)
    L, dx = cfg.sim.domain_size, cfg.sim.domain_size / cfg.sim.grid_res
    p = obj.particles
    assert p.shape[0] <= 1500 and np.allclose(p[:250], obj.gaussians.means.numpy(), atol=1e-5)
    assert p.min() >= 3 * dx and p.max() <= L - 3 * dx
    extent = (p.max(0) - p.min(0)).max()
    assert extent == pytest.approx(cfg.object_size * L, rel=0.3)
    assert p[:, 1].min() >= 3 * dx + cfg.drop_height * L * 0.9          # lifted off the floor
    assert abs((p[:, 0].min() + p[:, 0].max()) / 2 - L / 2) < 1e-4
    if obj.volumes is not None:
        assert (obj.volumes > 0).all()


def test_transparent_gaussians_fall_back_to_pixel_colours():
    """An undertrained Gaussian head (all opacities ~0) still yields a visible object: the
    foreground pixels' colours, flagged as appearance "pixels"."""
    from physgm.gaussians import Gaussians
    from serving.scene import select_object

    n = 300
    gen = torch.Generator().manual_seed(0)
    means = torch.rand(n, 3, generator=gen)
    g = Gaussians(means, torch.full((n, 3), 1e-3), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                  torch.full((n,), 1e-6), torch.zeros(n, 3))
    rgb = np.zeros((n, 3), np.float32)
    rgb[:120] = (0.9, 0.5, 0.1)                       # the object's pixels
    sel, appearance = select_object(g, rgb, 0.3, 1000)
    assert appearance == "pixels" and len(sel) == 120
    assert torch.allclose(sel.colors, torch.tensor([0.9, 0.5, 0.1]).expand(120, 3))
    assert (sel.opacities == 0.9).all() and torch.allclose(sel.means, means[:120])
    assert 1e-3 < float(sel.scales[0, 0]) < 0.2       # about half the neighbour spacing
    # no foreground at all: the most opaque ones, as predicted
    sel, appearance = select_object(g, np.zeros((n, 3), np.float32), 0.3, 1000)
    assert appearance == "predicted" and len(sel) == 300


def test_simulate_video_end_to_end_small():
    from physgm.gaussians import Gaussians
    from physgm.materials import PhysParams
    from physgm.video import read_video
    from serving.scene import sample_object_gaussians, simulate_video

    req = sample_object_gaussians(200)
    g = Gaussians(*(torch.tensor(req[k]) for k in ("means", "scales", "quats", "opacities",
                                                   "colors")))
    cfg = build_config({"serve": {"sim": {"n_frames": 3}, "video_size": 32,
                                  "max_particles": 600}}).serve
    out = simulate_video(g, req["pixel_rgb"], PhysParams.default("jelly"), cfg, "mp4")
    assert out.status == "ok" and out.frames == 4 and out.n_gaussians <= 300
    assert out.appearance == "predicted" and out.substeps_per_frame >= 1
    assert out.params["material"] == "jelly" and out.params["E"] == 1e5
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        path.write_bytes(out.video)
        frames = read_video(path)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (32, 32)
    assert frames.max() > 50                         # the object is visible
    assert set(out.timings_s) >= {"simulate", "render", "encode", "total"}
