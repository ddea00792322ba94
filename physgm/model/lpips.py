"""LPIPS-VGG perceptual distance (Zhang et al., CVPR 2018), from local weight files only.

d(x, y) = Σ_l mean_{h,w} ‖ w_l ⊙ (f̂_l(x) − f̂_l(y)) ‖², with f̂_l the channel-normalised
VGG16 activations at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 and w_l the learned
per-channel weights. Two files are needed (nothing is downloaded): the torchvision VGG16
weights (``features.*`` keys, e.g. ``vgg16-397923af.pth``) and the lpips package's linear
layers (``vgg.pth``, keys ``lin{0..4}.model.1.weight`` of shape (1, C, 1, 1)).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from physgm.model.backbone import CheckpointError

_SLICES = (4, 9, 16, 23, 30)          # torchvision vgg16.features boundaries after each ReLU
_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` (same layer indices, so the same state-dict
    keys), built without the 100 M-parameter classifier."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
    return nn.Sequential(*layers)


def _load(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS {what} weights not found: {path} (set "
                                f"model.lpips_checkpoint / model.lpips_vgg_checkpoint, or leave "
                                "model.lpips_checkpoint unset to train without LPIPS)")
    return torch.load(path, map_location="cpu", weights_only=True)


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG; ``forward(x, y)`` with x, y (N, 3, H, W) in [0, 1] → (N,)."""

    def __init__(self):
        super().__init__()
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, lin_path: str | Path, vgg_path: str | Path) -> "LPIPS":
        """Build from the lpips ``vgg.pth`` (linear layers) and torchvision VGG16 weights."""
        model = cls()
        lin = _load(lin_path, "linear-layer")
        vgg = _load(vgg_path, "VGG16")
        lin_sd = {f"{i}.weight": lin.get(f"lin{i}.model.1.weight") for i in range(5)}
        missing = [f"lin{i}.model.1.weight" for i in range(5) if lin_sd[f"{i}.weight"] is None]
        feat_sd = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")
                   and int(k.split(".")[1]) < _SLICES[-1]}
        expected = model.features.state_dict()
        missing += [f"features.{k}" for k in expected if k not in feat_sd]
        if missing:
            raise CheckpointError(f"LPIPS weights incomplete, missing: {', '.join(missing[:10])} "
                                  f"(files: {lin_path}, {vgg_path})")
        bad = [f"{k}: {tuple(v.shape)}" for k, v in lin_sd.items()
               if v.shape != model.lins[int(k[0])].weight.shape]
        bad += [f"features.{k}: {tuple(feat_sd[k].shape)}" for k, v in expected.items()
                if feat_sd[k].shape != v.shape]
        if bad:
            raise CheckpointError("LPIPS weights have the wrong shapes: " + "; ".join(bad[:10]))
        model.lins.load_state_dict(lin_sd)
        model.features.load_state_dict({k: feat_sd[k] for k in expected})
        return model

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # frozen metric network, always in eval mode

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2.0 * x - 1.0) - self.shift) / self.scale
        out, start = [], 0
        for end in _SLICES:
            x = self.features[start:end](x)
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            start = end
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self._feats(x), self._feats(y)
        return sum(lin((a - b) ** 2).mean(dim=(1, 2, 3)) for lin, a, b in zip(self.lins, fx, fy))


def lpips_from_config(cfg) -> "LPIPS | None":
    """``LPIPS`` from ``cfg.lpips_checkpoint`` + ``cfg.lpips_vgg_checkpoint`` (a
    ``ModelConfig``), or None when no LPIPS checkpoint is configured."""
    if not cfg.lpips_checkpoint:
        return None
    return LPIPS.from_files(cfg.lpips_checkpoint, cfg.lpips_vgg_checkpoint)
