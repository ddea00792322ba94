"""PhysGM forward shapes, input checks, DPO freezing, Gaussian placement and a tiny
overfitting run."""
import time

import pytest
import torch

from physgm.camera import Camera, orbit_cameras, plucker_batch
from physgm.config import ModelConfig
from physgm.materials import MATERIALS, PARAM_NAMES, PhysParams, normalize
from physgm.model import PhysGM, PixelGaussians, pixels_to_gaussians
from physgm.model.losses import depth_loss, material_loss, param_losses, rgb_loss
from physgm.model.transformer import dpt_layer_indices
from tiny_model import TINY


def _inputs(b, v, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, v, 3, size, size, generator=g)
    cams = orbit_cameras(v, radius=2.0, elevation_deg=20.0, width=size, height=size)
    rays = plucker_batch(cams)[None].expand(b, -1, -1, -1, -1).contiguous()
    return images, rays


@pytest.mark.parametrize("views", [1, 2, 3, 4])
def test_forward_shapes(views):
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = PhysGM(cfg)
    images, rays = _inputs(2, views, 32)
    out = model(images, rays, return_features=True)
    g = out.gaussians
    assert g.depth.shape == (2, views, 32, 32)
    assert g.scales.shape == (2, views, 32, 32, 3)
    assert g.quats.shape == (2, views, 32, 32, 4)
    assert g.opacities.shape == (2, views, 32, 32)
    assert g.colors.shape == (2, views, 32, 32, 3)
    assert out.physics.logits.shape == (2, len(MATERIALS))
    assert out.physics.mu.shape == out.physics.log_var.shape == (2, len(MATERIALS), len(PARAM_NAMES))
    assert out.global_tokens.shape == (2, cfg.n_physics_tokens, cfg.dim)
    assert len(out.features) == 4 and out.features[0].shape == (2 * views, cfg.dim, 4, 4)
    # activations respect their ranges
    assert torch.all((g.depth >= cfg.near) & (g.depth <= cfg.far))
    assert torch.all((g.scales >= cfg.scale_min) & (g.scales <= cfg.scale_max))
    assert torch.allclose(g.quats.norm(dim=-1), torch.ones(()), atol=1e-5)
    assert torch.all((g.opacities > 0) & (g.opacities < 1))
    assert torch.all((g.colors > 0) & (g.colors < 1))
    std = out.physics.distribution().std
    assert torch.all((std >= cfg.std_min * 0.999) & (std <= cfg.std_max * 1.001))


def test_quickstart_config_forward_and_colour_residual():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig())
    images, rays = _inputs(1, 2, 64)
    out = model(images, rays)
    assert out.gaussians.depth.shape == (1, 2, 64, 64)
    # At initialisation the colour residual is ~0: Gaussians take their pixel's colour.
    pixel = images.permute(0, 1, 3, 4, 2).clamp(1e-3, 1 - 1e-3)
    assert (out.gaussians.colors - pixel).abs().max() < 0.05


def test_views_attend_to_each_other():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY)).eval()
    images, rays = _inputs(1, 2, 32)
    a = model(images, rays, return_features=True)
    images2 = images.clone()
    images2[:, 1] = torch.rand_like(images2[:, 1])
    b = model(images2, rays, return_features=True)
    # view 0's features change when only view 1's image changes: joint attention
    assert (a.features[-1][0] - b.features[-1][0]).abs().max() > 1e-3
    assert (a.gaussians.depth[:, 0] - b.gaussians.depth[:, 0]).abs().max() > 0
    assert (a.global_tokens - b.global_tokens).abs().max() > 1e-3
    # ... and do not change when nothing changes (deterministic in eval mode)
    c = model(images, rays, return_features=True)
    assert torch.equal(a.features[-1], c.features[-1])


def test_physics_on_cached_global_tokens_matches_forward():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY)).eval()
    images, rays = _inputs(2, 2, 32)
    with torch.no_grad():
        full = model(images, rays).physics
        tokens = model.encode_global(images, rays)
        cached = model.physics(tokens)
    for name in ("logits", "mu", "log_var"):
        assert torch.allclose(getattr(full, name), getattr(cached, name), atol=1e-6)


def test_bad_inputs_say_what_to_change():
    model = PhysGM(ModelConfig(**TINY))
    images, rays = _inputs(1, 2, 32)
    with pytest.raises(ValueError, match="1 to 4"):
        model(torch.rand(1, 5, 3, 32, 32), torch.rand(1, 5, 6, 32, 32))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.rand(1, 2, 3, 30, 30), torch.rand(1, 2, 6, 30, 30))
    with pytest.raises(ValueError, match="plucker must be"):
        model(images, rays[:, :, :3])
    with pytest.raises(ValueError, match=r"\(B, V, 3, H, W\)"):
        model(images[:, 0], rays)


def test_freeze_for_dpo_leaves_only_physics_head():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY))
    names = model.freeze_for_dpo()
    assert names and all(n.startswith("physics_head.") for n in names)
    head = {n for n, _ in model.physics_head.named_parameters()}
    assert {n[len("physics_head."):] for n in names} == head
    images, rays = _inputs(2, 2, 32)
    dist = model(images, rays).physics.distribution()
    mats, z = dist.sample(4, generator=torch.Generator().manual_seed(0))
    dist.log_prob(mats, z).sum().backward()
    for n, p in model.named_parameters():
        if n.startswith("physics_head."):
            assert p.grad is not None and torch.isfinite(p.grad).all()
        else:
            assert p.grad is None and not p.requires_grad


def test_dpt_layer_indices():
    assert dpt_layer_indices(24) == [5, 11, 17, 23]
    assert dpt_layer_indices(4) == [0, 1, 2, 3]
    assert dpt_layer_indices(2) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="dpt_layers"):
        ModelConfig(depth=4, dpt_layers=[0, 1, 2, 7])


def test_pixels_to_gaussians_project_back_to_their_pixels():
    cam = Camera.look_at((0.3, 0.5, 2.0), (0.0, 0.0, 0.0), 45.0, 16, 12)
    o, d = cam.rays()
    depth = 1.0 + torch.rand(1, 1, 12, 16)
    pix = PixelGaussians(depth=depth, scales=torch.full((1, 1, 12, 16, 3), 0.01),
                         quats=torch.tensor([1.0, 0, 0, 0]).expand(1, 1, 12, 16, 4),
                         opacities=torch.full((1, 1, 12, 16), 0.5),
                         colors=torch.rand(1, 1, 12, 16, 3))
    g = pixels_to_gaussians(pix, cam.position[None], d[None])
    assert g.means.shape == (12 * 16, 3) and g.colors.shape == (12 * 16, 3)
    uv, _ = cam.project(g.means)
    v, u = torch.meshgrid(torch.arange(12) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    assert torch.allclose(uv, torch.stack([u, v], -1).reshape(-1, 2), atol=1e-3)
    # depth is the distance from the camera centre along the unit ray
    assert torch.allclose((g.means - cam.position).norm(dim=-1), depth.reshape(-1), atol=1e-5)
    # per-pixel origins give the same result; low-opacity filtering drops Gaussians
    g2 = pixels_to_gaussians(pix, o[None], d[None])
    assert torch.allclose(g.means, g2.means)
    pix.opacities[0, 0, :6] = 0.01
    assert pixels_to_gaussians(pix, o[None], d[None], min_opacity=0.1).means.shape[0] == 6 * 16
    with pytest.raises(ValueError, match="directions must be"):
        pixels_to_gaussians(pix, o[None], d[None, :6])


def test_tiny_model_overfits_two_samples():
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = PhysGM(cfg)
    images, rays = _inputs(2, 2, 32, seed=1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    target_depth = torch.stack([1.5 + 0.5 * xx, 2.5 - 0.5 * yy])[:, None].expand(2, 2, 32, 32)
    target_rgb = torch.stack([torch.tensor([0.8, 0.2, 0.1]), torch.tensor([0.1, 0.3, 0.9])])
    target_rgb = target_rgb[:, None, None, None, :].expand(2, 2, 32, 32, 3)
    labels = [PhysParams.default("sand", E=5e5), PhysParams.default("metal", yield_stress=3e4)]
    material = torch.tensor([MATERIALS.index(p.material) for p in labels])
    z = torch.from_numpy(normalize(labels[0])[0][None].repeat(2, 0))
    z[1] = torch.from_numpy(normalize(labels[1])[0])

    def loss_fn():
        out = model(images, rays)
        g = out.gaussians
        _, mse = param_losses(out.physics.mu, out.physics.log_var, material, z)
        return (rgb_loss(g.colors, target_rgb) + depth_loss(g.depth, target_depth)
                + material_loss(out.physics.logits, material) + mse)

    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.time()
    first = float(loss_fn().detach())
    for _ in range(200):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    final = float(loss_fn().detach())
    assert final < first / 10, (first, final)
    assert time.time() - start < 60
    with torch.no_grad():
        out = model(images, rays)
    assert out.physics.logits.argmax(-1).tolist() == material.tolist()


def test_encode_global_is_detached():
    model = PhysGM(ModelConfig(**TINY))
    images, rays = _inputs(1, 2, 32)
    tokens = model.encode_global(images, rays)
    assert tokens.shape == (1, model.cfg.n_physics_tokens, 32) and not tokens.requires_grad
    # the physics head still trains on cached tokens
    model.freeze_for_dpo()
    model.physics(tokens).logits.sum().backward()
    assert model.physics_head.material[-1].weight.grad is not None


def test_gaussians_render_back_to_the_input_view_and_train_through_the_renderer():
    from physgm.render import rasterize

    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY, scale_max=0.05))
    cam = orbit_cameras(1, radius=2.0, elevation_deg=20.0, width=32, height=32)[0]
    rays = plucker_batch([cam])[None]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    images = torch.stack([xx, yy, 1 - xx], 0)[None, None]
    out = model(images, rays)
    g = pixels_to_gaussians(out.gaussians, cam.position[None], cam.rays()[1][None])
    r = rasterize(g, cam, backend="torch")
    assert r.rgb.shape == (32, 32, 3) and r.alpha.shape == (32, 32)
    # the Gaussians sit on their pixels' rays with their pixels' colours (colour residual),
    # so the input view comes back wherever it is covered
    covered = r.alpha > 0.5
    assert covered.float().mean() > 0.9
    target = images[0, 0].permute(1, 2, 0)
    err = (r.rgb / r.alpha.clamp_min(1e-6)[..., None] - target).abs()[covered].mean()
    assert err < 0.02, err
    rgb_loss(r.rgb, target).backward()
    head = model.gaussian_head.decode[-1].weight.grad
    assert head is not None and head.abs().sum() > 0
    assert model.backbone.vit.patch_embed.weight.grad.abs().sum() > 0


def test_grad_checkpoint_gives_the_same_gradients():
    images, rays = _inputs(1, 2, 32)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = PhysGM(ModelConfig(**TINY, grad_checkpoint=ckpt)).train()
        out = model(images, rays)
        (out.gaussians.depth.mean() + out.physics.mu.square().mean()).backward()
        grads.append(model.transformer.blocks[0].attn.qkv.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
