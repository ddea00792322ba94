"""The warp backend (forward only) draws the torch backend's image: random scenes, a simulated
object, backgrounds, empty and culled scenes, NaN rows in render_video; frames per launch,
backend choice, the no-gradient guard and the warp lock."""
import threading
import time

import numpy as np
import pytest
import torch

from physgm.camera import Camera
from physgm.config import MPMConfig
from physgm.gaussians import Gaussians
from physgm.materials import PhysParams
from physgm.render import rasterize, render_video
from physgm.render.api import resolve_backend
from test_render import random_scene

TOL = 1e-4


def assert_same(a, b, tol=TOL):
    for name, x, y in zip(("rgb", "alpha", "depth"), a, b):
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert float((x - y).abs().max()) < tol, (name, float((x - y).abs().max()))


@pytest.mark.parametrize("n, seed, size, bg, dtype", [
    (400, 1, (45, 37), (0.2, 0.4, 0.6), torch.float32),   # not a multiple of any tile
    (1500, 2, (64, 64), None, torch.float32),             # opaque: early termination
    (60, 3, (17, 80), (1.0, 1.0, 1.0), torch.float32),
    (300, 4, (40, 32), (0.1, 0.0, 0.3), torch.float64),   # computed in float32, returned as f64
])
def test_warp_equals_torch_on_random_scenes(n, seed, size, bg, dtype):
    g = random_scene(n, seed, dtype)
    cam = Camera.look_at((0.2, 0.3, 1.6), (0, 0, 0), 50, *size)
    with torch.no_grad():
        ref = rasterize(g, cam, background=bg, backend="torch")
        out = rasterize(g, cam, background=bg, backend="warp")
    assert float(ref.alpha.max()) > 0.9 and float(ref.alpha.min()) < 0.5
    assert_same(out, ref)


def test_empty_and_culled_scenes_show_the_background():
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 16, 12)
    behind = random_scene(20, 5, spread=0.1)
    behind.means = behind.means + torch.tensor([0.0, 0.0, 2.5])      # all behind the camera
    empty = behind.subset(torch.zeros(20, dtype=torch.bool))
    for g in (behind, empty):
        out = rasterize(g, cam, background=(0.2, 0.4, 0.6), backend="warp")
        assert torch.equal(out.rgb, torch.tensor([0.2, 0.4, 0.6]).expand(12, 16, 3))
        assert float(out.alpha.abs().max()) == 0.0 and float(out.depth.abs().max()) == 0.0
        assert_same(out, rasterize(g, cam, background=(0.2, 0.4, 0.6), backend="torch"))
    video = render_video(empty, torch.zeros(3, 0, 3), None, cam, backend="warp")
    assert video.shape == (3, 12, 16, 3) and video.max() == 0


def test_some_gaussians_behind_the_camera():
    g = random_scene(300, 6, spread=0.8)
    cam = Camera.look_at((0, 0, 0.5), (0, 0, 0), 60, 48, 40)     # the camera sits in the cloud
    with torch.no_grad():
        assert_same(rasterize(g, cam, backend="warp"), rasterize(g, cam, backend="torch"))


@pytest.fixture(scope="module")
def simulated():
    """A jelly sphere dropped on the floor (8 frames), textured Gaussians on its particles."""
    from physgm.sim import sample_shape, simulate

    dx = 1.0 / 32
    x = sample_shape("sphere", (0.5, 0.33, 0.5), 0.2, dx / 2)
    rng = np.random.default_rng(0)
    colors = np.clip(np.array([0.9, 0.3, 0.2]) + rng.normal(0, 0.15, x.shape), 0, 1)
    g = Gaussians.from_points(torch.from_numpy(x), torch.from_numpy(colors).float(),
                              scale=dx / 2.5)
    r = simulate(x, PhysParams.default("jelly", E=3e4, nu=0.3),
                 MPMConfig(grid_res=32, n_frames=7, device="cpu"))
    assert r.status == "ok"
    cam = Camera.look_at((0.5, 0.3, 1.6), (0.5, 0.22, 0.5), 35.0, 64, 64)
    return g, r.positions, r.deformation, cam


@pytest.mark.parametrize("size", [64, 96])
def test_simulated_object_frames_match_torch(simulated, size):
    g, pos, defo, cam = simulated
    bg = (0.3, 0.3, 0.35)
    for f in (0, len(pos) - 1):
        d = g.deform(torch.from_numpy(pos[f]), torch.from_numpy(defo[f]))
        ref = rasterize(d, cam, size, size, bg, backend="torch")
        assert float(ref.alpha.max()) > 0.99
        assert_same(rasterize(d, cam, size, size, bg, backend="warp"), ref)
    v_torch = render_video(g, pos, defo, cam, size, size, bg, backend="torch", with_alpha=True)
    v_warp = render_video(g, pos, defo, cam, size, size, bg, backend="warp", with_alpha=True)
    for a, b in zip(v_torch, v_warp):
        assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
        assert np.abs(a.astype(int) - b).max() <= 1 and (a != b).mean() < 1e-3


def test_render_video_drops_nan_rows_like_torch():
    g = random_scene(200, 7, spread=0.3)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 40, 36)
    n_frames = 5
    t = torch.linspace(0, 1, n_frames)[:, None, None]
    pos = (g.means[None] + t * torch.tensor([0.2, -0.1, 0.0])).numpy().copy()
    defo = (torch.eye(3) + 0.3 * t[..., None] * torch.randn(n_frames, 200, 3, 3,
            generator=torch.Generator().manual_seed(0))).numpy().copy()
    pos[1, :50] = np.nan                  # rows vanish in frame 1
    defo[2, 50:90, 0, 0] = np.inf         # F blows up in frame 2
    defo[3, 90:95] = 1e30                 # F Σ Fᵀ overflows in frame 3
    ref = render_video(g, pos, defo, cam, backend="torch", background=(0.1, 0.2, 0.3))
    videos = [render_video(g, pos, defo, cam, backend=b, background=(0.1, 0.2, 0.3), **kw)
              for b, kw in (("warp", {}), ("auto", {}), ("warp", {"frames_per_launch": 2}),
                            ("warp", {"frames_per_launch": 1}))]
    assert np.abs(videos[0].astype(int) - ref).max() <= 1
    for v in videos[1:]:
        assert np.array_equal(v, videos[0])                      # batching: the same
    kept = g.subset(torch.arange(200) >= 50).deform(torch.from_numpy(pos[1, 50:]),
                                                    torch.from_numpy(defo[1, 50:]))
    one = rasterize(kept, cam, background=(0.1, 0.2, 0.3), backend="warp").rgb
    assert np.array_equal(videos[0][1], (one.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())


def test_backend_choice_and_the_gradient_guard():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "torch"                          # rasterize: grads
    assert resolve_backend("auto", cpu, differentiable=False) == "warp"     # render_video
    assert resolve_backend("warp", cpu) == "warp"
    g = random_scene(30, 8)
    g.means.requires_grad_(True)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 16, 16)
    with pytest.raises(RuntimeError, match="forward only"):
        rasterize(g, cam, backend="warp")
    with torch.no_grad():
        out = rasterize(g, cam, backend="warp")
    assert not out.rgb.requires_grad
    assert rasterize(g, cam).rgb.requires_grad                              # auto stays torch


def test_warp_launch_waits_for_the_simulators_warp_lock():
    """A CPU graph capture in physgm.sim holds WARP_LOCK: rendering must not launch then."""
    from physgm.sim.stepper import WARP_LOCK

    g = random_scene(50, 9)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 16, 16)
    rasterize(g, cam, backend="warp")                                       # compiled
    done = threading.Event()
    with WARP_LOCK:
        worker = threading.Thread(target=lambda: (rasterize(g, cam, backend="warp"), done.set()))
        worker.start()
        time.sleep(0.3)
        assert not done.is_set()
    worker.join(timeout=30)
    assert done.is_set()
