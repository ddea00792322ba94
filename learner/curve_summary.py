"""Figures of the DPO learning curve and of the per-material E bias (pure: no simulation,
no I/O).

Rows come from ``learner.evaluate.evaluate_scene`` with one head per snapshot, named
``head_name(step)``: per scene its TRUE material and, per head, the video reward against the
GT video, the material, and the signed log10 E bias (pred − true, in decades; on scenes whose
material the head got right: ``E_bias_log10_ok``). Every snapshot is compared with the
earliest one (step 0: the pretrained head) through ``eval_summary.summarize``, so each point
of the curve carries the paired interval of its change and its win rate over step 0.
"""
from __future__ import annotations

import numpy as np

from learner.eval_stats import bootstrap_mean
from learner.eval_summary import NAMES, summarize


def head_name(step: int) -> str:
    """Key of the snapshot after ``step`` learner steps in evaluation rows."""
    return f"step_{int(step):06d}"


def _interval(values) -> dict | None:
    """Mean and bootstrap 95 % interval of the finite values, with their count n."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return {**bootstrap_mean(x), "n": int(x.size)} if x.size else None


def bias_by_material(rows: list[dict], names=NAMES, key: str = "E_bias_log10_ok") -> dict:
    """{true material: {policy: {"mean", "lo", "hi", "n"} or None}}: the signed log10 E
    bias [decades] per policy over the scenes of that material where the policy's material
    is right (``key``), with a bootstrap 95 % interval over those scenes."""
    out = {}
    for mat in sorted({r.get("true_material") for r in rows} - {None}):
        sub = [r for r in rows if r.get("true_material") == mat]
        out[mat] = {n: _interval([r[n].get(key, np.nan) for r in sub]) for n in names}
    return out


def curve_figures(rows: list[dict], steps: list[int], tie_eps: float) -> list[dict]:
    """One point per snapshot step (sorted), each {"step", "n_scenes", "reward" (mean video
    reward), "reward_change" ({"mean", "lo", "hi"}: paired change from the first step),
    "win_rate" (over the first step, ties half), "material_acc", "E_err_log10",
    "E_bias_log10_ok" (overall mean on material-right scenes), "E_bias" ({material:
    {"mean", "lo", "hi", "n"} or None})}."""
    if not steps:
        raise ValueError("no snapshot steps to summarise")
    steps = sorted(int(s) for s in steps)
    base = head_name(steps[0])
    points = []
    for step in steps:
        name = head_name(step)
        s = summarize(rows, names=(base, name), tie_eps=tie_eps)
        fig = s[name]
        points.append({"step": step, "n_scenes": s["n_scenes"], "reward": fig["reward"],
                       "reward_change": s["delta"].get("reward"), "win_rate": s["win_rate"],
                       "material_acc": fig.get("material_ok"),
                       "E_err_log10": fig.get("E_err_log10"),
                       "E_bias_log10_ok": fig.get("E_bias_log10_ok"),
                       "E_bias": {m: b[name] for m, b in
                                  bias_by_material(rows, (name,)).items()}})
    return points


def curve_metrics(point: dict, prefix: str = "curve") -> dict:
    """MLflow metrics of one curve point (logged at step = the DPO step): ``<prefix>/
    video_reward``, ``…/reward_change``, ``…/win_rate``, ``…/material_acc``,
    ``…/E_err_log10``, ``…/E_bias_log10_ok`` and ``…/E_bias_log10_ok/<material>``."""
    out = {f"{prefix}/video_reward": point["reward"], f"{prefix}/win_rate": point["win_rate"],
           f"{prefix}/material_acc": point["material_acc"],
           f"{prefix}/E_err_log10": point["E_err_log10"],
           f"{prefix}/E_bias_log10_ok": point["E_bias_log10_ok"]}
    if point["reward_change"]:
        out[f"{prefix}/reward_change"] = point["reward_change"]["mean"]
    for mat, b in point["E_bias"].items():
        if b is not None:
            out[f"{prefix}/E_bias_log10_ok/{mat}"] = b["mean"]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
