"""PhysGM: 1–4 posed images → per-pixel 3D Gaussians + a distribution over physics.

    images (B, V, 3, H, W) ─ backbone ─► patch tokens (B·V, h·w, D) ─┐
    Plücker rays (B, V, 6, H, W) ─ PixelUnshuffle + linear ─────────┤ (+) + view embedding
    G learnable global tokens ──────────────────────────────────────┴► joint transformer
        ├─ 4 block outputs (patch tokens) ─► DPT Gaussian head ─► PixelGaussians (B, V, H, W, ·)
        └─ final global tokens (B, G, D) [+ photometric token] + max-pooled patch token
               ─► physics head ─► π(material, …)

``encode`` (backbone + transformer) is what DPO keeps frozen; ``physics(global_tokens)``
runs the physics head alone on cached tokens; ``freeze_for_dpo`` leaves only the physics
head trainable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from physgm.config import ModelConfig
from physgm.model.backbone import Backbone
from physgm.model.gaussian_head import GaussianHead, PixelGaussians
from physgm.model.photometric import N_STATS, photometric_stats
from physgm.model.physics_head import PhysicsHead, PhysicsHeadOutput
from physgm.model.plucker import PluckerEmbed
from physgm.model.transformer import MultiViewTransformer, dpt_layer_indices


@dataclass(eq=False)
class Encoded:
    """global_tokens (B, T, D), T = ``ModelConfig.n_physics_tokens``, what the physics head
    reads: the G learned global tokens after the final norm, the photometric token (with
    ``photometric_token``) and the max over all views' patch tokens; features: 4 block outputs
    as maps (B·V, D, h, w), shallow to deep."""

    global_tokens: torch.Tensor
    features: list[torch.Tensor]


@dataclass(eq=False)
class PhysGMOutput:
    gaussians: Optional[PixelGaussians]
    physics: PhysicsHeadOutput
    global_tokens: torch.Tensor
    features: Optional[list[torch.Tensor]] = None


class PhysGM(nn.Module):
    def __init__(self, cfg: ModelConfig, load_backbone: bool = True):
        """``load_backbone=False`` skips reading the DINOv3 file (random frozen backbone):
        for smoke tests, or when a PhysGM checkpoint provides the weights next."""
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg, load_weights=load_backbone)
        self.proj = (nn.Identity() if self.backbone.out_dim == cfg.dim
                     else nn.Linear(self.backbone.out_dim, cfg.dim))
        self.plucker_embed = PluckerEmbed(cfg.patch_size, cfg.dim)
        self.view_embed = nn.Parameter(torch.randn(cfg.max_views, cfg.dim) * 0.02)
        self.global_tokens = nn.Parameter(torch.randn(cfg.n_global_tokens, cfg.dim) * 0.02)
        # The object pixels' colour statistics (N_STATS numbers) → one token for the physics
        # head (quickstart validation, 500 physics-only steps: material accuracy 0.57 → 0.75
        # with it and the head's ×10 learning rate; docs/results.md).
        self.photometric = (nn.Sequential(nn.Linear(N_STATS, cfg.dim), nn.GELU(),
                                          nn.Linear(cfg.dim, cfg.dim))
                            if cfg.photometric_token else None)
        self.transformer = MultiViewTransformer(cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio,
                                                cfg.grad_checkpoint)
        self.dpt_layers = list(cfg.dpt_layers) if cfg.dpt_layers else dpt_layer_indices(cfg.depth)
        self.gaussian_head = GaussianHead(cfg)
        self.physics_head = PhysicsHead(cfg)

    def check_inputs(self, images: torch.Tensor, plucker: torch.Tensor) -> None:
        """Raise ValueError saying what to change when the inputs do not fit the model."""
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
        b, v, _, h, w = images.shape
        if not 1 <= v <= self.cfg.max_views:
            raise ValueError(f"{v} views given; the model takes 1 to {self.cfg.max_views}")
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}×{w} is not a multiple of the patch size {p}; "
                             f"resize the views (e.g. to {self.cfg.image_size}²)")
        if tuple(plucker.shape) != (b, v, 6, h, w):
            raise ValueError(f"plucker must be (B, V, 6, H, W) = {(b, v, 6, h, w)}, "
                             f"got {tuple(plucker.shape)}")
        if not images.is_floating_point():
            raise ValueError("images must be float in [0, 1] (divide uint8 images by 255)")

    def encode(self, images: torch.Tensor, plucker: torch.Tensor) -> Encoded:
        """Backbone + multi-view transformer. images (B, V, 3, H, W) in [0, 1], plucker
        (B, V, 6, H, W) → Encoded."""
        self.check_inputs(images, plucker)
        b, v, _, h, w = images.shape
        gh, gw = h // self.cfg.patch_size, w // self.cfg.patch_size
        x = self.proj(self.backbone(images.flatten(0, 1)))                # (B·V, n, D)
        x = x + self.plucker_embed(plucker.flatten(0, 1).to(x.dtype))
        x = x.view(b, v, gh * gw, -1) + self.view_embed[:v, None, :]
        g = self.global_tokens.shape[0]
        tokens = torch.cat([self.global_tokens.expand(b, -1, -1), x.flatten(1, 2)], dim=1)
        out, kept = self.transformer(tokens, self.dpt_layers)
        features = [k[:, g:].reshape(b * v, gh, gw, -1).permute(0, 3, 1, 2) for k in kept]
        # The max-pooled patch token beside the learned ones: the object's colour statistics,
        # which tell the material, reach the physics head from the first step on. Max, not
        # mean: the object covers ~10 % of the patches, and a mean drowns it in background
        # (measured, 500 physics-only steps on the quickstart, validation material accuracy:
        # learned tokens alone ≈ 0.33, + mean 0.35, + max 0.71; docs/results.md).
        pooled = out[:, g:].amax(dim=1, keepdim=True)
        parts = [out[:, :g], pooled]
        if self.photometric is not None:
            parts.insert(1, self.photometric(photometric_stats(images).to(out.dtype))[:, None])
        return Encoded(global_tokens=torch.cat(parts, dim=1), features=features)

    @torch.no_grad()
    def encode_global(self, images: torch.Tensor, plucker: torch.Tensor) -> torch.Tensor:
        """The physics head's tokens (B, T, D) (``Encoded.global_tokens``), without gradient,
        that DPO caches per scene (the encoder is frozen there); ``physics`` consumes them."""
        return self.encode(images, plucker).global_tokens

    def physics(self, global_tokens: torch.Tensor) -> PhysicsHeadOutput:
        """Physics head alone: tokens (B, T, D) (``encode_global``) → PhysicsHeadOutput."""
        return self.physics_head(global_tokens)

    def forward(self, images: torch.Tensor, plucker: torch.Tensor,
                return_features: bool = False, with_gaussians: bool = True) -> PhysGMOutput:
        """``with_gaussians`` False skips the Gaussian head (``gaussians`` is None): a
        physics-only training step."""
        enc = self.encode(images, plucker)
        gaussians = self.gaussian_head(enc.features, images) if with_gaussians else None
        return PhysGMOutput(gaussians=gaussians, physics=self.physics(enc.global_tokens),
                            global_tokens=enc.global_tokens,
                            features=enc.features if return_features else None)

    def freeze_for_dpo(self) -> list[str]:
        """Freeze everything but the physics head; returns the trainable parameter names."""
        self.requires_grad_(False)
        self.physics_head.requires_grad_(True)
        return [n for n, p in self.named_parameters() if p.requires_grad]
