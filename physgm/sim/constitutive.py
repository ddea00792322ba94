"""Constitutive models as warp functions: elastic stress and plastic return mappings.

Each material is a pair (stress, return map) acting on the elastic deformation gradient
F_E (3×3):
- ``update(F_trial, plastic_state, m) -> (F_E, plastic_state, τ)``: the plastic return map of
  the trial elastic deformation gradient and the Kirchhoff stress τ = P F_Eᵀ [Pa] of the
  result, sharing one SVD (the MLS-MPM P2G uses τ directly: force −dt · V⁰ · (4/dx²) · τ).
  The plastic state is a per-particle ``vec3``: slot 0 = snow J_P, plasticine and metal
  equivalent plastic strain ᾱ, sand hardening state q; slot 1 = sand log-volume correction
  v_c; slot 2 unused.

Models (docs/simulator.md has the derivations, conventions and references):
- jelly: fixed-corotated, τ = 2μ (F − R) Fᵀ + λ (J − 1) J I, no plasticity.
- metal: StVK on Hencky strain ε = log Σ, τ = U (2μ ε + λ tr(ε) 1) Uᵀ; von Mises return map
  ‖dev τ‖ ≤ √(2/3) σ_y (σ_y the uniaxial yield stress), perfectly plastic.
- plasticine: as metal, with linear isotropic hardening (softening if negative) on the
  equivalent plastic strain ᾱ = Σ √(2/3) ‖Δε_p‖: σ_y(ᾱ) = σ_y0 · max(1 + h ᾱ, 0.1), solved
  implicitly (closed-form radial return), so the stress ends on the updated surface.
- sand: Hencky elasticity, Drucker–Prager return map with Klár et al. 2016's hardening
  φ_F(q) = φ · (1 + (h1 q − h3) e^{−h2 q}) (their h0 = 35°, h1 = 9°, h3 = 10°, h2 = 0.2,
  scaled to φ = h0) and volume correction (the log volume v_c lost to a projection onto
  the cone tip is added back to the trial strain, so sand that was pulled apart recompacts
  stress-free to its original volume instead of keeping the gain).
- snow: fixed-corotated on F_E with μ, λ scaled by h = exp(ξ (1 − J_P)), singular values of
  F_E clamped to [1 − θc, 1 + θs] (Stomakhin et al. 2013). J_P is not clamped (as in the
  paper); h is capped at ``SNOW_MAX_HARDENING`` so that a stable substep exists
  (``stability.stable_dt`` uses the capped stiffness).
"""
from __future__ import annotations

import math

import warp as wp

from physgm.materials import SNOW_MAX_HARDENING, Material, PhysParams

JELLY = wp.constant(0)
METAL = wp.constant(1)
PLASTICINE = wp.constant(2)
SAND = wp.constant(3)
SNOW = wp.constant(4)
KIND = {Material.jelly: 0, Material.metal: 1, Material.plasticine: 2, Material.sand: 3,
        Material.snow: 4}

SQRT_2_3 = wp.constant(math.sqrt(2.0 / 3.0))
YIELD_FLOOR = wp.constant(0.1)  # plasticine softens to at most 10 % of σ_y0
# Klár et al. 2016: φ_F(q) = h0 + (h1 q − h3) e^{−h2 q} with h0 = 35°, h1 = 9°,
# h3 = 10°, h2 = 0.2; taken relative to h0 so that the friction angle given is h0.
SAND_H1 = wp.constant(9.0 / 35.0)
SAND_H2 = wp.constant(0.2)
SAND_H3 = wp.constant(10.0 / 35.0)
LOG_SNOW_MAX_HARDENING = wp.constant(math.log(SNOW_MAX_HARDENING))


@wp.struct
class MaterialParams:
    kind: int
    mu: float  # Lamé μ [Pa]
    lam: float  # Lamé λ [Pa]
    yield_stress: float  # σ_y0 [Pa] (metal, plasticine): uniaxial yield stress
    hardening: float  # plasticine h (per unit equivalent plastic strain), snow ξ
    friction_angle: float  # sand: φ = Klár's h0 [rad]
    theta_c: float  # snow critical compression
    theta_s: float  # snow critical stretch


def material_struct(params: PhysParams) -> MaterialParams:
    mu, lam = params.lame()
    m = MaterialParams()
    m.kind = KIND[params.material]
    m.mu, m.lam = float(mu), float(lam)
    m.yield_stress = float(params.yield_stress or 0.0)
    m.hardening = float(params.hardening or 0.0)
    m.friction_angle = math.radians(params.friction_angle or 0.0)
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
def snow_update(U: wp.mat33, sig: wp.vec3, V: wp.mat33, ps: wp.vec3, m: MaterialParams):
    """Stomakhin et al. 2013: clamp σ of F_E, move the rest into J_P (slot 0), harden."""
    c = wp.vec3(wp.clamp(sig[0], 1.0 - m.theta_c, 1.0 + m.theta_s),
                wp.clamp(sig[1], 1.0 - m.theta_c, 1.0 + m.theta_s),
                wp.clamp(sig[2], 1.0 - m.theta_c, 1.0 + m.theta_s))
    # |J| of the trial: an inverted particle (σ[2] < 0) keeps a positive J_P.
    jp = ps[0] * wp.abs(sig[0] * sig[1] * sig[2]) / (c[0] * c[1] * c[2])
    h = wp.exp(wp.min(m.hardening * (1.0 - jp), LOG_SNOW_MAX_HARDENING))
    return (U * wp.diag(c) * wp.transpose(V), wp.vec3(jp, ps[1], ps[2]),
            fixed_corotated(U, c, V, m.mu * h, m.lam * h))


@wp.func
def sand_update(U: wp.mat33, sig: wp.vec3, V: wp.mat33, ps: wp.vec3, m: MaterialParams):
    """Klár et al. 2016 Drucker–Prager with hardening q (slot 0) and volume correction v_c
    (slot 1). q grows by the deviatoric plastic strain of each projection; the volumetric
    part goes to v_c instead (recoverable, not plastic work)."""
    eps = log_strain(sig)
    tr_trial = eps[0] + eps[1] + eps[2]
    dev = eps - wp.vec3(tr_trial / 3.0)
    dev_norm = wp.length(dev)
    tr = tr_trial + ps[1]  # volume correction: strain relative to the original volume
    if tr >= 0.0:  # expansion: no cohesion, project to the cone tip (stress-free)
        return U * wp.transpose(V), wp.vec3(ps[0] + dev_norm, tr, ps[2]), wp.mat33(0.0)
    q = ps[0]
    phi = wp.min(m.friction_angle * (1.0 + (SAND_H1 * q - SAND_H3) * wp.exp(-SAND_H2 * q)),
                 0.5 * wp.pi)
    s = wp.sin(phi)
    alpha = SQRT_2_3 * 2.0 * s / (3.0 - s)
    dgamma = dev_norm + (3.0 * m.lam + 2.0 * m.mu) / (2.0 * m.mu) * tr * alpha
    e = dev + wp.vec3(tr / 3.0)  # the stored volume returns to F_E: v_c → 0
    if dgamma > 0.0:  # outside the cone: project onto its surface along the deviator
        e = e - (dgamma / (dev_norm + 1e-12)) * dev
        q = q + dgamma
    return U * wp.diag(exp_strain(e)) * wp.transpose(V), wp.vec3(q, 0.0, ps[2]), hencky(
        U, e, m.mu, m.lam)


@wp.func
def von_mises_update(U: wp.mat33, sig: wp.vec3, V: wp.mat33, F: wp.mat33, ps: wp.vec3,
                     m: MaterialParams):
    """Radial return ‖dev τ‖ ≤ √(2/3) σ_y(ᾱ) with σ_y(ᾱ) = σ_y0 max(1 + h ᾱ, floor), solved
    implicitly: Δγ = f_trial / (2μ + (2/3) σ_y0 h) on the linear branch (exact), the
    perfectly plastic Δγ = f_trial / (2μ) on the floor. ᾱ (slot 0) += √(2/3) Δγ."""
    eps = log_strain(sig)
    tr = eps[0] + eps[1] + eps[2]
    dev = eps - wp.vec3(tr / 3.0)
    dev_norm = wp.length(dev)
    a = ps[0]
    g = 1.0 + m.hardening * a
    slope = m.yield_stress * m.hardening  # dσ_y/dᾱ on the linear branch [Pa]
    if g <= YIELD_FLOOR:
        g = YIELD_FLOOR
        slope = 0.0
    f = 2.0 * m.mu * dev_norm - SQRT_2_3 * m.yield_stress * g
    if f <= 0.0:
        return F, ps, hencky(U, eps, m.mu, m.lam)
    denom = 2.0 * m.mu + (2.0 / 3.0) * slope
    dgamma = float(0.0)
    if denom > 0.0:
        dgamma = f / denom
    if denom <= 0.0 or 1.0 + m.hardening * (a + SQRT_2_3 * dgamma) < YIELD_FLOOR:
        # softening reaches the floor within this increment (or faster than the shear
        # stiffness can follow): the rest of the return is perfectly plastic at the floor
        dgamma = dev_norm - SQRT_2_3 * m.yield_stress * YIELD_FLOOR / (2.0 * m.mu)
    eps = eps - (dgamma / (dev_norm + 1e-12)) * dev
    return (U * wp.diag(exp_strain(eps)) * wp.transpose(V),
            wp.vec3(a + SQRT_2_3 * dgamma, ps[1], ps[2]), hencky(U, eps, m.mu, m.lam))


@wp.func
def update(F: wp.mat33, pstate: wp.vec3, m: MaterialParams):
    """Return map of a trial elastic F and the stress of the result, with one SVD.

    Returns (F_E, new plastic state, Kirchhoff stress τ [Pa]).
    """
    U, sig, V = svd_rotations(F)
    if m.kind == JELLY:
        return F, pstate, fixed_corotated(U, sig, V, m.mu, m.lam)
    if m.kind == SNOW:
        return snow_update(U, sig, V, pstate, m)
    if m.kind == SAND:
        return sand_update(U, sig, V, pstate, m)
    return von_mises_update(U, sig, V, F, pstate, m)
