"""Pretraining loss terms against their formulas, weighting, and LPIPS from local files."""
import math

import pytest
import torch

from physgm.config import ModelConfig
from physgm.materials import MATERIAL_SLOTS, MATERIALS, PARAM_NAMES, Material
from physgm.model.backbone import CheckpointError
from physgm.model.losses import (DEFAULT_LOSS_WEIGHTS, alpha_loss, combine, depth_loss,
                                 material_loss, param_losses, physgm_losses, rgb_loss)
from physgm.model.lpips import LPIPS, lpips_from_config
from physgm.model.physics_head import PhysicsHeadOutput

M, P = len(MATERIALS), len(PARAM_NAMES)


def test_defaults_are_the_papers():
    assert {k: DEFAULT_LOSS_WEIGHTS[k] for k in ("rgb", "alpha", "material", "params")} == \
        {"rgb": 1.0, "alpha": 0.1, "material": 0.1, "params": 0.01}


def test_image_terms_match_formulas():
    pred = torch.tensor([[0.2, 0.4], [0.9, 0.0]])
    target = torch.tensor([[0.0, 0.5], [1.0, 1.0]])
    assert rgb_loss(pred, target).item() == pytest.approx((0.04 + 0.01 + 0.01 + 1.0) / 4)
    a = torch.tensor([0.9, 0.2])
    m = torch.tensor([1.0, 0.0])
    bce = -(math.log(0.9) + math.log(0.8)) / 2
    assert alpha_loss(a, m).item() == pytest.approx(bce, rel=1e-5)
    assert alpha_loss(a, m, "l1").item() == pytest.approx(0.15)
    with pytest.raises(ValueError, match="'bce' or 'l1'"):
        alpha_loss(a, m, "l2")
    with pytest.raises(ValueError, match="shapes differ"):
        rgb_loss(pred, target[0])
    d = torch.tensor([1.0, 2.0, 3.0])
    t = torch.tensor([1.5, 2.0, 0.0])
    assert depth_loss(d, t).item() == pytest.approx(3.5 / 3)
    assert depth_loss(d, t, torch.tensor([True, True, False])).item() == pytest.approx(0.25)


def test_material_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 3.0]])
    target = torch.tensor([0, 4])
    lse0 = math.log(math.exp(2) + 4)
    lse1 = math.log(1 + math.e + 1 + 1 + math.exp(3))
    expected = ((lse0 - 2) + (lse1 - 3)) / 2
    assert material_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_param_losses_use_only_the_label_materials_slots():
    mu = torch.zeros(2, M, P)
    log_var = torch.zeros(2, M, P)
    jelly, sand = MATERIALS.index(Material.jelly), MATERIALS.index(Material.sand)
    log_var[0, jelly] = math.log(4.0)
    mu[1, sand] = 0.5
    z = torch.full((2, P), 1.0)
    z[0, 3:] = float("nan")  # slots jelly does not use: ignored
    mu.requires_grad_(True)
    nll, mse = param_losses(mu, log_var, torch.tensor([jelly, sand]), z)
    (nll + mse).backward()
    assert torch.isfinite(mu.grad).all() and mu.grad[0, jelly, 3:].abs().sum() == 0
    nll, mse = nll.detach(), mse.detach()
    # jelly: 3 slots, σ² = 4, error 1; sand: 4 slots (E, nu, density, friction), σ² = 1, error 0.5
    n_j, n_s = len(MATERIAL_SLOTS[Material.jelly]), len(MATERIAL_SLOTS[Material.sand])
    assert (n_j, n_s) == (3, 4)
    nll_j = 0.5 * (math.log(2 * math.pi) + math.log(4.0) + 1.0 / 4.0)
    nll_s = 0.5 * (math.log(2 * math.pi) + 0.0 + 0.25)
    assert nll.item() == pytest.approx((n_j * nll_j + n_s * nll_s) / (n_j + n_s), rel=1e-6)
    assert mse.item() == pytest.approx((n_j * 1.0 + n_s * 0.25) / (n_j + n_s), rel=1e-6)
    # an extra mask drops slots
    mask = torch.ones(2, P, dtype=torch.bool)
    mask[1] = False
    nll2, mse2 = param_losses(mu, log_var, torch.tensor([jelly, sand]), z, mask)
    assert nll2.item() == pytest.approx(nll_j, rel=1e-6) and mse2.item() == pytest.approx(1.0)


def test_physgm_losses_combines_terms_with_weights():
    g = torch.Generator().manual_seed(0)
    phys = PhysicsHeadOutput(torch.randn(2, M, generator=g), torch.randn(2, M, P, generator=g),
                             torch.randn(2, M, P, generator=g))
    rgb, trgb = torch.rand(2, 8, 8, 3, generator=g), torch.rand(2, 8, 8, 3, generator=g)
    alpha, mask = torch.rand(2, 8, 8, generator=g), (torch.rand(2, 8, 8, generator=g) > 0.5).float()
    mat = torch.tensor([1, 3])
    z = torch.randn(2, P, generator=g)
    out = physgm_losses(phys, mat, z, rgb=rgb, target_rgb=trgb, alpha=alpha, target_mask=mask)
    assert set(out) == {"rgb", "alpha", "material", "param_nll", "param_mse", "total"}
    expected = (out["rgb"] + 0.1 * out["alpha"] + 0.1 * out["material"]
                + 0.01 * (out["param_nll"] + out["param_mse"]))
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    w = {"rgb": 2.0, "params": 0.0}
    out2 = physgm_losses(phys, mat, z, rgb=rgb, target_rgb=trgb, alpha=alpha, target_mask=mask,
                         weights=w)
    assert out2["total"].item() == pytest.approx(
        (2 * out["rgb"] + 0.1 * out["alpha"] + 0.1 * out["material"]).item(), rel=1e-6)
    only_phys = physgm_losses(phys, mat)
    assert set(only_phys) == {"material", "total"}
    with pytest.raises(ValueError, match="unknown loss weight"):
        combine({"rgb": out["rgb"]}, {"rbg": 1.0})
    with pytest.raises(ValueError, match="no loss terms"):
        physgm_losses()


def _save_lpips_files(tmp_path, model: LPIPS):
    lin = {f"lin{i}.model.1.weight": l.weight.detach().clone() for i, l in enumerate(model.lins)}
    vgg = {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files also hold the classifier
    torch.save(lin, tmp_path / "vgg.pth")
    torch.save(vgg, tmp_path / "vgg16.pth")
    return tmp_path / "vgg.pth", tmp_path / "vgg16.pth"


def test_lpips_round_trip_and_metric_properties(tmp_path):
    torch.manual_seed(0)
    src = LPIPS()
    with torch.no_grad():
        for lin in src.lins:
            lin.weight.uniform_(0.0, 1.0)  # LPIPS weights are non-negative
    lin_path, vgg_path = _save_lpips_files(tmp_path, src)
    cfg = ModelConfig(lpips_checkpoint=str(lin_path), lpips_vgg_checkpoint=str(vgg_path))
    lp = lpips_from_config(cfg)
    assert lpips_from_config(ModelConfig()) is None
    x = torch.rand(2, 3, 32, 32)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    d = lp(x, y)
    assert d.shape == (2,) and torch.all(d > 0)
    assert torch.allclose(d, src(x, y))
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-6)
    assert not any(p.requires_grad for p in lp.parameters())
    # as a loss term it gives gradients to the rendered image
    rgb = y.permute(0, 2, 3, 1).clone().requires_grad_(True)
    out = physgm_losses(rgb=rgb, target_rgb=x.permute(0, 2, 3, 1), lpips=lp)
    assert out["lpips"].item() == pytest.approx(d.mean().item(), rel=1e-5)
    out["total"].backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0


def test_lpips_missing_files_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="lpips_checkpoint"):
        LPIPS.from_files(tmp_path / "none.pth", tmp_path / "none2.pth")
    lin_path, vgg_path = _save_lpips_files(tmp_path, LPIPS())
    lin = torch.load(lin_path)
    del lin["lin3.model.1.weight"]
    torch.save(lin, lin_path)
    with pytest.raises(CheckpointError, match="lin3.model.1.weight"):
        LPIPS.from_files(lin_path, vgg_path)
    with pytest.raises(ValueError, match="lpips_vgg_checkpoint"):
        ModelConfig(lpips_checkpoint=str(lin_path))
