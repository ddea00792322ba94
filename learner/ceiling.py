"""The ceiling of what DPO can do to E: the reward-optimal constant E per true material.

For every held-out scene, the pretrained policy's mean parameters of the scene's TRUE
material (its μ for that material, whatever material it would name) are simulated with E
replaced by each value of a grid: ``n_grid`` log-spaced values over the material's true-E
range (``data.true_ranges``, else ``PARAM_RANGES``), all in one batch, and scored against
the GT video. Per material, the grid value whose mean reward over the material's scenes is
highest is the reward-optimal constant E*, and that mean reward the ceiling: what a head
that outputs one E per material, with the pretrained model's other parameters and the
right material, reaches at best. Beside a w/o-vs-w/ DPO comparison on the same scenes, the
fraction of the gap closed is (R_dpo − R_pre) / (R_ceiling − R_pre) per material, on the
scenes whose material the pretrained policy names right (NaN where it is already within
``MIN_GAP`` of the ceiling). The ceiling is the best *constant*: a head that reads the
within-material cue of the images can pass it.

Per scene, the grid value with the highest reward is the E the video prefers *at the
model's other parameters*; its signed log10 offset from the scene's true E, averaged per
material (``E_best_bias``), says whether the reward can remove the labels' E bias there:
of the labels' sign, the video (with the other parameters as the model predicts them: ν,
yield stress, snow's thresholds) prefers the biased E, and DPO on video fidelity has no
reason to remove that bias. Near 0 is weaker evidence: the grid spans the true range only,
and on a scene whose reward is flat over E the argmax lands anywhere on it, which also
averages to about 0; read it beside ``reward_by_E``.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import numpy as np
import torch

from physgm.config import RunConfig
from physgm.materials import (MATERIALS, PARAM_NAMES, PARAM_RANGES, Material, denormalize,
                              normalize_value)
from reward.rollout import simulate_and_score

E_SLOT = PARAM_NAMES.index("E")


def e_grid(cfg: RunConfig, material: Material | str, n: int) -> np.ndarray:
    """(n,) E values [Pa], log-spaced over ``material``'s true-E range."""
    if n < 2:
        raise ValueError(f"the ceiling's E grid needs at least 2 values, got {n}")
    material = Material(material)
    lo, hi = cfg.data.true_ranges(material).get("E", PARAM_RANGES[material]["E"])
    return np.logspace(math.log10(lo), math.log10(hi), n)


def z_with_E(z: np.ndarray, E: np.ndarray) -> np.ndarray:
    """z (P,) normalised parameters → (len(E), P), each row z with its E slot set to E [Pa]."""
    out = np.repeat(np.asarray(z, np.float32)[None], len(E), 0)
    out[:, E_SLOT] = [normalize_value("E", float(e)) for e in E]
    return out


def rewards_at_E(cfg: RunConfig, scene, head, tokens: np.ndarray, scorer,
                 E_of: Callable[[float], np.ndarray], what: str
                 ) -> tuple[float, np.ndarray, list[float]]:
    """The pretrained μ of ``scene``'s TRUE material (whatever material the head would name)
    simulated with E replaced by each value of ``E_of(predicted E [Pa])`` (n,) [Pa], all in
    one batch, and scored against the GT video → (predicted E [Pa], the E values (n,) [Pa],
    rewards (n,)). ``what`` names the caller in the error for a scene without true physics."""
    if scene.true is None:
        raise ValueError(f"scene {scene.scene_id} has no true physics: {what} needs them")
    m = MATERIALS.index(scene.true.material)
    with torch.no_grad():
        mu = head(torch.tensor(tokens).float()[None]).distribution().mu[0, m]
    mu = mu.float().cpu().numpy()
    pred = denormalize(scene.true.material, mu).E
    grid = np.asarray(E_of(pred), np.float64)
    scorer.prepare_reference(scene.scene_id, scene.reference)
    w, h = scene.reference.shape[2], scene.reference.shape[1]
    scored, _ = simulate_and_score(scene, scorer, [m] * len(grid), z_with_E(mu, grid), w, h,
                                   cfg.render.backend)
    return pred, grid, [float(res.reward) for _, res in scored]


def ceiling_scene(cfg: RunConfig, scene, head, tokens: np.ndarray, scorer, n_grid: int = 7
                  ) -> dict:
    """One held-out scene (with TRUE physics) → {"scene_id", "true_material", "true_E" [Pa],
    "E" (n,) [Pa], "reward" (n,)}: the pretrained μ of the true material at each grid E."""
    _, grid, rewards = rewards_at_E(cfg, scene, head, tokens, scorer,
                                    lambda _pred: e_grid(cfg, scene.true.material, n_grid),
                                    "the ceiling")
    return {"scene_id": scene.scene_id, "true_material": scene.true.material.value,
            "true_E": float(scene.true.E), "E": grid.tolist(), "reward": rewards}


MIN_GAP = 0.005  # reward units: a smaller gap to the ceiling is within a few scenes' noise


def summarize_ceiling(rows: list[dict], comparison_rows: Optional[list[dict]] = None,
                      min_gap: float = MIN_GAP) -> dict:
    """Per material {n, E_star [Pa], ceiling (mean reward at E*), reward_by_E [(E, mean)],
    E_best_bias [decades]: mean of log10(argmax-reward grid E / true E) over the scenes (where
    rows carry ``true_E``)} and, with the w/o-vs-w/ DPO rows of the same scenes, on the n_ok
    scenes whose material the pretrained policy names right (so both policies simulate the
    material the ceiling does): ceiling_ok (mean reward at E*), pretrained, dpo (mean
    rewards) and gap_closed (NaN where the pretrained policy is within ``min_gap`` of the
    ceiling or above it)."""
    by_scene = {r["scene_id"]: r for r in comparison_rows or []}
    out = {}
    for mat in sorted({r["true_material"] for r in rows}):
        mine = [r for r in rows if r["true_material"] == mat]
        rewards = np.array([r["reward"] for r in mine])               # (n_scenes, n_grid)
        mean = rewards.mean(0)
        best = int(np.argmax(mean))
        entry = {"n": len(mine), "E_star": mine[0]["E"][best], "ceiling": float(mean[best]),
                 "reward_by_E": [[e, float(v)] for e, v in zip(mine[0]["E"], mean)]}
        if all("true_E" in r for r in mine):
            preferred = np.array(mine[0]["E"])[rewards.argmax(1)]           # (n_scenes,) [Pa]
            true_E = np.array([r["true_E"] for r in mine])
            entry["E_best_bias"] = float(np.mean(np.log10(preferred / true_E)))
        ok = [i for i, r in enumerate(mine) if r["scene_id"] in by_scene
              and by_scene[r["scene_id"]]["pretrained"].get("material_ok") == 1.0]
        if ok:
            paired = [by_scene[mine[i]["scene_id"]] for i in ok]
            pre = float(np.mean([p["pretrained"]["reward"] for p in paired]))
            dpo = float(np.mean([p["dpo"]["reward"] for p in paired]))
            ceil_ok = float(rewards[ok, best].mean())
            gap = ceil_ok - pre
            entry.update(n_ok=len(ok), ceiling_ok=ceil_ok, pretrained=pre, dpo=dpo,
                         gap_closed=(dpo - pre) / gap if gap > min_gap else float("nan"))
        out[mat] = entry
    return out


def format_ceiling(summary: dict) -> str:
    """The per-material ceiling table."""
    lines = [f"{'true material':14s}{'n':>4s}{'E* [Pa]':>11s}{'ceiling':>10s}{'n ok':>6s}"
             f"{'ceiling':>10s}{'w/o DPO':>10s}{'w/ DPO':>10s}{'gap closed':>12s}"
             f"{'best-E bias':>13s}"]
    for mat, e in summary.items():
        cols = [f"{e[k]:10.4f}" if k in e else f"{'—':>10s}"
                for k in ("ceiling_ok", "pretrained", "dpo")]
        gap = f"{e['gap_closed']:11.0%}" if "gap_closed" in e and np.isfinite(e["gap_closed"]) \
            else f"{'—':>11s}"
        best = f"{e['E_best_bias']:+13.2f}" if "E_best_bias" in e else f"{'—':>13s}"
        lines.append(f"{mat:14s}{e['n']:4d}{e['E_star']:11.3g}{e['ceiling']:10.4f}"
                     f"{e.get('n_ok', 0):6d}{''.join(cols)} {gap}{best}")
    lines.append("(E*: the reward-optimal constant E per true material, with the pretrained "
                 "model's other parameters and the right material, over all n scenes; then on "
                 "the n ok scenes whose material the pretrained model names right: the reward "
                 "at E*, w/o and w/ DPO; gap closed = (w/ − w/o) / (ceiling − w/o); best-E "
                 "bias: mean log10(E the video prefers for the scene / its true E) at the "
                 "model's other parameters [decades]: of the labels' sign, the reward endorses "
                 "their bias)")
    return "\n".join(lines)


def map_held_out(cfg: RunConfig, pretrained: str, fn: Callable, n_scenes: int | None = None,
                 split: str = "test", parallel: bool = True,
                 on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """``fn(cfg, scene, head, tokens, scorer)`` on the first ``n_scenes`` scenes of ``split``
    with the pretrained physics head and its frozen encoder's tokens, in parallel as Ray
    tasks when Ray is running (``learner.evaluate.map_scenes``)."""
    from learner.evaluate import map_scenes
    from physgm.model import load_model
    from runtime.scenes import encode_scenes, scene_split

    ids = scene_split(cfg, split)
    ids = ids[:n_scenes] if n_scenes else ids
    model, _ = load_model(pretrained, "cpu")
    tokens = encode_scenes(model, cfg, ids)
    return map_scenes(cfg, ids, fn, model.physics_head.eval(), tokens, parallel, on_progress)


def run_ceiling(cfg: RunConfig, pretrained: str, n_grid: int = 7, n_scenes: int | None = None,
                split: str = "test", parallel: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """The grid of every held-out scene (``ceiling_scene``) → rows (``map_held_out``)."""
    return map_held_out(cfg, pretrained, partial(ceiling_scene, n_grid=n_grid), n_scenes,
                        split, parallel, on_progress)
