"""Pretraining losses, as pure functions of tensors.

Terms (each a scalar, mean over its elements):
- ``rgb``: L2 between rendered and target RGB, (..., H, W, 3) in [0, 1];
- ``alpha``: rendered alpha vs the target foreground mask, BCE (default) or L1;
- ``depth``: L1 between predicted and target depth [m] where the mask is set (pretraining:
  the per-pixel Gaussians' camera-frame z in the input views vs the stored depth);
- ``lpips``: LPIPS-VGG (only with an ``LPIPS`` module built from local weights);
- ``material``: cross-entropy of the material logits against the label;
- ``param_nll``: Gaussian NLL ½(log 2π + log σ² + (z − μ)²/σ²) of the labelled parameters
  under the label material's Gaussian, over that material's slots only;
- ``param_mse``: (z − μ)² over the same slots.

``physgm_losses`` computes the terms whose inputs are given and the weighted ``total``.
Weights default to ``DEFAULT_LOSS_WEIGHTS``; ``params`` weighs both parameter terms.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from physgm.model.distribution import N_PARAMS, slot_mask
from physgm.model.physics_head import PhysicsHeadOutput

DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"rgb": 1.0, "alpha": 0.1, "material": 0.1,
                                          "params": 0.01, "lpips": 1.0, "depth": 1.0}
WEIGHT_OF_TERM = {"rgb": "rgb", "alpha": "alpha", "depth": "depth", "lpips": "lpips",
                  "material": "material", "param_nll": "params", "param_mse": "params"}


def rgb_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; pred and target of one shape, RGB in [0, 1]."""
    if pred.shape != target.shape:
        raise ValueError(f"rgb shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return F.mse_loss(pred, target.to(pred))


def alpha_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Rendered alpha vs mask (same shape, in [0, 1]): ``bce`` (alpha clamped to
    [1e-6, 1 − 1e-6]) or ``l1``."""
    if pred.shape != target.shape:
        raise ValueError(f"alpha shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    target = target.to(pred)
    if kind == "bce":
        return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target)
    if kind == "l1":
        return (pred - target).abs().mean()
    raise ValueError(f"alpha loss kind must be 'bce' or 'l1', got {kind!r}")


def depth_loss(pred: torch.Tensor, target: torch.Tensor,
               mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean |pred − target| [m] over pixels where ``mask`` (same shape, bool/0–1) is set."""
    err = (pred - target.to(pred)).abs()
    if mask is None:
        return err.mean()
    w = mask.to(pred)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def material_loss(logits: torch.Tensor, material: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; logits (B, M), material (B,) long indices into ``MATERIALS``."""
    return F.cross_entropy(logits, material.long())


def param_losses(mu: torch.Tensor, log_var: torch.Tensor, material: torch.Tensor,
                 z: torch.Tensor, mask: Optional[torch.Tensor] = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL, MSE) of labelled parameters under the label material's Gaussian.

    mu, log_var (B, M, P); material (B,) long; z (B, P) normalised labels; mask (B, P)
    optional extra restriction (e.g. labels that are missing). Both terms average over the
    used slots (the label material's ``MATERIAL_SLOTS`` ∧ mask)."""
    b = material.shape[0]
    if tuple(z.shape) != (b, N_PARAMS):
        raise ValueError(f"z must be (B, {N_PARAMS}) = {(b, N_PARAMS)}, got {tuple(z.shape)}")
    idx = material.long()[:, None, None].expand(b, 1, N_PARAMS)
    mu_m = torch.gather(mu, 1, idx)[:, 0]
    lv_m = torch.gather(log_var, 1, idx)[:, 0]
    used = slot_mask(mu.device)[material.long()]
    if mask is not None:
        used = used & mask.to(torch.bool)
    w = used.to(mu.dtype)
    n = w.sum().clamp_min(1.0)
    # unused slots may hold anything (NaN included): zero them so no NaN reaches backward
    z = torch.where(used, z.to(mu), torch.zeros_like(mu_m))
    sq = (z - mu_m) ** 2
    nll = 0.5 * (math.log(2.0 * math.pi) + lv_m + sq * torch.exp(-lv_m))
    return (nll * w).sum() / n, (sq * w).sum() / n


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) → (N, 3, H, W)."""
    return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)


def combine(terms: Mapping[str, torch.Tensor],
            weights: Optional[Mapping[str, float]] = None) -> torch.Tensor:
    """Σ weight · term; ``weights`` overrides ``DEFAULT_LOSS_WEIGHTS`` key by key."""
    w = dict(DEFAULT_LOSS_WEIGHTS)
    if weights:
        unknown = set(weights) - set(DEFAULT_LOSS_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown loss weight(s) {sorted(unknown)}; known: "
                             f"{sorted(DEFAULT_LOSS_WEIGHTS)}")
        w.update(weights)
    if not terms:
        raise ValueError("no loss terms: pass at least one prediction/target pair")
    return sum(w[WEIGHT_OF_TERM[name]] * value for name, value in terms.items())


def physgm_losses(physics: Optional[PhysicsHeadOutput] = None,
                  material: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None,
                  z_mask: Optional[torch.Tensor] = None,
                  rgb: Optional[torch.Tensor] = None, target_rgb: Optional[torch.Tensor] = None,
                  alpha: Optional[torch.Tensor] = None, target_mask: Optional[torch.Tensor] = None,
                  depth: Optional[torch.Tensor] = None, target_depth: Optional[torch.Tensor] = None,
                  depth_mask: Optional[torch.Tensor] = None,
                  weights: Optional[Mapping[str, float]] = None, lpips=None,
                  alpha_kind: str = "bce") -> dict[str, torch.Tensor]:
    """All applicable terms and their weighted sum under ``"total"``.

    physics + material (B,) → ``material``; physics + material + z (B, P) → ``param_nll``,
    ``param_mse``; rgb/target_rgb (..., H, W, 3) → ``rgb`` (+ ``lpips`` when an ``LPIPS``
    module is given); alpha/target_mask (..., H, W) → ``alpha``; depth/target_depth
    (..., H, W) [m] → ``depth`` (masked by ``depth_mask``, else by target_mask, when given)."""
    terms: dict[str, torch.Tensor] = {}
    if rgb is not None and target_rgb is not None:
        terms["rgb"] = rgb_loss(rgb, target_rgb)
        if lpips is not None:
            terms["lpips"] = lpips(_channels_first(rgb), _channels_first(target_rgb.to(rgb))).mean()
    if alpha is not None and target_mask is not None:
        terms["alpha"] = alpha_loss(alpha, target_mask, alpha_kind)
    if depth is not None and target_depth is not None:
        terms["depth"] = depth_loss(depth, target_depth,
                                    depth_mask if depth_mask is not None else target_mask)
    if physics is not None and material is not None:
        terms["material"] = material_loss(physics.logits, material)
        if z is not None:
            terms["param_nll"], terms["param_mse"] = param_losses(
                physics.mu, physics.log_var, material, z, z_mask)
    terms["total"] = combine(terms, weights)
    return terms
