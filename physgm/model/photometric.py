"""Photometric statistics of the object's pixels: a fixed (not learned) summary of how the
object looks, which the physics head may read as one more token (``model.photometric_token``).

The object is what is brighter than the background: a pixel is foreground when its largest
channel exceeds ``FOREGROUND`` (the quickstart's views are objects on black). Per view, over
the foreground pixels:

    0  coverage        fraction of the view's pixels that are foreground (× 10)
    1-3  mean R, G, B
    4-6  std R, G, B
    7  mean brightness (max channel)    8  its std
    9  mean saturation ((max − min) / max)    10  its std
    11 share of pixels within 10 % of the brightest (highlights, gloss)
    12 share of pixels under half the brightest (translucent rims, shadows)
    13 mean |vertical brightness step| between neighbouring foreground pixels (× 10: texture)

averaged over the views → (B, N_STATS). A from-scratch ViT of the quickstart's size learns
these slowly (docs/results.md, the quickstart's 96-scene validation store: a logistic
regression on nine such statistics, fitted to the annotator's labels, reaches 0.85
material accuracy; the network alone 0.57 after 500 steps, with this token and the head's
×10 learning rate 0.75); a pretrained backbone (DINOv3) should not need them. Pure tensor
math on ``images``' device and dtype.
"""
from __future__ import annotations

import torch

FOREGROUND = 0.05
N_STATS = 14


def photometric_stats(images: torch.Tensor) -> torch.Tensor:
    """images (B, V, 3, H, W) in [0, 1] → (B, N_STATS) statistics (module docstring); a view
    without foreground pixels gives zeros."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
    bright = images.amax(2)                                          # (B, V, H, W)
    fg = (bright > FOREGROUND).to(images.dtype)
    n = fg.sum((2, 3)).clamp(min=1.0)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * fg).sum((2, 3)) / n

    def std(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return (mean(x * x) - m * m).clamp(min=0.0).sqrt()

    rgb = [mean(images[:, :, c]) for c in range(3)]
    rgb_std = [std(images[:, :, c], m) for c, m in enumerate(rgb)]
    sat = (bright - images.amin(2)) / bright.clamp(min=1e-3)
    b_mean, s_mean = mean(bright), mean(sat)
    peak = (bright * fg).amax((2, 3), keepdim=True)
    step = (bright[:, :, 1:] - bright[:, :, :-1]).abs()
    pair = fg[:, :, 1:] * fg[:, :, :-1]
    texture = (step * pair).sum((2, 3)) / pair.sum((2, 3)).clamp(min=1.0)
    stats = torch.stack([fg.mean((2, 3)) * 10.0, *rgb, *rgb_std, b_mean, std(bright, b_mean),
                         s_mean, std(sat, s_mean), mean((bright > 0.9 * peak).to(fg.dtype)),
                         mean((bright < 0.5 * peak).to(fg.dtype)), texture * 10.0], dim=-1)
    return stats.mean(1)
