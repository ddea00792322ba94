"""Bring your own Gaussians: reading 3DGS PLY files written here by hand (SH degree 0–3,
missing and extra properties, lying headers), PhysGaussian-style filling, placing a scene of
any units in the domain, and `physgm simulate --ply`."""
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from uploads import C0, ball, ply_bytes

from physgm.camera import Camera
from physgm.config import build_config
from physgm.gaussians import Gaussians, fill_particles
from physgm.ply import PlyError, read_ply
from physgm.ply_scene import (build_scene, gaussians_at, normalising_transform,
                              parse_transform, select_gaussians, transform_camera,
                              transform_gaussians, up_rotation)


# ------------------------------------------------------------------ reading
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_original_layout_any_sh_degree_is_activated(degree, tmp_path):
    raw = ball(300, radius=2.0, centre=(5.0, -1.0, 3.0))
    extra = {"semantic_id": np.arange(300.0), "nx_extra": np.ones(300)}
    path = tmp_path / "scene.ply"
    path.write_bytes(ply_bytes(raw, degree, extra=extra))
    g, layout = read_ply(path)
    assert layout.sh_degree == degree and layout.n_gaussians == 300
    assert {"semantic_id", "nx_extra", "nx"} <= set(layout.ignored)
    assert sum(n.startswith("f_rest_") for n in layout.ignored) == 3 * ((degree + 1) ** 2 - 1)
    assert g.means.dtype == torch.float32
    np.testing.assert_allclose(g.means.numpy(), raw["xyz"], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(g.colors.numpy(), np.clip(0.5 + C0 * raw["f_dc"], 0, 1), atol=1e-6)
    np.testing.assert_allclose(g.opacities.numpy(), 1 / (1 + np.exp(-3.0)), atol=1e-6)
    np.testing.assert_allclose(g.scales.numpy(), np.exp(raw["scale"]), rtol=1e-5)
    # the same scene through the DESIGN contract's entry point, from bytes
    back = Gaussians.load_ply(path.read_bytes())
    assert torch.equal(back.means, g.means) and torch.equal(back.colors, g.colors)


def test_ascii_big_endian_and_no_normals_read_the_same():
    raw = ball(50)
    a, _ = read_ply(ply_bytes(raw, 1))
    for kw in ({"fmt": "ascii"}, {"fmt": "binary_big_endian"}, {"normals": False}):
        b, layout = read_ply(ply_bytes(raw, 1, **kw))
        assert torch.allclose(a.means, b.means, atol=1e-5), kw
        assert torch.allclose(a.scales, b.scales, rtol=1e-5), kw
        assert torch.allclose(a.quats, b.quats, atol=1e-5) and layout.sh_degree == 1, kw


def test_missing_properties_are_named():
    raw = ball(20)
    with pytest.raises(PlyError, match="scale_1, rot_3") as err:
        read_ply(ply_bytes(raw, drop=("scale_1", "rot_3")))
    assert err.value.reason == "invalid"
    with pytest.raises(PlyError, match="f_rest_40, f_rest_44"):
        read_ply(ply_bytes(raw, 3, drop=("f_rest_40", "f_rest_44")))
    with pytest.raises(PlyError, match=r"missing f_rest_10, f_rest_11,.* f_rest_23 \("):
        read_ply(ply_bytes(raw, 1, extra={"f_rest_9": np.zeros(20)}))
    with pytest.raises(PlyError, match="no 'vertex'"):
        read_ply(b"ply\nformat ascii 1.0\nelement face 0\nend_header\n")


@pytest.mark.parametrize("data,reason", [
    (ply_bytes(ball(10), count=10 ** 12), "malformed"),                    # 12 bytes declare TBs
    (ply_bytes(ball(10), fmt="ascii", count=10 ** 12), "malformed"),
    (ply_bytes(ball(10), count=11), "malformed"),                           # one row short
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 5\n" + b"x" * 70000, "malformed"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex -5\nend_header\n", "malformed"),
    (b"PK\x03\x04 a zip file", "malformed"),
    (ply_bytes(ball(10)).replace(b"property float opacity", b"property list uchar float "
                                                            b"opacity"), "invalid"),
])
def test_lying_or_broken_files_fail_before_allocating(data, reason):
    with pytest.raises(PlyError) as err:
        read_ply(data)
    assert err.value.reason == reason and len(str(err.value)) > 20


def test_limits_and_bad_values():
    raw = ball(40)
    with pytest.raises(PlyError, match="at most 39") as err:
        read_ply(ply_bytes(raw), max_gaussians=39)
    assert err.value.reason == "too_large"
    raw["xyz"][3, 1] = np.nan
    with pytest.raises(PlyError, match="NaN"):
        read_ply(ply_bytes(raw))
    raw = ball(40)
    raw["rot"][5] = 0.0                                   # a zero quaternion: identity
    raw["scale"][6] = -200.0                              # exp underflows float32
    g, _ = read_ply(ply_bytes(raw))
    assert torch.equal(g.quats[5], torch.tensor([1.0, 0, 0, 0])) and bool((g.scales > 0).all())
    with pytest.raises(FileNotFoundError):
        read_ply("no/such/file.ply")


# ------------------------------------------------------------------ filling
def _sphere(n, r, keep=lambda p: torch.ones(len(p), dtype=torch.bool)):
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi, theta = torch.acos(1 - 2 * i / n), math.pi * (1 + 5 ** 0.5) * i
    p = r * torch.stack([torch.cos(theta) * torch.sin(phi), torch.cos(phi),
                         torch.sin(theta) * torch.sin(phi)], -1).float()
    return Gaussians.from_points(p[keep(p)], scale=0.015, opacity=0.9)


def test_raycast_fills_what_a_captured_object_misses():
    """PhysGaussian's ray test fills a sphere with a hole and a dome without its underside
    (open_side -y); the flood fill lets both leak."""
    holey = _sphere(2500, 0.3, lambda p: (p - torch.tensor([0.3, 0, 0])).norm(dim=-1) > 0.08)
    dome = _sphere(2500, 0.3, lambda p: p[:, 1] > -0.1)
    for g, side in ((holey, None), (dome, "-y")):
        n = len(g)
        leak, _ = fill_particles(g, grid_res=24, interior="enclosed")
        fill, vol = fill_particles(g, grid_res=24, interior="raycast", open_side=side)
        assert float(leak[n:].norm(dim=-1).min()) > 0.2              # nothing reached the core
        r = fill[n:].norm(dim=-1)
        assert float(r.min()) < 0.08 and float(r.max()) < 0.36       # core filled, no overflow
        assert float(vol.sum()) > 0.7 * 4 / 3 * math.pi * 0.3 ** 3 * (0.8 if side else 1.0)
    # a dome without the open side stays hollow under the raycast test too
    shut, _ = fill_particles(dome, grid_res=24, interior="raycast")
    assert float(shut[len(dome):].norm(dim=-1).min()) > 0.2
    with pytest.raises(ValueError, match="open_side"):
        fill_particles(dome, interior="raycast", open_side="up")


# ------------------------------------------------------------------ placing a scene
def test_any_world_units_land_on_the_same_object():
    """The same ball written in millimetres and in kilometres, with y or -z up, becomes the
    same object in the domain: size and centre as asked."""
    sim = build_config({}).sim
    raw_mm = ball(800, radius=150.0, centre=(1000.0, 400.0, -250.0))
    raw_km = ball(800, radius=1.5e-4, centre=(1.0, 0.4, -0.25))
    results = []
    for raw, up in ((raw_mm, "+y"), (raw_km, "+y"), (raw_mm, "-z")):
        g, _ = read_ply(ply_bytes(raw))
        T = normalising_transform(g.means, 0.3, (0.5, 0.35, 0.5), up)
        scene = build_scene(g, sim, T, max_particles=6000)
        p = scene.particles
        extent = scene.gaussians.means.max(0).values - scene.gaussians.means.min(0).values
        assert float(extent.max()) == pytest.approx(0.3, rel=1e-4)
        centre = (scene.gaussians.means.max(0).values + scene.gaussians.means.min(0).values) / 2
        assert torch.allclose(centre, torch.tensor([0.5, 0.35, 0.5]), atol=1e-4)
        assert len(p) <= 6000 and float(np.linalg.norm(p - [0.5, 0.35, 0.5], axis=1).min()) < 0.05
        assert scene.volumes.sum() == pytest.approx(scene.volumes[0] * len(p))  # equal shares
        results.append(scene.volumes.sum())
    assert results[0] == pytest.approx(results[1], rel=0.02)                   # mm = km
    # a scene that would not fit is refused with what to change
    g, _ = read_ply(ply_bytes(raw_mm))
    with pytest.raises(ValueError, match="--size"):
        build_scene(g, sim, normalising_transform(g.means, 0.99, (0.5, 0.5, 0.5)))


def test_transforms_cameras_and_following():
    assert np.allclose(up_rotation("-z") @ [0, 0, -1], [0, 1, 0])
    assert np.allclose(up_rotation("+x") @ [1, 0, 0], [0, 1, 0])
    T = np.array([[0, -2.0, 0, 0.5], [2.0, 0, 0, 0.3], [0, 0, 2.0, 0.5], [0, 0, 0, 1]])
    assert np.array_equal(parse_transform(json.dumps(T.tolist())), T)
    for bad in ([[1, 0, 0, 0]] * 4, np.diag([1.0, 2.0, 1.0, 1.0]).tolist(),
                np.diag([-1.0, 1.0, 1.0, 1.0]).tolist()):
        with pytest.raises(ValueError, match="transform"):
            parse_transform(json.dumps(bad))
    g = Gaussians.from_points(torch.rand(30, 3) * 0.1, scale=0.01)
    g.scales = torch.rand(30, 3) * 0.02 + 0.005
    g.quats = torch.randn(30, 4)
    moved = transform_gaussians(g, T)
    R = torch.tensor(T[:3, :3] / 2, dtype=torch.float32)
    assert torch.allclose(moved.covariances(), 4 * R @ g.covariances() @ R.T, atol=1e-7)
    # a camera of the scene's frame sees the mapped scene where it saw the original
    cam = Camera.look_at((0.05, 0.05, 0.6), (0.05, 0.05, 0.05), 40, 64, 64)
    uv, _ = cam.project(g.means)
    uv2, _ = transform_camera(cam, T).project(moved.means)
    assert torch.allclose(uv, uv2, atol=1e-3)
    # following: Gaussians ride their particle affinely
    raw = ball(400, radius=1.0)
    g, _ = read_ply(ply_bytes(raw))
    scene = build_scene(g, build_config({}).sim,
                        normalising_transform(g.means, 0.3, (0.5, 0.4, 0.5)), 4000)
    shift, F = np.array([0.01, -0.02, 0.0]), np.diag([1.1, 0.9, 1.0])
    pos, Fg = gaussians_at(scene, scene.particles + shift,
                           np.broadcast_to(F, (len(scene.particles), 3, 3)))
    x0 = torch.as_tensor(scene.particles)[scene.follow]
    expect = x0 + shift + (scene.gaussians.means - x0) @ torch.tensor(F, dtype=torch.float32).T
    assert torch.allclose(pos, expect.float(), atol=1e-6) and Fg.shape == (400, 3, 3)
    assert len(select_gaussians(g, 0.95)) == len(g)               # σ(3) = 0.953
    with pytest.raises(ValueError, match="min_opacity"):
        select_gaussians(g, 0.99)
    assert len(select_gaussians(g, 0.0, crop=(-2, 2, 0, 2, -2, 2))) < len(g)


# ------------------------------------------------------------------ the command
def test_simulate_ply_command_writes_npz_and_video(tmp_path):
    from physgm.cli import app
    from physgm.video import read_video

    runner = CliRunner()
    path = tmp_path / "ball.ply"
    path.write_bytes(ply_bytes(ball(600, radius=40.0, centre=(3.0, -100.0, 7.0)), 3))
    base = ["simulate", "--ply", str(path), "--material", "jelly", "--size", "0.25",
            "--frames", "3", "--json", "--set", "render.width=48", "--set", "render.height=48"]
    res = runner.invoke(app, base + ["--out", str(tmp_path / "t.npz")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["sh_degree"] == 3
    assert summary["ply_gaussians"] == 600 and summary["n_particles"] > 600   # filled
    npz = np.load(tmp_path / "t.npz")
    assert npz["positions"].shape == (4, summary["n_particles"], 3)
    assert npz["gaussian_particle"].shape == (600,) and npz["transform"].shape == (4, 4)
    assert npz["positions"][-1, :, 1].mean() < npz["positions"][0, :, 1].mean()   # it falls
    cam = Camera.look_at((3.0, -100.0, 250.0), (3.0, -100.0, 7.0), 40, 64, 48).to_dict()
    res = runner.invoke(app, base + ["--out", str(tmp_path / "v.mp4"),
                                     "--camera", json.dumps(cam)])
    assert res.exit_code == 0, res.output
    frames = read_video(tmp_path / "v.mp4")
    assert frames.shape == (4, 36, 48, 3) and frames[0].max() > 60            # it is seen
    for extra, needle in ((["--camera", "{}"], "camera"), (["--up", "z"], "up"),
                          (["--transform", "[[1]]"], "transform"),
                          (["--min-opacity", "0.99"], "min_opacity")):
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2 and needle in res.output, (extra, res.output)
