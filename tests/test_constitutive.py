"""Return maps of physgm.sim.constitutive against hand-computed cases (one warp launch each)."""
import math

import numpy as np
import pytest
import warp as wp

from physgm.materials import SNOW_MAX_HARDENING, PhysParams
from physgm.sim.constitutive import MaterialParams, material_struct, update
from physgm.sim.solver import resolve_device


@wp.kernel
def _update(F: wp.array(dtype=wp.mat33), ps: wp.array(dtype=wp.vec3), m: MaterialParams,
            F_out: wp.array(dtype=wp.mat33), ps_out: wp.array(dtype=wp.vec3),
            tau_out: wp.array(dtype=wp.mat33)):
    i = wp.tid()
    a, b, c = update(F[i], ps[i], m)
    F_out[i] = a
    ps_out[i] = b
    tau_out[i] = c


def run_update(params: PhysParams, F, ps):
    """(F_E (M,3,3), plastic state (M,3), τ (M,3,3) [Pa]) of ``update`` for M trial F's."""
    resolve_device("cpu")
    F = np.asarray(F, np.float32).reshape(-1, 3, 3)
    ps = np.broadcast_to(np.asarray(ps, np.float32), (len(F), 3)).copy()
    with wp.ScopedDevice("cpu"):
        outs = [wp.zeros(len(F), dtype=t) for t in (wp.mat33, wp.vec3, wp.mat33)]
        wp.launch(_update, dim=len(F), inputs=[wp.array(F, dtype=wp.mat33),
                                              wp.array(ps, dtype=wp.vec3),
                                              material_struct(params), *outs])
    return tuple(o.numpy().astype(np.float64) for o in outs)


def dev_norm(tau):
    d = tau - np.trace(tau) / 3 * np.eye(3)
    return np.linalg.norm(d)


@pytest.mark.parametrize("h", [5.0, 1.0, 0.0, -0.5])
def test_plasticine_ends_on_the_updated_yield_surface_after_a_large_increment(h):
    p = PhysParams.default("plasticine", hardening=h)
    s = 1.3  # 26 % log strain in one increment: ~50× the yield strain
    a0 = 0.2
    Fe, ps, tau = run_update(p, np.diag([s, 1 / s, 1.0]), [a0, 0, 0])
    a1 = ps[0, 0]
    yield_now = p.yield_stress * max(1 + h * a1, 0.1)
    # von Mises: ‖dev τ‖ = √(2/3) σ_y(ᾱ) at the NEW equivalent plastic strain
    assert dev_norm(tau[0]) == pytest.approx(math.sqrt(2 / 3) * yield_now, rel=2e-4)
    # ᾱ grows by √(2/3) ‖Δε_p‖ (equivalent plastic strain), Δε_p = trial − elastic log strain
    eps_trial = np.log([s, 1 / s, 1.0])
    eps_e = np.log(np.linalg.svd(Fe[0], compute_uv=False))
    d_plastic = np.linalg.norm(np.sort(eps_trial) - np.sort(eps_e))
    assert a1 - a0 == pytest.approx(math.sqrt(2 / 3) * d_plastic, rel=1e-3)
    assert np.linalg.det(Fe[0]) == pytest.approx(1.0, abs=1e-5)  # isochoric plastic flow


def test_plasticine_softening_stops_at_its_floor():
    p = PhysParams.default("plasticine", hardening=-5.0)
    _, ps, tau = run_update(p, np.diag([1.5, 1 / 1.5, 1.0]), [0.0, 0, 0])
    assert 1 - 5.0 * ps[0, 0] < 0.1  # past the floor within this increment
    assert dev_norm(tau[0]) == pytest.approx(math.sqrt(2 / 3) * 0.1 * p.yield_stress, rel=2e-4)


def test_metal_below_yield_is_elastic_and_keeps_its_state():
    p = PhysParams.default("metal")
    F = np.diag([1.0005, 1.0, 1.0])
    Fe, ps, _ = run_update(p, F, [0.0, 0, 0])
    np.testing.assert_allclose(Fe[0], F, atol=1e-6)
    assert ps[0, 0] == 0.0


def test_sand_stores_the_volume_a_tip_projection_erases_and_recompacts_it_freely():
    p = PhysParams.default("sand")
    mu, lam = p.lame()
    # expansion: stress-free, the erased log volume goes to v_c (slot 1)
    Fe, ps, tau = run_update(p, 1.02 * np.eye(3), [0.0, 0, 0])
    np.testing.assert_allclose(Fe[0], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(tau[0], 0.0, atol=1e-6)
    vc = ps[0, 1]
    assert vc == pytest.approx(3 * math.log(1.02), rel=1e-4)
    # compressing it back by less than v_c costs nothing: still stress-free, v_c shrinks
    _, ps, tau = run_update(p, 0.99 * np.eye(3), [0.0, vc, 0])
    np.testing.assert_allclose(tau[0], 0.0, atol=1e-6)
    assert ps[0, 1] == pytest.approx(vc + 3 * math.log(0.99), rel=1e-3)
    # beyond the original volume it pushes back, with the strain counted from that volume
    Fe, ps, tau = run_update(p, 0.97 * np.eye(3), [0.0, vc, 0])
    e = math.log(0.97) + vc / 3  # per axis
    assert ps[0, 1] == 0.0
    np.testing.assert_allclose(Fe[0], math.exp(e) * np.eye(3), atol=2e-6)
    np.testing.assert_allclose(tau[0], (2 * mu + 3 * lam) * e * np.eye(3), rtol=1e-4, atol=0.5)


def test_sand_friction_hardens_with_plastic_strain():
    """The shear stress the cone allows under the same compression grows with q from
    φ(1 − 10/35) (fresh, Klár et al.'s h0 − h3) towards φ."""
    p = PhysParams.default("sand", friction_angle=35.0)
    F = np.diag([0.97 * 1.2, 0.97 / 1.2, 0.97])  # compression with a large shear: on the cone
    shear = [dev_norm(run_update(p, F, [q, 0, 0])[2][0]) for q in (0.0, 1.0, 3.0)]
    assert shear[0] < shear[1] < shear[2]
    mu, lam = p.lame()
    tr = 3 * math.log(0.97)
    for q, s in zip((0.0, 3.0), (shear[0], shear[2])):
        phi = math.radians(35.0 * (1 + (9 / 35 * q - 10 / 35) * math.exp(-0.2 * q)))
        alpha = math.sqrt(2 / 3) * 2 * math.sin(phi) / (3 - math.sin(phi))
        # on the cone: ‖dev ε‖ = −(3λ + 2μ)/(2μ) tr(ε) α, and dev τ = 2μ dev ε
        assert s == pytest.approx(-(3 * lam + 2 * mu) * tr * alpha, rel=1e-3)


def test_snow_j_p_is_not_clamped_and_its_hardening_is_capped():
    p = PhysParams.default("snow", hardening=10.0)
    mu, lam = p.lame()
    F = np.diag([1.005, 1.0, 1.0])  # inside [1 − θc, 1 + θs]: elastic
    _, ps_rest, tau_rest = run_update(p, F, [1.0, 0, 0])
    _, ps, tau = run_update(p, F, [0.3, 0, 0])
    assert ps[0, 0] == pytest.approx(0.3, rel=1e-6)  # no floor at 0.6 (Stomakhin et al.)
    assert ps_rest[0, 0] == pytest.approx(1.0, rel=1e-6)
    # exp(10 · 0.7) = 1097 would be the paper's factor; the cap holds it at SNOW_MAX_HARDENING
    np.testing.assert_allclose(tau[0], SNOW_MAX_HARDENING * tau_rest[0], rtol=1e-4, atol=1e-3)
    _, ps, _ = run_update(p, np.diag([0.9, 1.0, 1.0]), [1.0, 0, 0])  # beyond θc: compaction
    assert ps[0, 0] == pytest.approx(0.9 / (1 - p.critical_compression), rel=1e-5)
