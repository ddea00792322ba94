"""Transformer building blocks shared by the backbones and the multi-view transformer.

Pre-norm blocks ``x + ls1(attn(norm1(x))) ; x + ls2(mlp(norm2(x)))`` with attention through
``torch.nn.functional.scaled_dot_product_attention``. Module names follow the DINOv3 ViT
(``norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma``) so the
checkpoint key mapping in ``backbone.py`` stays short. Shapes: tokens ``(B, N, D)``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma`` (D,), initialised to ``init`` (DINOv3: 1e-5)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RopeEmbedding(nn.Module):
    """2D axial rotary position embedding of DINOv3 (``normalize_coords="separate"``).

    Patch centres get coordinates in [-1, 1] per axis: ``c = 2·(i + 0.5)/n − 1``. With
    head dim ``Dh``, ``periods = base ** (2·arange(Dh/4) / (Dh/2))`` and the angles
    ``2π·c / period`` of the two axes are concatenated (``Dh/2``) and tiled twice (``Dh``).
    The training-time coordinate jitter/rescale augmentations are not reproduced: the
    DINOv3 backbone is only ever run frozen, at inference.
    """

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head dim divisible by 4, got {head_dim} "
                             "(choose dim/heads as a multiple of 4)")
        self.head_dim = head_dim
        self.base = base

    def periods(self, device=None) -> torch.Tensor:
        """(Dh/4,) periods, recomputed on demand (DINOv3 stores them as ``rope_embed.periods``)."""
        n = self.head_dim // 4
        exponent = 2.0 * torch.arange(n, device=device, dtype=torch.float32) / (self.head_dim // 2)
        return self.base ** exponent

    def forward(self, h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos), each (h·w, Dh), for a grid of h × w patches in row-major order."""
        ch = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        cw = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0                                        # (hw, 2)
        periods = self.periods(device)
        angles = 2.0 * math.pi * coords[:, :, None] / periods[None, None, :]
        angles = angles.flatten(1, 2).tile(2)                              # (hw, Dh)
        return angles.sin(), angles.cos()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], n_prefix: int) -> torch.Tensor:
    """Rotate the last ``hw`` tokens of ``x`` (B, heads, n_prefix + hw, Dh); prefix tokens
    (class, registers) carry no position and are left unchanged."""
    sin, cos = rope
    prefix, patches = x[:, :, :n_prefix], x[:, :, n_prefix:]
    patches = patches * cos.to(x.dtype) + _rotate_half(patches) * sin.to(x.dtype)
    return torch.cat([prefix, patches], dim=2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                n_prefix: int = 0) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                            # (B, heads, N, Dh)
        if rope is not None:
            q, k = apply_rope(q, rope, n_prefix), apply_rope(k, rope, n_prefix)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block; ``layer_scale=None`` disables LayerScale (identity)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 layer_scale: Optional[float] = None, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor, rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                n_prefix: int = 0) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, n_prefix))
        return x + self.ls2(self.mlp(self.norm2(x)))


def init_weights(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) linears with zero bias, unit LayerNorms (ViT recipe)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
