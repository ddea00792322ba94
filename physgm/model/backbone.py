"""Image backbones → patch tokens, and the DINOv3 checkpoint loader.

``Backbone(cfg)`` wraps a ``ViT``: for ``cfg.backbone == "vit"`` a small one trained from
scratch (``cfg.dim`` wide, ``cfg.backbone_depth`` blocks, no registers/LayerScale); for
``"dinov3"`` the ViT-L/16 architecture, frozen, with weights from the local file
``cfg.backbone_checkpoint`` (official DINOv3 ``.pth``, e.g. the LVD-1689M ViT-L/16).

Official DINOv3 names → ours (everything else is identical):
``patch_embed.proj.*`` → ``patch_embed.*``; ``storage_tokens`` → ``register_tokens``;
``blocks.N.attn.qkv.bias_mask`` is folded into ``blocks.N.attn.qkv.bias`` (DINOv3 zeroes the
key bias through it); ``rope_embed.periods`` is checked against ours (it is recomputed);
``mask_token``, ``cls_norm.*`` and ``local_cls_norm.*`` (training / class-token outputs) are
not used, since only the patch tokens after ``norm`` feed PhysGM.

Written from the published description of DINOv3, without its code at hand; what may
differ: LayerNorm eps (1e-5 here), RoPE training-time augmentations (not needed frozen),
and any ViT-L variant with SwiGLU MLPs (``mlp.w1/w2/w3`` keys are reported as unexpected,
not silently dropped). The loader checks every key and shape, so a mismatch is an error,
never a half-loaded backbone.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from physgm.config import ModelConfig
from physgm.model.vit import ViT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RENAMES = ((re.compile(r"^patch_embed\.proj\."), "patch_embed."),
            (re.compile(r"^storage_tokens$"), "register_tokens"))
_UNUSED = re.compile(r"^(mask_token|cls_norm\..+|local_cls_norm\..+)$")
_WRAPPERS = ("teacher", "model", "state_dict", "module")
_PREFIXES = ("module.", "backbone.", "encoder.")


class CheckpointError(ValueError):
    """A weights file that does not fit the architecture; the message names the keys."""


def dinov3_vitl16() -> ViT:
    """The DINOv3 ViT-L/16 architecture (randomly initialised)."""
    return ViT(patch_size=16, dim=1024, depth=24, heads=16, mlp_ratio=4.0, n_registers=4,
               layer_scale=1e-5, rope_base=100.0, norm_eps=1e-5)


def _unwrap(obj) -> dict:
    """A raw torch.load result → flat {name: tensor} without trainer wrappers/prefixes."""
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError("checkpoint holds no state dict (expected a dict of tensors)")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def map_dinov3_state_dict(official: dict[str, torch.Tensor]
                          ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Official DINOv3 names → ``ViT`` names. Returns (mapped, extras) where extras holds
    the recomputed buffers worth checking (``rope_periods``)."""
    mapped: dict[str, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        if _UNUSED.match(key):
            continue
        if key == "rope_embed.periods":
            extras["rope_periods"] = value
            continue
        if key.endswith(".qkv.bias_mask"):
            masks[key[: -len("_mask")]] = value
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, new)
        mapped[new] = value
    for bias_key, mask in masks.items():
        if bias_key not in mapped:
            raise CheckpointError(f"{bias_key}_mask present without {bias_key}")
        mapped[bias_key] = mapped[bias_key] * torch.nan_to_num(mask.to(mapped[bias_key].dtype))
    return mapped, extras


def checkpoint_path(path: Optional[str | Path]) -> Path:
    """``path`` as a Path, or FileNotFoundError saying which config field to set."""
    if not path:
        raise FileNotFoundError("backbone dinov3 needs local weights: set "
                                "model.backbone_checkpoint to a DINOv3 ViT-L/16 .pth file "
                                "(no download happens here)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DINOv3 checkpoint not found: {path} (check "
                                "model.backbone_checkpoint)")
    return path


def load_dinov3(model: ViT, path: Optional[str | Path]) -> ViT:
    """Load official DINOv3 weights from the local file ``path`` into ``model`` (in place).

    Raises FileNotFoundError when the file is absent and ``CheckpointError`` naming the
    missing, unexpected or mis-shaped keys when it does not fit ``model``.
    """
    path = checkpoint_path(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    mapped, extras = map_dinov3_state_dict(_unwrap(raw))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    shapes = [f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(mapped) & set(expected)) if mapped[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {', '.join(missing[:10])}"
                        + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {', '.join(unexpected[:10])}"
                        + (" ..." if len(unexpected) > 10 else ""))
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes[:10]))
    if problems:
        raise CheckpointError(f"{path} does not fit the DINOv3 ViT-L/16 architecture "
                              "(is it a ViT-L/16 backbone checkpoint?): " + " | ".join(problems))
    periods = extras.get("rope_periods")
    if periods is not None and (periods.shape != model.rope.periods().shape or not torch.allclose(
            periods.float().cpu(), model.rope.periods(), rtol=1e-4)):
        raise CheckpointError(f"{path}: RoPE periods differ from base-100 RoPE of DINOv3 "
                              "ViT-L/16 (a different rope base or head dim)")
    model.load_state_dict(mapped, strict=True)
    return model


class Backbone(nn.Module):
    """Images (N, 3, H, W) in [0, 1] → patch tokens (N, h·w, out_dim), h = H / patch."""

    def __init__(self, cfg: ModelConfig, load_weights: bool = True):
        super().__init__()
        self.kind = cfg.backbone
        if cfg.backbone == "vit":
            self.vit = ViT(patch_size=cfg.patch_size, dim=cfg.dim, depth=cfg.backbone_depth,
                           heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, n_registers=0,
                           layer_scale=None)
        else:
            if load_weights:
                # Every weight comes from the file: skip the random init of 300 M parameters.
                path = checkpoint_path(cfg.backbone_checkpoint)
                with torch.device("meta"):
                    self.vit = dinov3_vitl16()
                self.vit.to_empty(device="cpu")
                load_dinov3(self.vit, path)
            else:
                self.vit = dinov3_vitl16()
            self.vit.requires_grad_(False)
            self.vit.eval()
        self.frozen = cfg.backbone == "dinov3"
        self.out_dim = self.vit.dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if self.frozen:
            self.vit.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        if self.frozen:
            with torch.no_grad():
                return self.vit(x)
        return self.vit(x)
