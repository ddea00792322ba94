"""Evaluation of DPO: the pretrained policy (w/o DPO) against the DPO policy (w/ DPO) on
held-out scenes, as in the paper's comparison table.

Each policy's most probable material at its mean parameters is simulated on the scene's
object and rendered from the GT video camera; per policy we report the video reward
against the GT video (and its mask IoU / track error), material accuracy and log10 E
error against the TRUE parameters (never the annotator's labels), and the win rate: the
fraction of scenes where the w/ DPO video is closer to the GT than the w/o DPO video (ties
count half) — the analogue of the paper's user preference rate.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import ray
import torch

from learner.eval_summary import summarize
from physgm.config import RunConfig
from physgm.materials import MATERIALS
from reward.rollout import simulate_and_score


def policy_choice(head, tokens: np.ndarray) -> tuple[int, np.ndarray]:
    """(material index, z (P,)) of a physics head's mode for one scene's tokens (G, D)."""
    with torch.no_grad():
        dist = head(torch.tensor(tokens).float()[None]).distribution()
        m, z = dist.mode()
    return int(m[0]), z[0].float().cpu().numpy()


def particle_distance(positions: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance [m] of simulated particles to the GT particles over the video:
    positions (F', N, 3) and reference (F, N, 3) [m]; a simulation that ended early (blew up)
    holds its last frame, so it pays for the frames it lost."""
    if positions is None or len(positions) == 0:
        return float("nan")
    f = reference.shape[0]
    if positions.shape[0] < f:
        positions = np.concatenate([positions, np.repeat(positions[-1:], f - positions.shape[0],
                                                         0)])
    return float(np.linalg.norm(positions[:f] - reference, axis=-1).mean())


def evaluate_scene(cfg: RunConfig, scene, heads: dict, tokens: np.ndarray, scorer) -> dict:
    """One held-out scene → {"scene_id", "true_material", policy: {reward, mask_iou,
    track_error, particle_dist, material, E, status, material_ok, E_err_log10, E_bias_log10
    and, on scenes whose material it got right, E_err_log10_ok, E_bias_log10_ok}}; the physics
    figures against the TRUE parameters (never the labels)."""
    scorer.prepare_reference(scene.scene_id, scene.reference)
    out = {"scene_id": scene.scene_id}
    if scene.true is not None:
        out["true_material"] = scene.true.material.value
    w, h = scene.reference.shape[2], scene.reference.shape[1]
    choices = [policy_choice(head, tokens) for head in heads.values()]
    # both policies in one batch, with the GT physics beside them (for the particle distance)
    # unless the store kept the GT simulation's trajectory (a third of the work spared)
    resimulate = scene.true is not None and scene.trajectory is None
    scored, gt = simulate_and_score(scene, scorer, [m for m, _ in choices],
                                    np.stack([z for _, z in choices]), w, h,
                                    cfg.render.backend, keep_positions=scene.true is not None,
                                    reference=scene.true if resimulate else None)
    gt_positions = gt.positions if resimulate else scene.trajectory
    for name, (m, _), (cand, res) in zip(heads, choices, scored):
        row = {"reward": float(res.reward), "mask_iou": float(res.mask_iou),
               "track_error": float(res.track_error),
               "material": MATERIALS[m].value, "E": cand.params.E, "status": cand.status}
        if scene.true is not None:
            ok = MATERIALS[m] == scene.true.material
            bias = math.log10(cand.params.E) - math.log10(scene.true.E)
            row.update(material_ok=float(ok), E_err_log10=abs(bias), E_bias_log10=bias,
                       E_err_log10_ok=abs(bias) if ok else float("nan"),
                       E_bias_log10_ok=bias if ok else float("nan"),
                       particle_dist=particle_distance(cand.positions, gt_positions))
        out[name] = row
    return out


def run_comparison(cfg: RunConfig, pretrained: str, dpo: str, n_scenes: int | None = None,
                   split: str = "test", parallel: bool = True,
                   on_progress: Callable[[int, int], None] | None = None,
                   tie_eps: float | None = None) -> tuple[dict, list[dict]]:
    """Evaluate two checkpoints (w/o and w/ DPO) on held-out scenes → (summary, rows).

    Scenes are evaluated in parallel as Ray tasks when Ray is running (``map_scenes``);
    ``on_progress(done, total)`` after each scene."""
    from physgm.model import load_model
    from runtime.scenes import encode_scenes, scene_split

    ids = scene_split(cfg, split)
    ids = ids[:n_scenes] if n_scenes else ids
    model_a, _ = load_model(pretrained, "cpu")
    model_b, _ = load_model(dpo, "cpu")
    tokens = encode_scenes(model_a, cfg, ids)  # the encoder is frozen: same tokens for both
    heads = {"pretrained": model_a.physics_head.eval(), "dpo": model_b.physics_head.eval()}
    rows = map_scenes(cfg, ids, evaluate_scene, heads, tokens, parallel, on_progress)
    return summarize(rows, tie_eps=cfg.eval.tie_eps if tie_eps is None else tie_eps), rows


def map_scenes(cfg: RunConfig, ids: list[str], fn: Callable, shared, per_scene: dict,
               parallel: bool = True,
               on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """[fn(cfg, scene, shared, per_scene[id], scorer) for id in ids], in the order of ids:
    each scene loaded from ``cfg``'s store (``runtime.scenes.load_rollout_scene``) with a
    fresh ``RewardScorer``; as Ray tasks (one CPU each, ``shared`` put in the object store
    once) when ``parallel`` and Ray is running, else in this process; ``on_progress(done,
    total)`` after each scene. ``fn`` is a module-level function (the tasks pickle it)."""
    progress = on_progress or (lambda done, total: None)
    if parallel and ray.is_initialized():
        shared_ref = ray.put(shared)
        refs = [_scene_task_remote.remote(fn, cfg, sid, shared_ref, per_scene[sid])
                for sid in ids]
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=1)
            progress(len(refs) - len(pending), len(refs))
        return ray.get(refs)
    rows = []
    for sid in ids:
        rows.append(_scene_task(fn, cfg, sid, shared, per_scene[sid]))
        progress(len(rows), len(ids))
    return rows


def _scene_task(fn: Callable, cfg: RunConfig, scene_id: str, shared, item) -> dict:
    from reward.scorer import RewardScorer
    from runtime.scenes import load_rollout_scene

    torch.set_num_threads(1)
    return fn(cfg, load_rollout_scene(cfg, scene_id, threads=1), shared, item,
              RewardScorer(cfg.reward))


@ray.remote(num_cpus=1)
def _scene_task_remote(fn: Callable, cfg: RunConfig, scene_id: str, shared, item) -> dict:
    return _scene_task(fn, cfg, scene_id, shared, item)
