"""Scene generation: deterministic per seed, physically placed, visible, resampled on
failure (tiny: 32² images, 16³ grid, 3 simulated frames)."""
import numpy as np
import pytest
import torch

from physgm.config import build_config
from physgm.data.synth import (SceneGenerationError, generate_scene, scene_seed, video_camera,
                               video_sim_config)
from physgm.materials import MATERIALS, PARAM_RANGES


def tiny_cfg(sim=None, **data):
    return build_config({"sim": {"grid_res": 16, "device": "cpu", **(sim or {})},
                         "data": {"image_size": 32, "video_frames": 4, "n_views": 5,
                                  "max_particles": 400, **data}})


@pytest.fixture(scope="module")
def scene():
    return generate_scene(2, tiny_cfg(throw_probability=0.0)).scene


def _arrays(s):
    out = {k: getattr(s, k) for k in ("images", "alpha", "depth", "K", "c2w", "video", "video_alpha",
                                      "video_K", "video_c2w", "particles", "volumes")}
    out.update({f"g_{k}": v for k, v in s.gaussians.items()})
    return out


def test_same_seed_same_arrays_other_seed_other_scene(scene):
    again = generate_scene(2, tiny_cfg(throw_probability=0.0)).scene
    for name, arr in _arrays(scene).items():
        np.testing.assert_array_equal(arr, _arrays(again)[name], err_msg=name)
    assert scene.true == again.true and scene.label == again.label
    assert scene.shape == again.shape and scene.seed == again.seed
    other = generate_scene(2, tiny_cfg(throw_probability=0.0, seed=1)).scene
    assert other.seed != scene.seed
    assert other.particles.shape != scene.particles.shape or \
        not np.array_equal(other.particles, scene.particles)
    assert scene_seed(0, 2, 0) != scene_seed(0, 2, 1) != scene_seed(0, 3, 0)


def test_scene_contents(scene):
    cfg = tiny_cfg()
    v, s, t = 5, 32, 4
    assert scene.images.shape == (v, s, s, 3) and scene.images.dtype == np.uint8
    assert scene.alpha.shape == (v, s, s) and scene.video.shape == (t, s, s, 3)
    assert scene.video_alpha.shape == (t, s, s)
    n = len(scene.particles)
    assert 0 < n <= 400 and scene.volumes.shape == (n,)
    np.testing.assert_allclose(scene.volumes, scene.sim["spacing_m"] ** 3, rtol=1e-6)
    np.testing.assert_array_equal(scene.gaussians["means"], scene.particles)
    dx = cfg.sim.domain_size / cfg.sim.grid_res
    assert scene.particles[:, 1].min() > 3 * dx  # above the floor, inside the interior
    assert scene.particles.max() < cfg.sim.domain_size - 3 * dx
    extent = np.ptp(scene.particles, 0).max()
    assert 0.06 <= extent <= 0.25 + 1e-6
    assert scene.true.material in MATERIALS and not scene.true.out_of_range()
    assert scene.label is not None and not scene.label.out_of_range()
    assert scene.sim["n_frames"] == t - 1 and scene.sim["status"] == "ok"
    assert scene.sim["grid_res"] == 16 and scene.source == "synthetic"
    # the object is visible in every view and every frame, and the background is black
    assert (scene.alpha.reshape(v, -1).max(1) > 200).all()
    assert (scene.video_alpha.reshape(t, -1).max(1) > 200).all()
    assert (scene.images[scene.alpha == 0] == 0).all()
    # rgb and alpha agree: pixels with colour have coverage
    assert (scene.alpha[scene.images.max(-1) > 20] > 0).all()
    assert set(scene.appearance) >= {"palette", "hsv", "opacity"}


def test_video_shows_the_fall(scene):
    # dropped from rest: the silhouette's centroid moves down the image (v grows)
    ys = np.arange(32)[None, :, None]
    a = scene.video_alpha.astype(float)
    centroid_v = (a * ys).sum((1, 2)) / a.sum((1, 2))
    assert centroid_v[-1] > centroid_v[0] + 0.5
    assert not np.array_equal(scene.video[0], scene.video[-1])


def test_input_views_look_at_the_object_at_rest(scene):
    centre = (scene.particles.min(0) + scene.particles.max(0)) / 2
    for K, c2w in zip(scene.K, scene.c2w):
        w2c = np.linalg.inv(c2w)
        pc = w2c[:3, :3] @ centre + w2c[:3, 3]
        uv = (K @ pc)[:2] / pc[2]
        np.testing.assert_allclose(uv, [16, 16], atol=0.5)
        assert 0.65 - 1e-3 <= pc[2] <= 1.0 + 1e-3  # data.view_radius_m


def test_depth_is_the_camera_z_of_the_object(scene):
    """The stored depth: 0 off the object (mask < 5 %), else the expected camera-frame z of
    the Gaussians there, i.e. within the object's z extent seen from that camera."""
    assert scene.depth.shape == scene.alpha.shape and scene.depth.dtype == np.float32
    on = scene.alpha >= 0.05 * 255 + 1
    off = scene.alpha < 0.05 * 255 - 1
    assert (scene.depth[off] == 0).all() and (scene.depth[on] > 0).all()
    for v, c2w in enumerate(scene.c2w):
        w2c = np.linalg.inv(c2w)
        z = (scene.particles @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
        spread = 3 * float(scene.gaussians["scales"].max())
        d = scene.depth[v][on[v]]
        assert d.min() >= z.min() - spread and d.max() <= z.max() + spread


def test_video_camera_sees_the_floor_contact():
    cfg = tiny_cfg()
    cam = video_camera(cfg)
    dx = cfg.sim.domain_size / cfg.sim.grid_res
    floor_pt = torch.tensor([[0.5, 3 * dx, 0.5], [0.5, 3 * dx + 0.45, 0.5]])
    uv, z = cam.project(floor_pt)
    assert (z > 0).all() and ((uv > 0) & (uv < 32)).all()
    assert video_sim_config(cfg).n_frames == 3 and video_sim_config(cfg).threads == 1


def test_failed_simulations_are_resampled():
    # thrown objects exceed max_speed (unstable); plain drops do not
    cfg = tiny_cfg(sim={"max_speed": 1.0}, video_frames=2, throw_probability=0.7,
                   throw_speed_mps=4.0, n_views=1, max_attempts=20)
    results = [generate_scene(i, cfg) for i in range(4)]
    assert sum(r.resampled for r in results) > 0
    for r in results:
        assert r.scene.sim["status"] == "ok" and r.failures == ["unstable"] * r.resampled
        assert r.scene.extra["attempt"] == r.resampled


def test_all_attempts_failing_raises_with_advice():
    cfg = tiny_cfg(sim={"max_speed": 1e-3}, video_frames=2, n_views=1, max_attempts=2)
    with pytest.raises(SceneGenerationError, match="all 2 draws failed"):
        generate_scene(0, cfg)


def test_materials_and_shapes_are_configurable():
    cfg = tiny_cfg(materials=["snow"], shapes=["sphere"], n_views=1, video_frames=2,
                   label_noise=0.0)
    s = generate_scene(0, cfg).scene
    assert s.true.material.value == "snow" and s.label == s.true
    assert {p["shape"] for p in s.shape["parts"]} == {"sphere"}
    assert set(s.true.values()) == set(PARAM_RANGES[s.true.material])
