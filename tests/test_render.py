"""Renderer: analytic single Gaussians, depth ordering, tiled == dense, gradients,
background/depth conventions, backends, render_video."""
import math

import numpy as np
import pytest
import torch

from physgm.camera import Camera
from physgm.gaussians import Gaussians, quat_to_rotmat
from physgm.render import RenderOutput, rasterize, rasterize_dense, rasterize_tiled, render_video
from physgm.render.api import resolve_backend


def one_gaussian(mean, scales, quat=(1.0, 0, 0, 0), opacity=0.8, color=(1.0, 0.5, 0.25),
                 dtype=torch.float32) -> Gaussians:
    t = lambda x: torch.tensor([x], dtype=dtype)  # noqa: E731
    return Gaussians(t(mean), t(scales), t(quat), torch.tensor([opacity], dtype=dtype), t(color))


def analytic_alpha(g: Gaussians, cam: Camera, width: int, height: int) -> np.ndarray:
    """o·exp(−½ dᵀΣ'⁻¹d) with Σ' = J W Σ Wᵀ Jᵀ + 0.3 I, by hand in float64 (3DGS's cut-offs:
    α clamped to 0.99, skipped below 1/255)."""
    K = cam.K.double().numpy()
    w2c = cam.w2c.double().numpy()
    W, tv = w2c[:3, :3], w2c[:3, 3]
    mu = g.means[0].double().numpy()
    R = quat_to_rotmat(g.quats.double())[0].numpy()
    S = np.diag(g.scales[0].double().numpy())
    cov = R @ S @ S.T @ R.T
    x, y, z = W @ mu + tv
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    J = np.array([[fx / z, 0, -fx * x / z ** 2], [0, fy / z, -fy * y / z ** 2]])
    cov2 = J @ W @ cov @ W.T @ J.T + 0.3 * np.eye(2)
    centre = np.array([fx * x / z + cx, fy * y / z + cy])
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    d = np.stack([u, v], -1) - centre
    power = np.einsum("hwi,ij,hwj->hw", d, np.linalg.inv(cov2), d)
    a = min(float(g.opacities[0]), 1.0) * np.exp(-0.5 * power)
    return np.where(a >= 1 / 255, np.minimum(a, 0.99), 0.0)


CAM = Camera.look_at(eye=(0.3, 0.4, 2.0), target=(0.0, 0.0, 0.0), fov_deg=45, width=40,
                     height=32)


@pytest.mark.parametrize("mean, scales, quat", [
    ((0.0, 0.0, 0.0), (0.08, 0.08, 0.08), (1.0, 0, 0, 0)),                  # isotropic, centred
    ((0.15, -0.1, 0.2), (0.12, 0.03, 0.06), (0.9, 0.3, -0.2, 0.4)),         # anisotropic, off-axis
])
def test_single_gaussian_matches_analytic_ewa(mean, scales, quat):
    g = one_gaussian(mean, scales, quat)
    out = rasterize(g, CAM, 40, 32, backend="torch")
    expected = analytic_alpha(g, CAM, 40, 32)
    assert expected.max() > 0.5 and (expected == 0).mean() > 0.2   # a real blob, in frame
    np.testing.assert_allclose(out.alpha.numpy(), expected, atol=2e-5)
    color = torch.tensor([1.0, 0.5, 0.25])
    np.testing.assert_allclose(out.rgb.numpy(), expected[..., None] * color.numpy(), atol=2e-5)
    # expected depth is the Gaussian's camera z where it is drawn, 0 elsewhere
    z = float(CAM.project(g.means)[1][0])
    drawn = expected > 0
    np.testing.assert_allclose(out.depth.numpy()[drawn], z, rtol=1e-5)
    assert float(out.depth.numpy()[~drawn].max()) == 0.0


def test_low_pass_filter_sets_the_size_of_a_tiny_gaussian():
    g = one_gaussian((0.0, 0.0, 0.0), (1e-5, 1e-5, 1e-5), opacity=1.0)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 32, 32)
    out = rasterize(g, cam, 32, 32, backend="torch")
    # Σ' ≈ 0.3 I px²: pixel (15, 15)'s centre is (−0.5, −0.5) px from the projected centre
    assert float(out.alpha[15, 15]) == pytest.approx(math.exp(-0.5 * 0.5 / 0.3), rel=1e-3)
    assert float(out.alpha[16, 17]) == pytest.approx(math.exp(-0.5 * 2.5 / 0.3), rel=1e-3)
    np.testing.assert_allclose(out.alpha.numpy(), analytic_alpha(g, cam, 32, 32), atol=1e-5)


def test_near_gaussian_occludes_far_one_in_any_input_order():
    def pair(opacity):
        red = one_gaussian((0.0, 0.0, 0.5), (0.2, 0.2, 0.01), opacity=opacity, color=(1.0, 0, 0))
        blue = one_gaussian((0.0, 0.0, -0.5), (0.2, 0.2, 0.01), opacity=opacity, color=(0, 0, 1.0))
        return red, blue

    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 25, 25)    # pixel 12's centre is on axis
    red, blue = pair(0.9)
    a = rasterize(Gaussians.cat([red, blue]), cam, backend="torch")
    b = rasterize(Gaussians.cat([blue, red]), cam, backend="torch")
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-6)
    # centre pixel: red weight 0.9, blue 0.1·0.9; ED depth = Σ w z / Σ w (z_red 1.5, z_blue 2.5)
    assert torch.allclose(a.rgb[12, 12], torch.tensor([0.9, 0.0, 0.09]), atol=1e-5)
    assert float(a.depth[12, 12]) == pytest.approx((0.9 * 1.5 + 0.09 * 2.5) / 0.99, rel=1e-5)
    # with α = 0.99 the red one leaves T = 0.01 and blue would take it to 1e-4: 3DGS stops there
    red, blue = pair(1.0)
    c = rasterize(Gaussians.cat([blue, red]), cam, backend="torch")
    assert torch.allclose(c.rgb[12, 12], torch.tensor([0.99, 0.0, 0.0]), atol=1e-6)
    assert float(c.depth[12, 12]) == pytest.approx(1.5, rel=1e-6)


def random_scene(n, seed, dtype=torch.float32, spread=0.5):
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(means=(torch.rand(n, 3, generator=gen) - 0.5) * 2 * spread,
                     scales=torch.rand(n, 3, generator=gen) * 0.08 + 0.005,
                     quats=torch.randn(n, 4, generator=gen),
                     opacities=torch.rand(n, generator=gen),
                     colors=torch.rand(n, 3, generator=gen)).to(dtype=dtype)


def dense_args(g, cam, w, h, bg=None):
    return (g.means, g.covariances(), g.opacities, g.colors, cam.K.to(g.means),
            cam.w2c.to(g.means), w, h, bg)


@pytest.mark.parametrize("tile, chunk, budget", [(16, 128, 1 << 21), (8, 7, 4096), (5, 3, 1)])
def test_tiled_equals_dense_reference(tile, chunk, budget):
    g = random_scene(400, seed=1)
    cam = Camera.look_at((0.2, 0.3, 1.6), (0, 0, 0), 50, 45, 37)   # not a multiple of any tile
    bg = torch.tensor([0.2, 0.4, 0.6])
    dense = rasterize_dense(*dense_args(g, cam, 45, 37, bg))
    tiled = rasterize_tiled(*dense_args(g, cam, 45, 37, bg), tile_size=tile, chunk=chunk,
                            budget=budget)
    assert float(dense[1].max()) > 0.99 and float(dense[1].min()) < 0.5   # opaque and empty parts
    for d, t in zip(dense, tiled):
        assert d.shape == t.shape
        assert float((d - t).abs().max()) < 1e-5


def test_early_termination_matches_dense():
    # 40 layers of α = 0.8 on the axis: T = 0.2^k, and the 6th layer would take it below 1e-4
    n = 40
    g = Gaussians(means=torch.stack([torch.zeros(n), torch.zeros(n), torch.linspace(0.5, -0.5, n)], 1),
                  scales=torch.full((n, 3), 0.3), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                  opacities=torch.full((n,), 0.8), colors=torch.rand(n, 3))
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 21, 21)        # pixel 10's centre is on axis
    dense = rasterize_dense(*dense_args(g, cam, 21, 21))
    tiled = rasterize_tiled(*dense_args(g, cam, 21, 21), tile_size=8, chunk=3)
    for d, t in zip(dense, tiled):
        assert float((d - t).abs().max()) < 1e-5
    w = 0.8 * 0.2 ** torch.arange(5.0)
    assert torch.allclose(tiled[0][10, 10], (w[:, None] * g.colors[:5]).sum(0), atol=1e-5)
    assert float(tiled[1][10, 10]) == pytest.approx(1 - 0.2 ** 5, abs=1e-6)


def test_gradcheck_float64():
    g = random_scene(3, seed=4, dtype=torch.float64, spread=0.15)
    g.opacities = torch.tensor([0.5, 0.7, 0.6], dtype=torch.float64)
    g.scales = torch.full((3, 3), 0.12, dtype=torch.float64) + torch.rand(3, 3, dtype=torch.float64) * 0.05
    cam = Camera.look_at((0, 0, 1.5), (0, 0, 0), 40, 8, 8)
    params = [g.means, g.scales, g.quats, g.opacities, g.colors]
    params = [p.clone().requires_grad_(True) for p in params]

    def f(means, scales, quats, opacities, colors):
        out = rasterize(Gaussians(means, scales, quats, opacities, colors), cam, 8, 8,
                        background=(0.1, 0.2, 0.3), backend="torch", tile_size=4)
        return out.rgb, out.alpha, out.depth

    assert float(f(*params)[1].detach().max()) > 0.3
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter_float32():
    g = random_scene(50, seed=2)
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 24, 24)
    ps = [t.clone().requires_grad_(True) for t in (g.means, g.scales, g.quats, g.opacities, g.colors)]
    out = rasterize(Gaussians(*ps), cam, backend="torch")
    (out.rgb.sum() + out.depth.sum()).backward()
    for p in ps:
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0


def test_background_culling_and_empty_scene():
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 16, 12)
    behind = one_gaussian((0.0, 0.0, 2.5), (0.1, 0.1, 0.1))          # behind the camera
    out = rasterize(behind, cam, background=(0.2, 0.4, 0.6), backend="torch")
    assert isinstance(out, RenderOutput)
    assert out.rgb.shape == (12, 16, 3) and out.alpha.shape == out.depth.shape == (12, 16)
    assert torch.allclose(out.rgb, torch.tensor([0.2, 0.4, 0.6]).expand(12, 16, 3))
    assert float(out.alpha.abs().max()) == 0.0 and float(out.depth.abs().max()) == 0.0
    visible = one_gaussian((0.0, 0.0, 0.0), (0.1, 0.1, 0.1), opacity=0.5, color=(1.0, 1.0, 1.0))
    out = rasterize(visible, cam, background=(0.2, 0.4, 0.6), backend="torch")
    a = out.alpha[..., None]
    assert torch.allclose(out.rgb, a + (1 - a) * torch.tensor([0.2, 0.4, 0.6]), atol=1e-6)
    black = rasterize(visible, cam, backend="torch")                  # background None = black
    assert torch.allclose(black.rgb, black.alpha[..., None].expand(12, 16, 3), atol=1e-6)


def test_covariance_override_renders_like_rotated_gaussians():
    g = random_scene(60, seed=3)
    angle = 0.8
    R = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1.0, 0],
                      [-math.sin(angle), 0, math.cos(angle)]])
    q_rot = torch.tensor([math.cos(angle / 2), 0, math.sin(angle / 2), 0])    # same rotation
    w, x, y, z = g.quats.unbind(-1)
    a0, a1, a2, a3 = q_rot
    quats = torch.stack([a0 * w - a1 * x - a2 * y - a3 * z, a0 * x + a1 * w + a2 * z - a3 * y,
                         a0 * y - a1 * z + a2 * w + a3 * x, a0 * z + a1 * y - a2 * x + a3 * w], -1)
    rotated = Gaussians(g.means, g.scales, quats, g.opacities, g.colors)
    deformed = g.deform(g.means, R.expand(60, 3, 3))
    cam = Camera.look_at((0.5, 0.5, 1.8), (0, 0, 0), 45, 32, 32)
    for a, b in zip(rasterize(rotated, cam, backend="torch"), rasterize(deformed, cam, backend="torch")):
        assert float((a - b).abs().max()) < 1e-4


def test_requested_size_rescales_the_camera():
    g = random_scene(80, seed=5)
    cam = Camera.look_at((0, 0.3, 1.8), (0, 0, 0), 45, 64, 48)
    a = rasterize(g, cam, 32, 24, backend="torch")
    b = rasterize(g, cam.scaled(32, 24), backend="torch")
    assert torch.equal(a.rgb, b.rgb)


def test_backend_selection_and_errors():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="unknown render backend"):
        rasterize(random_scene(2, 0), CAM, backend="opengl")
    with pytest.raises(ValueError, match="background"):
        rasterize(random_scene(2, 0), CAM, background=(1.0, 0.0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_gsplat_backend_without_cuda_says_use_torch():
    with pytest.raises(RuntimeError, match='backend="torch"'):
        rasterize(random_scene(5, 0), CAM, backend="gsplat")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA and gsplat")
def test_gsplat_matches_torch_backend_on_cuda():
    g = random_scene(300, seed=6)
    g.opacities = g.opacities.clamp(max=0.9)     # away from the 0.99 / 0.999 clamp difference
    cam = Camera.look_at((0.2, 0.3, 1.6), (0, 0, 0), 50, 64, 48)
    a = rasterize(g.to("cuda"), cam, backend="gsplat", background=(0.1, 0.2, 0.3))
    b = rasterize(g, cam, backend="torch", background=(0.1, 0.2, 0.3))
    for x, y in zip(a, b):
        assert float((x.cpu() - y).abs().max()) < 2e-3


def test_projection_matches_gsplat_reference_math():
    """gsplat's pure-torch projection (the reference for its CUDA kernels) runs on the CPU:
    same viewmat/K conventions, J clamp, low-pass and conics as ours."""
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    from physgm.render.projection import project_gaussians

    g = random_scene(200, seed=3)
    cam = Camera.look_at((0.2, 0.3, 1.6), (0, 0, 0), 50, 45, 37)
    covs = g.covariances()
    _, m2d, depths, conics, _ = impl._fully_fused_projection(g.means, covs, cam.w2c[None],
                                                             cam.K[None], 45, 37)
    ours = project_gaussians(g.means, covs, g.opacities, cam.K, cam.w2c, 45, 37)
    v = ours.valid
    assert int(v.sum()) > 100
    assert torch.allclose(ours.means2d[v], m2d[0][v], atol=1e-4)
    assert torch.allclose(ours.depths[v], depths[0][v], atol=1e-6)
    assert torch.allclose(ours.conics[v], conics[0][v], rtol=1e-4, atol=1e-6)


def test_render_video_follows_positions_and_survives_nan():
    g = one_gaussian((0.0, 0.0, 0.0), (0.05, 0.05, 0.05), opacity=0.9, color=(1.0, 1.0, 1.0))
    g = Gaussians.cat([g, one_gaussian((0.0, 0.3, 0.0), (0.05, 0.05, 0.05), opacity=0.9)])
    cam = Camera.look_at((0, 0, 2), (0, 0, 0), 45, 32, 32)
    n_frames = 4
    pos = g.means[None].repeat(n_frames, 1, 1).numpy().copy()
    pos[:, 0, 0] = np.linspace(-0.3, 0.3, n_frames)          # Gaussian 0 moves right
    pos[2, 1] = np.nan                                        # Gaussian 1 vanishes in frame 2
    defo = np.tile(np.eye(3, dtype=np.float32), (n_frames, 2, 1, 1))
    defo[3, 1, 0, 0] = np.inf                                 # and its F blows up in frame 3
    video = render_video(g, pos, defo, cam, 32, 32, backend="torch")
    assert video.shape == (n_frames, 32, 32, 3) and video.dtype == np.uint8
    first = rasterize(g.deform(torch.from_numpy(pos[0])), cam, backend="torch").rgb
    assert np.array_equal(video[0], (first.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    lum = video[..., 0].astype(float)
    cols = [float((lum[f] * np.arange(32)[None]).sum() / lum[f].sum()) for f in (2, 3)]
    assert cols[1] > cols[0]                                  # follows the positions
    only0 = rasterize(g.subset([0]).deform(torch.from_numpy(pos[2, :1])), cam, backend="torch").rgb
    assert np.array_equal(video[2], (only0.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    assert video[1, 5:12].sum() > 0 and video[2, 5:12].sum() == 0   # the upper blob is gone
    with pytest.raises(ValueError, match="first N rows"):
        render_video(g, np.zeros((2, 3, 3)), None, cam, 32, 32)


def test_bench_render_reports_every_path():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder
    from benchmarks.bench_render import bench_render

    out = bench_render(sizes=((24, 60),), json=False, repeats=1, frames=3)
    row = out["results"][0]
    assert (row["image_px"], row["gaussians"]) == (24, 60)
    assert row["tiled_s"] > 0 and row["dense_s"] > 0 and row["ratio_tiled_over_dense"] > 0
    assert row["warp_s"] > 0 and row["speedup_warp_over_tiled"] > 0
    assert row["max_abs_diff"] < 1e-5 and row["warp_max_abs_diff"] < 1e-4
    assert 0 < row["coverage"] <= 1
    video = row["video"]
    assert video["frames"] == 3 and video["max_uint8_diff"] <= 1
    for key in ("torch", "warp", "warp_per_frame"):
        assert video[f"{key}_s"] > 0 and video[f"{key}_fps"] > 0
    assert video["speedup_warp_over_torch"] > 0
