"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

With s the number of optimizer steps already taken, W = ``warmup_steps``, S = ``total_steps``
and r = ``min_ratio``, the multiplier of the base learning rate is

    f(s) = (s + 1) / W                                   for s < W
    f(s) = r + (1 − r) · ½ (1 + cos(π · min(1, (s − W) / max(1, S − W))))   otherwise

so the first update already moves (f(0) = 1/W, not 0), f(W) = 1 and f(S) = r.
"""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """f(step) of the module docstring (a multiplier of the base learning rate)."""
    if step < 0:
        raise ValueError(f"step must be ≥ 0, got {step}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must lie in [0, 1], got {min_ratio}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable ``lr_lambda`` for ``torch.optim.lr_scheduler.LambdaLR`` (its attributes go
    into the scheduler's state_dict, so a resumed run keeps its schedule)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.warmup_steps, self.total_steps, self.min_ratio)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following f(s); call ``.step()`` once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             WarmupCosine(warmup_steps, total_steps, min_ratio))
