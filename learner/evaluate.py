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

from learner.eval_stats import bootstrap_mean, paired_bootstrap
from physgm.config import RunConfig
from physgm.materials import MATERIALS
from reward.rollout import simulate_and_score


def policy_choice(head, tokens: np.ndarray) -> tuple[int, np.ndarray]:
    """(material index, z (P,)) of a physics head's mode for one scene's tokens (G, D)."""
    with torch.no_grad():
        dist = head(torch.tensor(tokens).float()[None]).distribution()
        m, z = dist.mode()
    return int(m[0]), z[0].float().cpu().numpy()


def evaluate_scene(cfg: RunConfig, scene, heads: dict, tokens: np.ndarray, scorer) -> dict:
    """One held-out scene → {policy: {reward, mask_iou, track_error, material_ok, E_err}}."""
    scorer.prepare_reference(scene.scene_id, scene.reference)
    out = {"scene_id": scene.scene_id}
    w, h = scene.reference.shape[2], scene.reference.shape[1]
    for name, head in heads.items():
        m, z = policy_choice(head, tokens)
        cand, res = simulate_and_score(scene, scorer, m, z, w, h, cfg.render.backend)
        row = {"reward": float(res.reward), "mask_iou": float(res.mask_iou),
               "track_error": float(res.track_error),
               "material": MATERIALS[m].value, "E": cand.params.E, "status": cand.status}
        if scene.true is not None:
            row["material_ok"] = float(MATERIALS[m] == scene.true.material)
            row["E_err_log10"] = abs(math.log10(cand.params.E) - math.log10(scene.true.E))
        out[name] = row
    return out


# (figure key, column label, decimals, column width) of the comparison table, in order.
_COLUMNS = (("reward", "video reward ↑", 4, 16), ("mask_iou", "mask IoU ↑", 3, 12),
            ("track_error", "track err ↓", 4, 13), ("material_ok", "material acc ↑", 3, 16),
            ("E_err_log10", "log10 E err ↓", 3, 15))
FIGURES = tuple(key for key, *_ in _COLUMNS)


def summarize(rows: list[dict], names=("pretrained", "dpo")) -> dict:
    """Mean figures per policy, the win rate of the second over the first, and (under
    "delta") the paired difference second − first of each figure with its bootstrap 95 %
    interval over scenes ({"mean", "lo", "hi"}; see ``eval_stats``)."""
    a, b = names
    summary = {}
    present = [k for k in FIGURES if rows and k in rows[0][a]]
    for name in names:
        summary[name] = {k: float(np.mean([r[name][k] for r in rows])) for k in present}
    wins = [1.0 if r[b]["reward"] > r[a]["reward"] + 1e-9 else
            0.5 if abs(r[b]["reward"] - r[a]["reward"]) <= 1e-9 else 0.0 for r in rows]
    summary["win_rate"] = float(np.mean(wins)) if wins else float("nan")
    summary["n_scenes"] = len(rows)
    if rows:
        summary["delta"] = {k: paired_bootstrap([r[a][k] for r in rows], [r[b][k] for r in rows])
                            for k in present}
        summary["win_rate_ci"] = bootstrap_mean(wins)
    return summary


def format_table(summary: dict, names=("pretrained", "dpo")) -> str:
    """The paper-style comparison table (plain text)."""
    labels = {"pretrained": "w/o DPO", "dpo": "w/ DPO"}
    head = f"{'':<10}" + "".join(f"{label:>{width}}" for _, label, _, width in _COLUMNS)
    lines = [head, "-" * len(head)]
    for n in names:
        s = summary[n]
        lines.append(f"{labels.get(n, n):<10}" + "".join(
            f"{s.get(key, float('nan')):>{width}.{places}f}" for key, _, places, width in _COLUMNS))
    ci = summary.get("win_rate_ci")
    ci_text = f" (95% CI {ci['lo']:.0%}–{ci['hi']:.0%})" if ci else ""
    lines.append(f"win rate of w/ DPO over w/o DPO (video closer to GT): "
                 f"{summary['win_rate']:.1%}{ci_text} on {summary['n_scenes']} held-out scenes")
    delta = summary.get("delta")
    if delta:
        lines += ["", f"{'w/ − w/o DPO, paired over scenes':<34}{'change':>10}   95% CI"]
        for key, label, places, _ in _COLUMNS:
            if key in delta:
                d = delta[key]
                lines.append(f"{label:<34}{d['mean']:>+10.{places}f}   "
                             f"[{d['lo']:+.{places}f}, {d['hi']:+.{places}f}]")
        lines.append("(an interval that excludes 0 is a change the draw of scenes does not explain)")
    return "\n".join(lines)


def mlflow_metrics(summary: dict, prefix: str = "eval") -> dict:
    """``<prefix>/win_rate``, ``<prefix>/{video_reward,material_acc,E_mae_log10}/{pretrained,
    dpo}`` and ``<prefix>/delta/<figure>/{mean,lo,hi}`` (paired w/ − w/o DPO and its 95 %
    interval); ``prefix`` as in ``pretrain.evaluate.mlflow_metrics`` (eval, eval/fresh)."""
    out = {f"{prefix}/win_rate": summary["win_rate"]}
    for key, d in summary.get("delta", {}).items():
        out.update({f"{prefix}/delta/{key}/{part}": d[part] for part in ("mean", "lo", "hi")})
    for name in ("pretrained", "dpo"):
        s = summary[name]
        out[f"{prefix}/video_reward/{name}"] = s["reward"]
        if "material_ok" in s:
            out[f"{prefix}/material_acc/{name}"] = s["material_ok"]
            out[f"{prefix}/E_mae_log10/{name}"] = s["E_err_log10"]
    return out


def run_comparison(cfg: RunConfig, pretrained: str, dpo: str, n_scenes: int | None = None,
                   split: str = "test", parallel: bool = True,
                   on_progress: Callable[[int, int], None] | None = None
                   ) -> tuple[dict, list[dict]]:
    """Evaluate two checkpoints (w/o and w/ DPO) on held-out scenes → (summary, rows).

    Scenes are evaluated in parallel as Ray tasks when Ray is running (one CPU each);
    ``on_progress(done, total)`` after each scene."""
    from physgm.model import load_model
    from runtime.scenes import encode_scenes, scene_split

    ids = scene_split(cfg, split)[: n_scenes or cfg.dpo.eval_scenes]
    model_a, _ = load_model(pretrained, "cpu")
    model_b, _ = load_model(dpo, "cpu")
    tokens = encode_scenes(model_a, cfg, ids)  # the encoder is frozen: same tokens for both
    heads = {"pretrained": model_a.physics_head.eval(), "dpo": model_b.physics_head.eval()}
    progress = on_progress or (lambda done, total: None)
    if parallel and ray.is_initialized():
        heads_ref = ray.put(heads)
        refs = [_eval_remote.remote(cfg, sid, heads_ref, tokens[sid]) for sid in ids]
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=1)
            progress(len(refs) - len(pending), len(refs))
        rows = ray.get(refs)
    else:
        rows = []
        for sid in ids:
            rows.append(_eval_one(cfg, sid, heads, tokens[sid]))
            progress(len(rows), len(ids))
    return summarize(rows), rows


def _eval_one(cfg: RunConfig, scene_id: str, heads: dict, tokens: np.ndarray) -> dict:
    from reward.scorer import RewardScorer
    from runtime.scenes import load_rollout_scene

    torch.set_num_threads(1)
    return evaluate_scene(cfg, load_rollout_scene(cfg, scene_id, threads=1), heads, tokens,
                          RewardScorer(cfg.reward))


@ray.remote(num_cpus=1)
def _eval_remote(cfg: RunConfig, scene_id: str, heads: dict, tokens: np.ndarray) -> dict:
    return _eval_one(cfg, scene_id, heads, tokens)
