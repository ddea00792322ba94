"""Paired confidence intervals for the w/o- vs w/-DPO comparison (pure numpy, no I/O).

Held-out figures move by a few hundredths between the two policies while single scenes
differ by tenths (log10 E of a scene is not visible in its images, only its material's
typical value is), so a table of means on a dozen scenes cannot tell a gain from the draw of
scenes. Every difference is therefore reported with a percentile-bootstrap 95 % interval
over scenes, resampling the *pairs* (same scene, both policies), with a fixed seed so the
printed interval is reproducible.
"""
from __future__ import annotations

import numpy as np


def paired_bootstrap(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of b − a over scenes and its bootstrap interval.

    a, b: (N,) per-scene values of the same figure under two policies (N ≥ 1).
    Returns {"mean", "lo", "hi"} (units of the figure); lo = hi = mean when N == 1.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length 1-D arrays, got shapes {a.shape} and {b.shape}")
    return bootstrap_mean(b - a, n_boot, level, seed)


def bootstrap_mean(x, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of x (N,) and its percentile-bootstrap interval: {"mean", "lo", "hi"}."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"need a non-empty 1-D array, got shape {x.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "lo": mean, "hi": mean}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return {"mean": mean, "lo": float(lo), "hi": float(hi)}


def loss_trend(losses, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Is a per-step loss curve falling? losses (N,), one value per learner step, N ≥ 3.

    Returns {"first": ..., "last": ..., "change": ...}, each {"mean", "lo", "hi"}: the mean
    loss of the first and last third of the steps and last − first (independent bootstrap
    of the two thirds); an interval of "change" below 0 is a fall the step-to-step noise
    does not explain. Per-step DPO losses on a few fresh pairs scatter by ±0.1 around a
    trend of a few hundredths, so a first-vs-last-value comparison says nothing."""
    x = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.size < 3:
        raise ValueError(f"need ≥ 3 per-step losses, got shape {x.shape}")
    third = x.size // 3
    first, last = x[:third], x[-third:]
    rng = np.random.default_rng(seed)
    diff = (last[rng.integers(0, last.size, size=(n_boot, last.size))].mean(1)
            - first[rng.integers(0, first.size, size=(n_boot, first.size))].mean(1))
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(diff, [tail, 100.0 - tail])
    return {"first": bootstrap_mean(first, n_boot, level, seed),
            "last": bootstrap_mean(last, n_boot, level, seed + 1),
            "change": {"mean": float(last.mean() - first.mean()), "lo": float(lo), "hi": float(hi)}}


def format_loss_trend(trend: dict) -> str:
    """One line for a ``loss_trend`` result (what `physgm dpo` and `physgm run` print)."""
    first, last, change = trend["first"], trend["last"], trend["change"]
    return (f"dpo/loss first third {first['mean']:.3f} → last third {last['mean']:.3f}, "
            f"change {change['mean']:+.3f} [{change['lo']:+.3f}, {change['hi']:+.3f}] "
            "(95 % CI; log 2 = 0.693)")
