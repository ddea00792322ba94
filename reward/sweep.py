"""Reward sensitivity: how much the video reward moves when one physical parameter moves.

A scene is re-simulated with its TRUE parameters, one of them shifted by each offset, and
each video is scored against the scene's GT video. The reward is 0 at offset 0 (the GT
video is reproduced) and falls off as fast as the video can tell the parameter apart:
a flat row means DPO gets no signal about that parameter on that scene (the E of a stiff
metal object, for example, where the yield stress sets what the video shows).

Offsets are in the parameter's transformed unit: decades for E, density and yield stress
(``physgm.materials.LOG_PARAMS``), the SI unit otherwise (degrees for the friction angle).
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from physgm.materials import LOG_PARAMS, MATERIALS, NORM, PARAM_NAMES, normalize
from runtime.scenes import RolloutScene

from .rollout import simulate_and_score


def shifted_z(scene: RolloutScene, param: str, offset: float) -> tuple[int, np.ndarray]:
    """(material index, z (P,)) of the scene's true parameters with ``param`` shifted by
    ``offset`` (transformed units; clipped into the material's range on simulation)."""
    if scene.true is None:
        raise ValueError(f"scene {scene.scene_id!r} has no true parameters (a real capture): "
                         "the sweep needs a synthetic scene")
    if param not in PARAM_NAMES:
        raise ValueError(f"unknown parameter {param!r}: use one of {', '.join(PARAM_NAMES)}")
    z, used = normalize(scene.true)
    i = PARAM_NAMES.index(param)
    if not used[i]:
        raise ValueError(f"{scene.true.material.value} has no parameter {param!r}")
    z = z.copy()
    z[i] += offset / NORM[param][1]
    return MATERIALS.index(scene.true.material), z


def sweep(scene: RolloutScene, scorer, param: str, offsets: list[float], width: int,
          height: int, backend: str = "auto",
          on_row: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """One row per offset: ``{offset, value, reward, mask_iou, track_error, status, sim_s}``
(all offsets simulated in one batch; ``sim_s`` is each row's share of it).

    ``value`` is the simulated parameter in SI units (after clipping into the range);
    ``scorer`` a ``reward.scorer.RewardScorer`` (its reference for the scene is prepared
    here)."""
    scorer.prepare_reference(scene.scene_id, scene.reference)
    shifted = [shifted_z(scene, param, float(off)) for off in offsets]
    t0 = time.perf_counter()
    scored, _ = simulate_and_score(scene, scorer, [m for m, _ in shifted],
                                   np.stack([z for _, z in shifted]), width, height, backend)
    sim_s = round((time.perf_counter() - t0) / max(len(offsets), 1), 3)
    rows = []
    for off, (cand, res) in zip(offsets, scored):
        row = {"offset": float(off), "value": float(getattr(cand.params, param)),
               "reward": float(res.reward), "mask_iou": float(res.mask_iou),
               "track_error": float(res.track_error), "status": cand.status, "sim_s": sim_s}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def sensitivity(rows: list[dict]) -> float:
    """Mean reward drop per unit offset over the non-zero offsets (≥ 0; ~0 = the video cannot
    see this parameter here). Offsets whose clipped value equals the true one are skipped."""
    base = next((r["reward"] for r in rows if r["offset"] == 0.0), 0.0)
    true_value = next((r["value"] for r in rows if r["offset"] == 0.0), None)
    slopes = [(base - r["reward"]) / abs(r["offset"]) for r in rows
              if r["offset"] != 0.0 and r["value"] != true_value]
    return float(np.mean(slopes)) if slopes else 0.0


def unit(param: str) -> str:
    """The unit of a sweep offset of ``param``."""
    return "decades" if param in LOG_PARAMS else {"friction_angle": "deg"}.get(param, "")


def sweep_materials(cfg, scene_ids: list[str], param: str, offsets: list[float],
                    per_material: int, on_scene: Optional[Callable[[str, str], None]] = None
                    ) -> dict:
    """The sweep of ``param`` on up to ``per_material`` scenes of each TRUE material among
    ``scene_ids`` (in order; scenes whose material has no ``param`` are skipped).

    Returns {material: {"scenes": [ids], "reward": {offset: mean reward}, "reward_min":
    {offset: min}, "sensitivity": mean of ``sensitivity`` per scene, "visible": fraction
    of scenes where the reward at ±the largest offset falls below −0.01}}."""
    from runtime.scenes import load_rollout_scene

    from .scorer import RewardScorer

    scorer = RewardScorer(cfg.reward)
    rows_by: dict[str, list[list[dict]]] = {}
    ids: dict[str, list[str]] = {}
    for sid in scene_ids:
        scene = load_rollout_scene(cfg, sid)
        if scene.true is None:
            continue
        mat = scene.true.material.value
        if len(ids.setdefault(mat, [])) >= per_material or param not in scene.true.values():
            continue
        if on_scene is not None:
            on_scene(sid, mat)
        w, h = scene.reference.shape[2], scene.reference.shape[1]
        rows_by.setdefault(mat, []).append(sweep(scene, scorer, param, offsets, w, h,
                                                 cfg.render.backend))
        ids[mat].append(sid)
    edge = max(abs(o) for o in offsets) if offsets else 0.0
    out = {}
    for mat, runs in sorted(rows_by.items()):
        rewards = np.array([[r["reward"] for r in rows] for rows in runs])  # (S, offsets)
        visible = [min(r["reward"] for r in rows if abs(r["offset"]) == edge) < -0.01
                   for rows in runs]
        out[mat] = {"scenes": ids[mat],
                    "reward": {f"{o:+g}": round(float(v), 4)
                               for o, v in zip(offsets, rewards.mean(0))},
                    "reward_min": {f"{o:+g}": round(float(v), 4)
                                   for o, v in zip(offsets, rewards.min(0))},
                    "sensitivity": round(float(np.mean([sensitivity(r) for r in runs])), 4),
                    "visible": round(float(np.mean(visible)), 3)}
    return out
