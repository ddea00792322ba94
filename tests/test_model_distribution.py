"""The physics policy's density: log_prob against hand computation, sampling statistics,
entropy, and the conversions to PhysParams."""
import math

import numpy as np
import pytest
import torch

from physgm.materials import MATERIAL_SLOTS, MATERIALS, PARAM_NAMES, Material, PhysParams, normalize
from physgm.model.distribution import PhysicsDistribution, slot_mask

M, P = len(MATERIALS), len(PARAM_NAMES)


def _dist(seed=0, b=2, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, M, generator=g)
    mu = 0.5 * torch.randn(b, M, P, generator=g)
    log_var = -1.0 + 0.5 * torch.randn(b, M, P, generator=g)
    for t in (logits, mu, log_var):
        t.requires_grad_(requires_grad)
    return PhysicsDistribution(logits, mu, log_var)


def test_slot_mask_matches_materials():
    mask = slot_mask()
    assert mask.shape == (M, P)
    for m, mat in enumerate(MATERIALS):
        assert sorted(torch.nonzero(mask[m]).flatten().tolist()) == sorted(MATERIAL_SLOTS[mat])
    assert mask[MATERIALS.index(Material.jelly)].sum() == 3  # E, nu, density


def test_log_prob_hand_computed():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5, 2.0]])
    mu = torch.zeros(1, M, P)
    log_var = torch.zeros(1, M, P)
    jelly = MATERIALS.index(Material.jelly)
    mu[0, jelly, :3] = torch.tensor([0.1, -0.2, 0.3])
    log_var[0, jelly, :3] = torch.tensor([math.log(0.25), math.log(4.0), 0.0])
    z = torch.tensor([[[0.6, 0.8, 0.3, 99.0, float("nan"), -7.0, 5.0, 3.0]]])  # unused slots ignored
    lp = PhysicsDistribution(logits, mu, log_var).log_prob(torch.tensor([[jelly]]), z)

    lse = math.log(sum(math.exp(v) for v in [1.0, 0.0, -1.0, 0.5, 2.0]))
    log_pm = 1.0 - lse  # jelly is material 0
    def log_n(x, m, var):
        return -0.5 * math.log(2 * math.pi * var) - (x - m) ** 2 / (2 * var)
    expected = log_pm + log_n(0.6, 0.1, 0.25) + log_n(0.8, -0.2, 4.0) + log_n(0.3, 0.3, 1.0)
    assert lp.shape == (1, 1)
    assert lp.item() == pytest.approx(expected, abs=1e-5)


def test_log_prob_matches_torch_distributions_for_every_material():
    d = _dist(seed=3, b=3)
    mats = torch.tensor([[0, 1, 2, 3, 4]] * 3)
    z = torch.randn(3, 5, P)
    lp = d.log_prob(mats, z)
    for b in range(3):
        for k in range(5):
            m = int(mats[b, k])
            slots = list(MATERIAL_SLOTS[MATERIALS[m]])
            ref = torch.distributions.Categorical(logits=d.logits[b]).log_prob(torch.tensor(m))
            normal = torch.distributions.Normal(d.mu[b, m, slots], d.std[b, m, slots])
            ref = ref + normal.log_prob(z[b, k, slots]).sum()
            assert lp[b, k].item() == pytest.approx(ref.item(), abs=1e-4)
    # (B,) / (B, P) inputs give (B,)
    assert d.log_prob(mats[:, 0], z[:, 0]).shape == (3,)
    assert torch.allclose(d.log_prob(mats[:, 0], z[:, 0]), lp[:, 0])


def test_log_prob_gradient_is_exact():
    d = _dist(seed=1, b=1, requires_grad=True)
    m = MATERIALS.index(Material.sand)
    z = torch.randn(1, 1, P)
    z[0, 0, 5] = float("nan")  # hardening is not a sand slot: must not poison the gradient
    d.log_prob(torch.tensor([[m]]), z).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (d.logits, d.mu, d.log_var))
    used = list(MATERIAL_SLOTS[Material.sand])
    var = torch.exp(d.log_var.detach())
    expected_mu = (z[0, 0] - d.mu.detach()[0, m]) / var[0, m]
    assert torch.allclose(d.mu.grad[0, m, used], expected_mu[used], atol=1e-5)
    unused = [i for i in range(P) if i not in used]
    assert torch.all(d.mu.grad[0, m, unused] == 0)
    assert torch.all(d.mu.grad[0, [i for i in range(M) if i != m]] == 0)
    expected_lv = -0.5 + 0.5 * (z[0, 0] - d.mu.detach()[0, m]) ** 2 / var[0, m]
    assert torch.allclose(d.log_var.grad[0, m, used], expected_lv[used], atol=1e-5)
    probs = torch.softmax(d.logits.detach(), -1)[0]
    assert torch.allclose(d.logits.grad[0], torch.eye(M)[m] - probs, atol=1e-6)


def test_sample_statistics():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]]))
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(1, M, P, generator=g)
    log_var = torch.log(0.2 + torch.rand(1, M, P, generator=g))
    d = PhysicsDistribution(logits, mu, log_var)
    n = 20000
    mats, z = d.sample(n, generator=torch.Generator().manual_seed(1))
    assert mats.shape == (1, n) and mats.dtype == torch.long and z.shape == (1, n, P)
    probs = d.probs[0]
    for m, mat in enumerate(MATERIALS):
        sel = mats[0] == m
        cnt = int(sel.sum())
        p = float(probs[m])
        assert abs(cnt / n - p) < 3 * math.sqrt(p * (1 - p) / n)
        zs = z[0, sel]
        for i in range(P):
            if i in MATERIAL_SLOTS[mat]:
                sigma = float(d.std[0, m, i])
                assert abs(float(zs[:, i].mean()) - float(mu[0, m, i])) < 3 * sigma / math.sqrt(cnt)
                se_var = sigma ** 2 * math.sqrt(2.0 / (cnt - 1))
                assert abs(float(zs[:, i].var()) - sigma ** 2) < 3 * se_var
            else:
                assert torch.all(zs[:, i] == mu[0, m, i])


def test_shared_material_sampling():
    """One material per batch item, drawn from Cat(probs); K draws of that material's
    Gaussian (the DPO actors' ``dpo.sampling: shared_material``)."""
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])).expand(4000, M)
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(1, M, P, generator=g).expand(4000, M, P)
    log_var = torch.log(0.2 + torch.rand(1, M, P, generator=g)).expand(4000, M, P)
    d = PhysicsDistribution(logits, mu, log_var)
    mats, z = d.sample(6, generator=torch.Generator().manual_seed(4), mode="shared_material")
    assert mats.shape == (4000, 6) and z.shape == (4000, 6, P)
    assert torch.all(mats == mats[:, :1])  # one material per item
    freq = torch.bincount(mats[:, 0], minlength=M).float() / 4000
    assert torch.all((freq - d.probs[0]).abs() < 4 * torch.sqrt(d.probs[0] * (1 - d.probs[0]) / 4000))
    jelly = MATERIALS.index(Material.jelly)
    zs = z[mats[:, 0] == jelly].reshape(-1, P)
    e = PARAM_NAMES.index("E")
    sigma = float(d.std[0, jelly, e])
    assert abs(float(zs[:, e].mean()) - float(mu[0, jelly, e])) < 4 * sigma / math.sqrt(len(zs))
    assert abs(float(zs[:, e].std()) - sigma) < 0.1 * sigma
    assert len(set(zs[:, e].tolist())) == len(zs)  # K distinct draws, not one repeated


def test_mirrored_sampling():
    """Couples (2c, 2c+1) share the material and mirror about its mean on used slots, so
    both have the same log π; each draw is still marginally π (E's mean and std)."""
    n = 4000
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])).expand(n, M)
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(1, M, P, generator=g).expand(n, M, P)
    log_var = torch.log(0.2 + torch.rand(1, M, P, generator=g)).expand(n, M, P)
    d = PhysicsDistribution(logits, mu, log_var)
    mats, z = d.sample(4, generator=torch.Generator().manual_seed(6), mode="mirrored")
    assert mats.shape == (n, 4) and z.shape == (n, 4, P)
    assert torch.equal(mats[:, 0::2], mats[:, 1::2])
    centre = d._select(d.mu, mats)
    assert torch.allclose(z[:, 0::2] - centre[:, 0::2], -(z[:, 1::2] - centre[:, 1::2]), atol=1e-6)
    assert not torch.equal(z[:, 0], z[:, 2])  # the two couples are independent draws
    lp = d.log_prob(mats, z)
    assert torch.allclose(lp[:, 0::2], lp[:, 1::2], atol=1e-4)
    freq = torch.bincount(mats[:, 0], minlength=M).float() / n
    assert torch.all((freq - d.probs[0]).abs() < 4 * torch.sqrt(d.probs[0] * (1 - d.probs[0]) / n))
    jelly, e = MATERIALS.index(Material.jelly), PARAM_NAMES.index("E")
    zs = z[:, 0][mats[:, 0] == jelly][:, e]
    sigma = float(d.std[0, jelly, e])
    assert abs(float(zs.mean()) - float(mu[0, jelly, e])) < 4 * sigma / math.sqrt(len(zs))
    assert abs(float(zs.std()) - sigma) < 0.1 * sigma
    with pytest.raises(ValueError, match="even"):
        d.sample(3, mode="mirrored")
    with pytest.raises(ValueError, match="sampling mode"):
        d.sample(4, mode="antithetic")


def test_sample_is_reproducible_with_generator():
    d = _dist(seed=4)
    a = d.sample(8, generator=torch.Generator().manual_seed(7))
    b = d.sample(8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="k ≥ 1"):
        d.sample(0)


def test_entropy_matches_monte_carlo():
    d = _dist(seed=5, b=2)
    mats, z = d.sample(20000, generator=torch.Generator().manual_seed(2))
    lp = d.log_prob(mats, z)
    mc = -lp.mean(1)
    se = lp.std(1) / math.sqrt(lp.shape[1])
    h = d.entropy()
    assert h.shape == (2,)
    assert torch.all((h - mc).abs() < 4 * se + 1e-4)


def test_mean_params_and_stats_invert_normalize():
    target = PhysParams.default("plasticine", E=3e5, yield_stress=2e3)
    z, _ = normalize(target)
    logits = torch.full((1, M), -5.0)
    logits[0, MATERIALS.index(Material.plasticine)] = 5.0
    mu = torch.zeros(1, M, P)
    mu[0, MATERIALS.index(Material.plasticine)] = torch.from_numpy(z)
    log_var = torch.full((1, M, P), math.log(0.01))
    d = PhysicsDistribution(logits, mu, log_var)
    (p,) = d.mean_params()
    assert p.material == Material.plasticine
    for name, value in target.values().items():
        assert getattr(p, name) == pytest.approx(value, rel=1e-4)
    (s,) = d.param_stats()
    assert s["material"]["name"] == "plasticine"
    assert s["material"]["probs"]["plasticine"] > 0.99
    assert set(s["params"]) == set(target.values())
    assert s["params"]["E"]["mean"] == pytest.approx(3e5, rel=1e-4)
    assert s["params"]["E"]["log10_mean"] == pytest.approx(math.log10(3e5), rel=1e-5)
    assert s["params"]["E"]["log10_std"] > 0 and s["params"]["nu"]["std"] > 0


def test_shape_validation():
    with pytest.raises(ValueError, match="expected logits"):
        PhysicsDistribution(torch.zeros(2, 4), torch.zeros(2, M, P), torch.zeros(2, M, P))
    d = _dist()
    with pytest.raises(ValueError, match="z must be"):
        d.log_prob(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, P - 1))
    assert np.isfinite(d.entropy().numpy()).all()


def test_distribution_from_head_output():
    from physgm.model import distribution
    from physgm.model.physics_head import PhysicsHeadOutput

    d = _dist(seed=6)
    out = PhysicsHeadOutput(d.logits, d.mu, d.log_var)
    for dd in (distribution(out), out.distribution()):
        assert torch.equal(dd.probs, d.probs) and torch.equal(dd.std, d.std)


def test_mirrored_sampling_in_blocks():
    """blocks="E_rest": couple 0 moves E alone, couple 1 every other slot alone; both stay
    mirrored about the material's μ (same log π within a couple)."""
    d = _dist(seed=8, b=3)
    mats, z = d.sample(4, generator=torch.Generator().manual_seed(2), mode="mirrored",
                       blocks="E_rest")
    centre = d._select(d.mu, mats)
    e = PARAM_NAMES.index("E")
    off = z - centre                                                      # (B, 4, P)
    assert torch.all(off[:, 0:2, e].abs() > 0)
    assert torch.all(off[:, 0:2, :e] == 0) and torch.all(off[:, 0:2, e + 1:] == 0)
    assert torch.all(off[:, 2:4, e] == 0) and torch.any(off[:, 2:4].abs() > 0)
    assert torch.allclose(off[:, 0::2], -off[:, 1::2], atol=1e-6)
    lp = d.log_prob(mats, z)
    assert torch.allclose(lp[:, 0::2], lp[:, 1::2], atol=1e-4)
    with pytest.raises(ValueError, match="mirrored"):
        d.sample(4, mode="independent", blocks="E_rest")
    with pytest.raises(ValueError, match="blocks"):
        d.sample(4, mode="mirrored", blocks="E_only")
