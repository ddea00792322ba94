"""What the video prefers for E around the model's prediction, per true material.

For every held-out scene, the pretrained policy's mean parameters of the scene's TRUE
material (its μ for that material, whatever material it would name) are simulated with E
moved from the policy's predicted E by each of ``shifts`` decades (log10), all in one batch,
and scored against the GT video. Per material, the mean reward at each shift says which way
the video pulls E *with E alone moved and the other parameters as the model predicts them*:
a reward rising toward negative shifts on a material whose predicted E is too high (the
labels' bias) is a video that asks DPO to remove that bias; a flat curve one that asks
nothing. Unlike ``learner.ceiling`` (a grid over the true range, the best *constant* E), the
grid here moves with each scene's prediction, so it reads the direction DPO's E-only steps
would take from where the model stands.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import numpy as np

from physgm.config import RunConfig

from .ceiling import map_held_out, rewards_at_E

DEFAULT_SHIFTS = (-0.45, -0.3, -0.15, 0.0, 0.15, 0.3)


def parse_shifts(text: str) -> tuple[float, ...]:
    """"-0.3,0,0.3" → (-0.3, 0.0, 0.3) decades; ValueError naming the option when malformed."""
    try:
        shifts = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--e-shifts takes decades separated by commas, e.g. "
                         f"'-0.3,0,0.3'; got {text!r}") from None
    if len(shifts) < 2 or not all(math.isfinite(s) and abs(s) <= 3 for s in shifts):
        raise ValueError(f"--e-shifts needs ≥ 2 finite shifts within ±3 decades, got {text!r}")
    return shifts


def shift_scene(cfg: RunConfig, scene, head, tokens: np.ndarray, scorer,
                shifts: Sequence[float] = DEFAULT_SHIFTS) -> dict:
    """One held-out scene → {"scene_id", "true_material", "pred_bias" (log10 predicted /
    true E of the true material's μ [decades]), "shifts" (n,) [decades], "reward" (n,)}."""
    factors = 10.0 ** np.asarray(shifts, np.float64)
    pred, _, rewards = rewards_at_E(cfg, scene, head, tokens, scorer,
                                    lambda pred_E: pred_E * factors, "the E shifts")
    return {"scene_id": scene.scene_id, "true_material": scene.true.material.value,
            "pred_bias": math.log10(pred / scene.true.E), "shifts": [float(s) for s in shifts],
            "reward": rewards}


def summarize_shifts(rows: list[dict]) -> dict:
    """Per true material {n, pred_bias (mean [decades]), reward_by_shift [(shift, mean
    reward)], best_shift (the shift of the highest mean reward), implied_bias (pred_bias +
    best_shift: the mean bias left if E moved to where the video prefers it)}."""
    out = {}
    for mat in sorted({r["true_material"] for r in rows}):
        mine = [r for r in rows if r["true_material"] == mat]
        shifts = mine[0]["shifts"]
        mean = np.array([r["reward"] for r in mine]).mean(0)                  # (n_shifts,)
        best = float(shifts[int(np.argmax(mean))])
        bias = float(np.mean([r["pred_bias"] for r in mine]))
        out[mat] = {"n": len(mine), "pred_bias": bias,
                    "reward_by_shift": [[s, float(v)] for s, v in zip(shifts, mean)],
                    "best_shift": best, "implied_bias": bias + best}
    return out


def format_shifts(summary: dict) -> str:
    """The per-material table: mean reward at each shift, the best one marked with *."""
    if not summary:
        return "(no scenes)"
    shifts = next(iter(summary.values()))["reward_by_shift"]
    head = "".join(f"{s:>+9.2f}" for s, _ in shifts)
    lines = [f"{'true material':14s}{'n':>4s}{'pred bias':>11s}{head}{'best':>8s}{'left':>8s}"]
    for mat, e in summary.items():
        cells = "".join(f"{v:>8.4f}{'*' if s == e['best_shift'] else ' '}"
                        for s, v in e["reward_by_shift"])
        lines.append(f"{mat:14s}{e['n']:4d}{e['pred_bias']:+11.2f}{cells}"
                     f"{e['best_shift']:+8.2f}{e['implied_bias']:+8.2f}")
    lines.append("(mean video reward with E moved from each scene's predicted E by the shift "
                 "[decades], the other parameters the pretrained model's mean of the TRUE "
                 "material; pred bias: mean log10 predicted / true E; left: pred bias + the best "
                 "shift, the bias if E moved where the video prefers it)")
    return "\n".join(lines)


def run_shifts(cfg: RunConfig, pretrained: str, shifts: Sequence[float] = DEFAULT_SHIFTS,
               n_scenes: int | None = None, split: str = "test", parallel: bool = True,
               on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """``shift_scene`` on every held-out scene → rows (``learner.ceiling.map_held_out``)."""
    return map_held_out(cfg, pretrained, partial(shift_scene, shifts=tuple(shifts)), n_scenes,
                        split, parallel, on_progress)
