"""Camera: look_at axes, projection/ray consistency, Plücker properties, serialisation,
validation."""
import json
import math

import numpy as np
import pytest
import torch

from physgm.camera import Camera, orbit_cameras, plucker, plucker_batch, random_cameras


def test_look_at_axes_opencv_and_world_up():
    cam = Camera.look_at(eye=(0, 0, 3), target=(0, 0, 0), fov_deg=60, width=80, height=60)
    R = cam.c2w[:3, :3]
    assert torch.allclose(R[:, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)   # z forward
    assert torch.allclose(R[:, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)    # x right
    assert torch.allclose(R[:, 1], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)   # y down
    assert abs(float(torch.linalg.det(R)) - 1.0) < 1e-6
    # vertical fov: fy = (H/2) / tan(fov/2), centred principal point
    assert cam.fy == pytest.approx(30.0 / math.tan(math.radians(30)), rel=1e-6)
    assert (cam.cx, cam.cy) == (40.0, 30.0)
    # a point above the target (world +y) appears in the upper half of the image (v < cy)
    uv, z = cam.project(torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]))
    assert uv[0, 1] < cam.cy and uv[1, 0] > cam.cx and torch.allclose(z, torch.tensor([3.0, 3.0]))
    # the target projects to the image centre
    uv, _ = cam.project(torch.zeros(1, 3))
    assert torch.allclose(uv, torch.tensor([[40.0, 30.0]]), atol=1e-4)


def test_w2c_inverts_c2w():
    cam = random_cameras(1, generator=3)[0]
    assert torch.allclose(cam.w2c @ cam.c2w, torch.eye(4), atol=1e-5)


def test_top_down_view_is_valid():
    cam = Camera.look_at((0, 2, 0), (0, 0, 0), 40, 32, 32)
    assert torch.allclose(cam.c2w[:3, 2], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)


def test_rays_and_plucker_properties():
    cam = random_cameras(1, generator=torch.Generator().manual_seed(0), width=20, height=12)[0]
    o, d = cam.rays()
    assert o.shape == d.shape == (12, 20, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(12, 20), atol=1e-5)
    assert torch.allclose(o, cam.position.expand(12, 20, 3))
    # a point on the ray through pixel (i, j) projects back to that pixel's centre
    pts = (o + 1.7 * d).reshape(-1, 3)
    uv, z = cam.project(pts)
    v, u = torch.meshgrid(torch.arange(12) + 0.5, torch.arange(20) + 0.5, indexing="ij")
    assert torch.allclose(uv, torch.stack([u, v], -1).reshape(-1, 2).float(), atol=1e-3)
    assert bool((z > 0).all())
    p = plucker(cam)
    assert p.shape == (6, 12, 20)
    m, dd = p[:3], p[3:]
    assert torch.allclose(dd.norm(dim=0), torch.ones(12, 20), atol=1e-5)
    assert (m * dd).sum(0).abs().max() < 1e-5                 # moment ⟂ direction
    # the moment is the same for any point on the ray: (o + t d) × d = o × d
    q = (o + 0.9 * d).permute(2, 0, 1)
    assert torch.allclose(torch.linalg.cross(q, dd, dim=0), m, atol=1e-5)


def test_plucker_batch_shape_and_size_check():
    cams = orbit_cameras(3, radius=2.0, elevation_deg=20, width=16, height=8)
    assert plucker_batch(cams).shape == (3, 6, 8, 16)
    with pytest.raises(ValueError, match="one image size"):
        plucker_batch([cams[0], cams[1].scaled(8, 4)])


def test_orbit_cameras_circle_and_look_at_target():
    target = torch.tensor([0.5, 0.2, 0.5])
    cams = orbit_cameras(4, radius=2.0, elevation_deg=30, target=target.tolist())
    for c in cams:
        assert float((c.position - target).norm()) == pytest.approx(2.0, rel=1e-5)
        assert float(c.position[1] - target[1]) == pytest.approx(2.0 * math.sin(math.radians(30)),
                                                                 rel=1e-5)
        uv, _ = c.project(target[None])
        assert torch.allclose(uv, torch.tensor([[32.0, 32.0]]), atol=1e-3)
    assert float((cams[0].position - cams[2].position).norm()) == pytest.approx(
        2 * 2.0 * math.cos(math.radians(30)), rel=1e-5)


def test_random_cameras_ranges_and_reproducible():
    a = random_cameras(8, generator=5, radius=(1.0, 2.0), elevation_deg=(10, 40))
    b = random_cameras(8, generator=5, radius=(1.0, 2.0), elevation_deg=(10, 40))
    for ca, cb in zip(a, b):
        assert torch.equal(ca.c2w, cb.c2w)
        r = float(ca.position.norm())
        assert 1.0 - 1e-5 <= r <= 2.0 + 1e-5
        el = math.degrees(math.asin(float(ca.position[1]) / r))
        assert 10 - 1e-3 <= el <= 40 + 1e-3


def test_scaled_keeps_the_field_of_view():
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 50, 64, 48)
    half = cam.scaled(32, 24)
    p = torch.tensor([[0.3, -0.2, 0.1]])
    assert torch.allclose(half.project(p)[0], cam.project(p)[0] / 2, atol=1e-4)


def test_dict_round_trip_through_json():
    cam = random_cameras(1, generator=1, width=40, height=30)[0]
    d = json.loads(json.dumps(cam.to_dict()))
    back = Camera.from_dict(d)
    assert (back.width, back.height) == (40, 30)
    assert torch.allclose(back.K, cam.K) and torch.allclose(back.c2w, cam.c2w)
    # without a size the principal point gives it
    bare = Camera.from_dict({"K": d["K"], "c2w": d["c2w"]})
    assert (bare.width, bare.height) == (40, 30)


@pytest.mark.parametrize("mutate, match", [
    (lambda K, T: K.__setitem__((0, 0), -5.0), "positive focal"),
    (lambda K, T: K.__setitem__((1, 1), 0.0), "positive focal"),
    (lambda K, T: T.__setitem__((0, 0), 2.0), "orthonormal"),
    (lambda K, T: T.__setitem__((1, 3), float("nan")), "NaN"),
    (lambda K, T: K.__setitem__((2, 0), 1.0), r"\[0, 0, 1\]"),
    (lambda K, T: T.__setitem__((slice(None), 0), -T[:, 0]), "reflection"),
])
def test_bad_camera_raises_value_error(mutate, match):
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 40, 32, 32)
    K, T = cam.K.clone().numpy(), cam.c2w.clone().numpy()
    mutate(K, T)
    with pytest.raises(ValueError, match=match):
        Camera(K, T, 32, 32)


def test_bad_shapes_and_sizes():
    with pytest.raises(ValueError, match="shape"):
        Camera(np.eye(3)[:2], np.eye(4), 8, 8)
    with pytest.raises(ValueError, match="width/height"):
        Camera(np.diag([10.0, 10.0, 1.0]), np.eye(4), 0, 8)
    with pytest.raises(ValueError, match="mapping"):
        Camera.from_dict({"K": np.eye(3).tolist()})
