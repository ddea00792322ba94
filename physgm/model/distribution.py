"""The physics policy π(m, z | images): pure math on the physics head's outputs, no state.

    p(m, z) = Cat(m | softmax(logits)) · Π_{i ∈ S(m)} N(z_i | μ_{m,i}, σ²_{m,i})

m is one of the M = 5 materials (order ``physgm.materials.MATERIALS``); z (P = 8) lives in
the normalised space of ``physgm.materials`` (slots ``PARAM_NAMES``); S(m) =
``MATERIAL_SLOTS[m]`` are the slots material m uses, the others do not enter the density.
Mean and variance are *per material* (μ, log σ² of shape (B, M, P)): E, yield stress and
density ranges differ between materials, so one shared Gaussian would have to straddle
them. This log-probability is what DPO differentiates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from physgm.materials import (LOG_PARAMS, MATERIAL_SLOTS, MATERIALS, NORM, PARAM_NAMES,
                              PARAM_RANGES, PhysParams, denormalize)

N_MATERIALS = len(MATERIALS)
N_PARAMS = len(PARAM_NAMES)
SAMPLING_MODES = ("independent", "shared_material", "mirrored")
MATERIAL_CHOICES = ("sample", "mode")
MIRROR_BLOCKS = ("joint", "E_rest")
_LOG_2PI = math.log(2.0 * math.pi)


def slot_mask(device=None) -> torch.Tensor:
    """(M, P) bool: ``[m, i]`` is True when material m uses parameter slot i."""
    mask = torch.zeros(N_MATERIALS, N_PARAMS, dtype=torch.bool, device=device)
    for m, mat in enumerate(MATERIALS):
        mask[m, list(MATERIAL_SLOTS[mat])] = True
    return mask


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z | μ, σ²) = −½ (log 2π + log σ² + (z − μ)² / σ²)."""
    return -0.5 * (_LOG_2PI + log_var + (z - mu) ** 2 * torch.exp(-log_var))


@dataclass(eq=False)
class PhysicsDistribution:
    """π(m, z) from logits (B, M), mu (B, M, P) and log_var (B, M, P) (normalised space)."""

    logits: torch.Tensor
    mu: torch.Tensor
    log_var: torch.Tensor

    def __post_init__(self) -> None:
        b = self.logits.shape[0]
        if (tuple(self.logits.shape) != (b, N_MATERIALS)
                or tuple(self.mu.shape) != (b, N_MATERIALS, N_PARAMS)
                or self.log_var.shape != self.mu.shape):
            raise ValueError(f"expected logits (B, {N_MATERIALS}), mu and log_var (B, "
                             f"{N_MATERIALS}, {N_PARAMS}); got {tuple(self.logits.shape)}, "
                             f"{tuple(self.mu.shape)}, {tuple(self.log_var.shape)}")

    @property
    def probs(self) -> torch.Tensor:
        """(B, M) material probabilities."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def std(self) -> torch.Tensor:
        """(B, M, P) standard deviations σ = exp(½ log σ²)."""
        return torch.exp(0.5 * self.log_var)

    def _select(self, t: torch.Tensor, materials: torch.Tensor) -> torch.Tensor:
        """t (B, M, P), materials (B, K) → t[b, materials[b, k]] (B, K, P)."""
        idx = materials[..., None].expand(*materials.shape, t.shape[-1])
        return torch.gather(t, 1, idx)

    def sample(self, k: int, generator: Optional[torch.Generator] = None,
               mode: str = "independent", material: str = "sample", blocks: str = "joint"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """K draws per batch item: materials (B, K) long and z (B, K, P) (no gradient).

        ``mode`` (``SAMPLING_MODES``; each draw is marginally π in all three):
        - independent: K independent draws (m, z) ~ π.
        - shared_material: one m ~ Cat(softmax(logits)) per batch item, K draws
          z ~ N(μ_m, σ²_m) of it.
        - mirrored: K/2 independent draws (m, μ_m + σ_m·ε), each followed by its mirror image
          (m, μ_m − σ_m·ε) (antithetic sampling, as in evolution strategies): a couple has
          the same material and the same density under π, so it probes the reward along ε
          alone. Needs an even K.
        ``material`` (``MATERIAL_CHOICES``): "sample" draws each material from Cat(softmax
        (logits)) as above; "mode" gives every draw the most likely material instead (z still
        drawn as above, from that material's Gaussian: the parameters of the material the
        model names, not marginally π; the same random draws are consumed).
        ``blocks`` (``MIRROR_BLOCKS``, mirrored only): "joint" perturbs every slot of each
        couple; "E_rest" alternates: couples 0, 2, … perturb E alone, couples 1, 3, … every
        other used slot alone (the rest held at μ), so a couple's reward gap answers one
        question: which E at the current other parameters, or which other parameters at the
        current E (draws are then not marginally π; DPO needs only log π of each).
        Slots the drawn material does not use hold its μ (they are ignored downstream).
        ``generator`` must live on the distribution's device."""
        if k < 1:
            raise ValueError(f"sample needs k ≥ 1, got {k}")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
        if mode == "mirrored" and k % 2:
            raise ValueError(f"mirrored sampling draws couples: k must be even, got {k}")
        if material not in MATERIAL_CHOICES:
            raise ValueError(f"material must be one of {MATERIAL_CHOICES}, got {material!r}")
        if blocks not in MIRROR_BLOCKS:
            raise ValueError(f"blocks must be one of {MIRROR_BLOCKS}, got {blocks!r}")
        if blocks != "joint" and mode != "mirrored":
            raise ValueError(f"blocks {blocks!r} splits mirrored couples: use mode='mirrored'")
        with torch.no_grad():
            n = {"independent": k, "shared_material": 1, "mirrored": k // 2}[mode]
            materials = torch.multinomial(self.probs, n, replacement=True, generator=generator)
            if material == "mode":
                materials = self.logits.argmax(-1, keepdim=True).expand(-1, n)
            if mode == "shared_material":
                materials = materials.expand(-1, k)
            elif mode == "mirrored":  # m₀, m₀, m₁, m₁, …
                materials = materials.repeat_interleave(2, dim=1)
            mu, std = self._select(self.mu, materials), self._select(self.std, materials)
            shape = (mu.shape[0], k // 2 if mode == "mirrored" else k, mu.shape[2])
            eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
            if blocks == "E_rest":  # couple c perturbs E alone (c even) or the rest (c odd)
                e_only = torch.zeros(shape[1:], dtype=torch.bool, device=mu.device)
                e_only[:, PARAM_NAMES.index("E")] = True
                even = (torch.arange(shape[1], device=mu.device) % 2 == 0)[:, None]
                eps = torch.where(torch.where(even, e_only, ~e_only), eps, torch.zeros_like(eps))
            if mode == "mirrored":  # (B, K/2, P) → (B, K, P) as ε₀, −ε₀, ε₁, −ε₁, …
                eps = torch.stack([eps, -eps], dim=2).flatten(1, 2)
            used = slot_mask(mu.device)[materials]
            return materials, torch.where(used, mu + std * eps, mu)

    def log_prob(self, materials: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log π(m, z) for materials (B, K) long and z (B, K, P) → (B, K).

        = log softmax(logits)[m] + Σ_{i ∈ S(m)} log N(z_i | μ_{m,i}, σ²_{m,i}); exact and
        differentiable in logits, mu and log_var. (B,) and (B, P) inputs give (B,)."""
        squeeze = materials.ndim == 1
        if squeeze:
            materials, z = materials[:, None], z[:, None]
        materials = materials.long()
        b, k = materials.shape
        if tuple(z.shape) != (b, k, N_PARAMS):
            raise ValueError(f"z must be (B, K, {N_PARAMS}) = {(b, k, N_PARAMS)}, "
                             f"got {tuple(z.shape)}")
        log_pm = torch.gather(F.log_softmax(self.logits, dim=-1), 1, materials)
        mu = self._select(self.mu, materials)
        used = slot_mask(self.mu.device)[materials]
        # unused slots may hold anything (NaN included): replace them so no NaN reaches backward
        z = torch.where(used, z.to(mu), mu.detach())
        lp = gaussian_log_prob(z, mu, self._select(self.log_var, materials))
        out = log_pm + torch.where(used, lp, torch.zeros_like(lp)).sum(-1)
        return out[:, 0] if squeeze else out

    def entropy(self) -> torch.Tensor:
        """(B,) exact entropy of the joint: H(m) + Σ_m p(m) Σ_{i ∈ S(m)} ½ log(2πe σ²_{m,i})."""
        logp = F.log_softmax(self.logits, dim=-1)
        h_m = -(logp.exp() * logp).sum(-1)
        h_z = 0.5 * (_LOG_2PI + 1.0 + self.log_var)
        h_z = torch.where(slot_mask(self.mu.device), h_z, torch.zeros_like(h_z)).sum(-1)
        return h_m + (logp.exp() * h_z).sum(-1)

    def mode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(materials (B,) argmax, z (B, P) = that material's μ)."""
        m = self.logits.argmax(-1)
        return m, self._select(self.mu, m[:, None])[:, 0]

    def mean_params(self) -> list[PhysParams]:
        """One PhysParams per batch item: the most probable material at its mean z
        (denormalised and clipped into the material's range; for log10 slots this is the
        median in SI units)."""
        m, z = self.mode()
        z_np = z.detach().float().cpu().numpy()
        return [denormalize(MATERIALS[int(mi)], z_np[i]) for i, mi in enumerate(m.tolist())]

    def param_stats(self) -> list[dict]:
        """Per batch item, for the most probable material: ``{"material": {"name", "probs":
        {name: p}}, "params": {name: {"mean", "std"[, "log10_mean", "log10_std"]}}}``.

        SI units. For E, density and yield stress (log10 slots) ``mean`` is 10^log10_mean
        (the median) and ``std`` the delta-method ln(10)·mean·log10_std; values are clipped
        into the material's range like ``mean_params``."""
        probs = self.probs.detach().float().cpu().numpy()
        m, z = self.mode()
        mu = z.detach().float().cpu().numpy()
        std = self._select(self.std, m[:, None])[:, 0].detach().float().cpu().numpy()
        out = []
        for b, mi in enumerate(m.tolist()):
            mat = MATERIALS[mi]
            params = {}
            for i in MATERIAL_SLOTS[mat]:
                name = PARAM_NAMES[i]
                centre, half = NORM[name]
                lo, hi = PARAM_RANGES[mat][name]
                if name in LOG_PARAMS:
                    t = float(np.clip(centre + half * mu[b, i], math.log10(lo), math.log10(hi)))
                    t_std = half * float(std[b, i])
                    params[name] = {"mean": 10.0 ** t, "std": math.log(10.0) * 10.0 ** t * t_std,
                                    "log10_mean": t, "log10_std": t_std}
                else:
                    params[name] = {"mean": float(np.clip(centre + half * mu[b, i], lo, hi)),
                                    "std": half * float(std[b, i])}
            out.append({"material": {"name": mat.value,
                                     "probs": {mm.value: float(probs[b, j])
                                               for j, mm in enumerate(MATERIALS)}},
                        "params": params})
        return out


def distribution(head_output) -> PhysicsDistribution:
    """The policy of a physics-head output (anything with ``logits``, ``mu``, ``log_var``)."""
    return PhysicsDistribution(head_output.logits, head_output.mu, head_output.log_var)
