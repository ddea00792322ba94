"""Depth supervision of the Gaussian head: the input views' per-pixel Gaussians are pulled
to the stored camera-frame depth (pretrain.step.input_depth, the ``depth`` loss term)."""
import numpy as np
import pytest
import torch

from physgm.config import ModelConfig, build_config
from physgm.model import PhysGM, pixels_to_gaussians
from pretrain.step import input_depth, input_rays, pretrain_step, view_cosines
from pretrain.synthetic import synthetic_batch
from tiny_model import TINY as TINY_MODEL

TINY = {**TINY_MODEL, "near": 1.0, "far": 3.0}
PHYSICS = {"material", "param_nll", "param_mse", "total"}


def test_predicted_z_is_the_camera_z_of_the_pixel_gaussians():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY)).eval()
    batch = synthetic_batch(2, n_views=2, size=32)
    with torch.no_grad():
        pix = model(batch["images"], batch["plucker"]).gaussians
    z, target, mask = input_depth(pix, batch)
    assert z.shape == target.shape == mask.shape == (2, 2, 32, 32)
    assert torch.equal(mask, batch["depth"][:, :, 0] > 0) and mask.any() and not mask.all()
    for i in range(2):
        origins, directions = input_rays(batch["K"][i], batch["c2w"][i], 32, 32)
        means = pixels_to_gaussians(pix, origins, directions, index=i).means.view(2, 32, 32, 3)
        for v in range(2):
            w2c = torch.linalg.inv(batch["c2w"][i, v])
            cam = means[v] @ w2c[:3, :3].T + w2c[:3, 3]
            torch.testing.assert_close(z[i, v], cam[..., 2], atol=1e-4, rtol=1e-4)
    cos = view_cosines(batch["K"], batch["c2w"], 32, 32)
    # 40° field of view: cos at the corners = cos(atan(√2 · tan 20°)) = 0.889
    assert float(cos.max()) <= 1.0 and float(cos.min()) == pytest.approx(0.889, abs=0.01)
    # the ball sits at the orbit's centre, 2 m away: its stored depth is near 2 m
    assert 1.5 < float(target[mask].mean()) < 2.5


def test_depth_term_on_render_and_physics_steps():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY)).eval()
    batch = synthetic_batch(2, n_views=2, size=32)
    with torch.no_grad():
        full = pretrain_step(model, batch, backend="torch")
        physics = pretrain_step(model, batch, render=False)
        plain = pretrain_step(model, batch, render=False, depth=False)
        no_depth = pretrain_step(model, {k: v for k, v in batch.items() if k != "depth"},
                                 render=False)
        z, target, mask = input_depth(full.out.gaussians, batch)
    expect = float((z - target).abs()[mask].mean())
    assert float(full.terms["depth"]) == pytest.approx(expect, rel=1e-5)
    assert float(physics.terms["depth"]) == pytest.approx(expect, rel=1e-5)
    assert physics.rgb is None and physics.out.gaussians is not None      # head ran, no render
    assert set(plain.terms) == set(no_depth.terms) == PHYSICS
    assert plain.out.gaussians is None
    weights = build_config({}).pretrain.loss_weights
    assert weights["depth"] == 1.0
    terms = physics.scalars()
    assert terms["total"] == pytest.approx(terms["depth"] + sum(
        w * terms[k] for k, w in {"material": 0.1, "param_nll": 0.01, "param_mse": 0.01}
        .items()), rel=1e-5)
    # a rendering step always has the term; a depth weight of 0 turns it off everywhere
    with torch.no_grad():
        assert "depth" in pretrain_step(model, batch, backend="torch", depth=False).terms
        off = pretrain_step(model, batch, {"depth": 0.0}, render=False)
    assert set(off.terms) == PHYSICS and off.out.gaussians is None
    # unknown depth everywhere (a real capture): no term
    batch["depth"] = torch.zeros_like(batch["depth"])
    with torch.no_grad():
        assert "depth" not in pretrain_step(model, batch, render=False).terms


def test_depth_loss_moves_the_gaussians_onto_the_surface():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY))
    batch = synthetic_batch(2, n_views=2, size=32)
    opt = torch.optim.Adam(model.gaussian_head.parameters(), lr=3e-3)
    errors = []
    for _ in range(30):
        out = pretrain_step(model, batch, {"material": 0.0, "params": 0.0}, render=False)
        errors.append(float(out.terms["depth"].detach()))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert errors[-1] < 0.3 * errors[0]


def test_bad_depth_shape_is_named():
    model = PhysGM(ModelConfig(**TINY)).eval()
    batch = synthetic_batch(1, n_views=2, size=32)
    batch["depth"] = batch["depth"][:, :, :, :16]
    with pytest.raises(ValueError, match="depth"):
        with torch.no_grad():
            pretrain_step(model, batch, render=False)
