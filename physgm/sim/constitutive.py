"""Constitutive models as warp functions: elastic stress and plastic return mappings.

Each material is a pair (stress, return map) acting on the elastic deformation gradient
F_E (3×3):
- ``update(F_trial, plastic_state, m) -> (F_E, plastic_state, τ)``: the plastic return map of
  the trial elastic deformation gradient and the Kirchhoff stress τ = P F_Eᵀ [Pa] of the
  result, sharing one SVD (the MLS-MPM P2G uses τ directly: force −dt · V⁰ · (4/dx²) · τ).
  The plastic state is a per-particle scalar (snow: J_P; plasticine: accumulated plastic
  strain α; others: unused).

Models:
- jelly: fixed-corotated, τ = 2μ (F − R) Fᵀ + λ (J − 1) J I, no plasticity.
- metal: StVK on Hencky strain ε = log Σ, τ = U (2μ ε + λ tr(ε) 1) Uᵀ; von Mises return map
  ‖dev τ‖ ≤ √(2/3) σ_y, perfectly plastic.
- plasticine: as metal, with isotropic hardening (softening if negative) σ_y(α) =
  σ_y0 · max(1 + h α, 0.1).
- sand: Hencky elasticity, Drucker–Prager return map (Klár et al. 2016), friction angle φ:
  α_DP = √(2/3) · 2 sin φ / (3 − sin φ); expansion (tr ε > 0) projects to the cone tip.
- snow: fixed-corotated on F_E with μ, λ scaled by exp(ξ (1 − J_P)), singular values of
  F_E clamped to [1 − θc, 1 + θs] (Stomakhin et al. 2013).
"""
from __future__ import annotations

import math

import warp as wp

from physgm.materials import Material, PhysParams

JELLY = wp.constant(0)
METAL = wp.constant(1)
PLASTICINE = wp.constant(2)
SAND = wp.constant(3)
SNOW = wp.constant(4)
KIND = {Material.jelly: 0, Material.metal: 1, Material.plasticine: 2, Material.sand: 3,
        Material.snow: 4}


@wp.struct
class MaterialParams:
    kind: int
    mu: float  # Lamé μ [Pa]
    lam: float  # Lamé λ [Pa]
    yield_stress: float  # σ_y [Pa] (metal, plasticine)
    hardening: float  # plasticine h, snow ξ
    alpha_dp: float  # Drucker–Prager cone coefficient (sand)
    theta_c: float  # snow critical compression
    theta_s: float  # snow critical stretch


def material_struct(params: PhysParams) -> MaterialParams:
    mu, lam = params.lame()
    m = MaterialParams()
    m.kind = KIND[params.material]
    m.mu, m.lam = float(mu), float(lam)
    m.yield_stress = float(params.yield_stress or 0.0)
    m.hardening = float(params.hardening or 0.0)
    if params.friction_angle is not None:
        s = math.sin(math.radians(params.friction_angle))
        m.alpha_dp = math.sqrt(2.0 / 3.0) * 2.0 * s / (3.0 - s)
    else:
        m.alpha_dp = 0.0
    m.theta_c = float(params.critical_compression or 0.0)
    m.theta_s = float(params.critical_stretch or 0.0)
    return m


@wp.func
def svd_rotations(F: wp.mat33):
    """F = U diag(σ) Vᵀ with U, V proper rotations (a reflection moves into σ[2])."""
    U = wp.mat33()
    sig = wp.vec3()
    V = wp.mat33()
    wp.svd3(F, U, sig, V)
    if wp.determinant(U) < 0.0:
        U = wp.mat33(U[0, 0], U[0, 1], -U[0, 2], U[1, 0], U[1, 1], -U[1, 2],
                      U[2, 0], U[2, 1], -U[2, 2])
        sig = wp.vec3(sig[0], sig[1], -sig[2])
    if wp.determinant(V) < 0.0:
        V = wp.mat33(V[0, 0], V[0, 1], -V[0, 2], V[1, 0], V[1, 1], -V[1, 2],
                      V[2, 0], V[2, 1], -V[2, 2])
        sig = wp.vec3(sig[0], sig[1], -sig[2])
    return U, sig, V


@wp.func
def fixed_corotated(U: wp.mat33, sig: wp.vec3, V: wp.mat33, mu: float, lam: float):
    """τ = 2μ (F − R) Fᵀ + λ (J − 1) J I for F = U diag(σ) Vᵀ, R = U Vᵀ."""
    d = wp.vec3(2.0 * mu * (sig[0] - 1.0) * sig[0], 2.0 * mu * (sig[1] - 1.0) * sig[1],
                2.0 * mu * (sig[2] - 1.0) * sig[2])
    J = sig[0] * sig[1] * sig[2]
    return U * wp.diag(d) * wp.transpose(U) + wp.identity(n=3, dtype=float) * (lam * (J - 1.0) * J)


@wp.func
def hencky(U: wp.mat33, eps: wp.vec3, mu: float, lam: float):
    """StVK on Hencky strain: τ = U (2μ ε + λ tr(ε) 1) Uᵀ."""
    tr = eps[0] + eps[1] + eps[2]
    return U * wp.diag(2.0 * mu * eps + wp.vec3(lam * tr)) * wp.transpose(U)


@wp.func
def log_strain(sig: wp.vec3):
    return wp.vec3(wp.log(wp.max(sig[0], 1e-4)), wp.log(wp.max(sig[1], 1e-4)),
                   wp.log(wp.max(sig[2], 1e-4)))


@wp.func
def exp_strain(eps: wp.vec3):
    return wp.vec3(wp.exp(eps[0]), wp.exp(eps[1]), wp.exp(eps[2]))


@wp.func
def von_mises_yield(pstate: float, m: MaterialParams):
    if m.kind == PLASTICINE:
        return m.yield_stress * wp.max(1.0 + m.hardening * pstate, 0.1)
    return m.yield_stress


@wp.func
def update(F: wp.mat33, pstate: float, m: MaterialParams):
    """Return map of a trial elastic F and the stress of the result, with one SVD.

    Returns (F_E, new plastic state, Kirchhoff stress τ [Pa]).
    """
    U, sig, V = svd_rotations(F)
    if m.kind == JELLY:
        return F, pstate, fixed_corotated(U, sig, V, m.mu, m.lam)
    if m.kind == SNOW:
        c = wp.vec3(wp.clamp(sig[0], 1.0 - m.theta_c, 1.0 + m.theta_s),
                    wp.clamp(sig[1], 1.0 - m.theta_c, 1.0 + m.theta_s),
                    wp.clamp(sig[2], 1.0 - m.theta_c, 1.0 + m.theta_s))
        jp = wp.clamp(pstate * (sig[0] * sig[1] * sig[2]) / (c[0] * c[1] * c[2]), 0.6, 20.0)
        h = wp.exp(m.hardening * (1.0 - jp))
        return U * wp.diag(c) * wp.transpose(V), jp, fixed_corotated(U, c, V, m.mu * h, m.lam * h)
    eps = log_strain(sig)
    tr = eps[0] + eps[1] + eps[2]
    dev = eps - wp.vec3(tr / 3.0)
    dev_norm = wp.length(dev) + 1e-12
    new_state = pstate
    dgamma = float(0.0)
    if m.kind == SAND:
        if tr >= 0.0:  # expansion: no cohesion, project to the cone tip (stress-free)
            return U * wp.transpose(V), pstate, wp.mat33(0.0)
        dgamma = dev_norm + (3.0 * m.lam + 2.0 * m.mu) / (2.0 * m.mu) * tr * m.alpha_dp
    else:  # von Mises (metal, plasticine): ‖2μ dev ε‖ ≤ √(2/3) σ_y
        dgamma = dev_norm - wp.sqrt(2.0 / 3.0) * von_mises_yield(pstate, m) / (2.0 * m.mu)
        if m.kind == PLASTICINE and dgamma > 0.0:
            new_state = pstate + dgamma
    if dgamma > 0.0:
        eps = eps - (dgamma / dev_norm) * dev
        F = U * wp.diag(exp_strain(eps)) * wp.transpose(V)
    return F, new_state, hencky(U, eps, m.mu, m.lam)
