"""Physics head: global tokens → material logits and per-material Gaussians over the
normalised continuous parameters (see ``distribution.py`` for the density).

It reads T = ``ModelConfig.n_physics_tokens`` tokens: the model's G learned global tokens,
the photometric token (``model.photometric_token``) and the max-pooled patch token
(``PhysGM.encode``). All of them, each LayerNormed and
concatenated → MLP → logits (B, M) (measured on the quickstart, validation material
accuracy after 500 physics-only steps: the learned tokens alone 0.33, with the mean patch
token 0.35, with the max-pooled one 0.71; a linear probe on the learned tokens 0.65).
Tokens 1..T−1, each LayerNormed and concatenated → MLP →
μ (B, M, P) and log σ² (B, M, P). σ is kept in [std_min, std_max] by
log σ² = 2·log std_min + 2·log(std_max / std_min)·sigmoid(·), which bounds the DPO policy's
exploration and keeps the NLL finite.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from physgm.config import ModelConfig
from physgm.model.distribution import N_MATERIALS, N_PARAMS, PhysicsDistribution


@dataclass(eq=False)
class PhysicsHeadOutput:
    """logits (B, M); mu, log_var (B, M, P) in the normalised parameter space."""

    logits: torch.Tensor
    mu: torch.Tensor
    log_var: torch.Tensor

    def distribution(self) -> PhysicsDistribution:
        return PhysicsDistribution(self.logits, self.mu, self.log_var)


class PhysicsHead(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, h, g = cfg.dim, cfg.physics_hidden, cfg.n_physics_tokens
        self.n_global = g
        self.material_norm = nn.LayerNorm(d)
        self.material = nn.Sequential(nn.Linear(g * d, h), nn.GELU(), nn.Linear(h, N_MATERIALS))
        self.param_norm = nn.LayerNorm(d)
        self.params = nn.Sequential(nn.Linear((g - 1) * d, h), nn.GELU(), nn.Linear(h, h),
                                    nn.GELU(), nn.Linear(h, 2 * N_MATERIALS * N_PARAMS))
        self.log_var_min = 2.0 * math.log(cfg.std_min)
        self.log_var_span = 2.0 * math.log(cfg.std_max / cfg.std_min)
        # Start uniform over materials, μ ≈ 0 and σ at the geometric middle of its range.
        for last in (self.material[-1], self.params[-1]):
            nn.init.normal_(last.weight, std=1e-3)
            nn.init.zeros_(last.bias)

    def forward(self, global_tokens: torch.Tensor) -> PhysicsHeadOutput:
        """global_tokens (B, T, D) → PhysicsHeadOutput."""
        b, g, _ = global_tokens.shape
        if g != self.n_global:
            raise ValueError(f"physics head expects {self.n_global} tokens (the global ones, "
                             f"the photometric one if model.photometric_token, the max-pooled "
                             f"patch token), got {g}: tokens cached by another model?")
        logits = self.material(self.material_norm(global_tokens).flatten(1))
        rest = self.param_norm(global_tokens[:, 1:]).flatten(1)
        raw = self.params(rest).view(b, 2, N_MATERIALS, N_PARAMS)
        log_var = self.log_var_min + self.log_var_span * torch.sigmoid(raw[:, 1])
        return PhysicsHeadOutput(logits=logits, mu=raw[:, 0], log_var=log_var)

    def distribution(self, global_tokens: torch.Tensor) -> PhysicsDistribution:
        return self(global_tokens).distribution()
