"""Vision Transformer with the DINOv3 layout: 16-px patch conv, class token, register
("storage") tokens, 2D RoPE in every attention layer, LayerScale, final LayerNorm.

``ViT(...)`` defaults are DINOv3 ViT-L/16 (1024 dim, 24 blocks, 16 heads, MLP ×4 with GELU,
4 registers, LayerScale 1e-5, RoPE base 100, LayerNorm eps 1e-5); the quickstart builds a
small instance of the same class from scratch. RoPE needs no positional table, so any
image size that is a multiple of the patch works. Token order: [cls, registers, patches].
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from physgm.model.layers import Block, RopeEmbedding, init_weights


class ViT(nn.Module):
    def __init__(self, patch_size: int = 16, dim: int = 1024, depth: int = 24, heads: int = 16,
                 mlp_ratio: float = 4.0, n_registers: int = 4,
                 layer_scale: Optional[float] = 1e-5, rope_base: float = 100.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.patch_size = patch_size
        self.dim = dim
        self.n_prefix = 1 + n_registers
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, n_registers, dim))
        self.rope = RopeEmbedding(dim // heads, rope_base)
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, qkv_bias=True, layer_scale=layer_scale, norm_eps=norm_eps)
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.apply(init_weights)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.register_tokens, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) normalised image, H and W multiples of the patch →
        patch tokens (B, h·w, D) after the final norm, row-major over the (h, w) grid."""
        p = self.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of the "
                             f"patch size {p}: resize the input views")
        x = self.patch_embed(x)
        b, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        prefix = torch.cat([self.cls_token, self.register_tokens], dim=1).expand(b, -1, -1)
        x = torch.cat([prefix.to(x.dtype), x], dim=1)
        rope = self.rope(h, w, device=x.device)
        for blk in self.blocks:
            x = blk(x, rope, self.n_prefix)
        return self.norm(x)[:, self.n_prefix:]
