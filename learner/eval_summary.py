"""The w/o- vs w/-DPO comparison as figures (pure: no simulation, no I/O).

Rows come from ``learner.evaluate.evaluate_scene``: one per held-out scene, with the TRUE
material and, per policy, its video reward (and components), the mean distance of its
simulated particles to the GT particles, its material, and its log10 E against the truth.

What DPO exists to change is the annotator's *signed* E bias per material (pred − true in
log10 Pa: jelly labelled too stiff is > 0), so besides means over all scenes every figure
is also reported per true material, and the E error on the scenes where the material is
right (where a per-material E can be compared at all). Every change is a paired bootstrap
95 % interval over scenes (``eval_stats``). The win rate counts ties apart: two videos
whose rewards differ by less than ``TIE_EPS`` are a tie, not half a win.
"""
from __future__ import annotations

import numpy as np

from learner.eval_stats import bootstrap_mean, paired_bootstrap

# (figure key, column label, decimals, column width) of the comparison table, in order.
COLUMNS = (("reward", "video reward ↑", 4, 16), ("mask_iou", "mask IoU ↑", 3, 12),
           ("track_error", "track err ↓", 4, 13), ("particle_dist", "particle dist ↓", 4, 17),
           ("material_ok", "material acc ↑", 3, 16), ("E_err_log10", "log10 E err ↓", 3, 15),
           ("E_err_log10_ok", "E err, mat ok ↓", 3, 17), ("E_bias_log10", "E bias", 3, 10),
           ("E_bias_log10_ok", "E bias, mat ok", 3, 16))
FIGURES = tuple(key for key, *_ in COLUMNS)
# rewards closer than this are a tie: below the reward's resolution on 64² videos (one
# pixel of mask changes the IoU by ~1e-3), far below dpo.reward_margin
TIE_EPS = 1e-3
NAMES = ("pretrained", "dpo")


def _values(rows: list[dict], name: str, key: str) -> np.ndarray:
    return np.array([r[name].get(key, np.nan) for r in rows], dtype=float)


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _delta(a: np.ndarray, b: np.ndarray) -> dict | None:
    """Paired b − a over the scenes where both are defined (None when there is none)."""
    ok = np.isfinite(a) & np.isfinite(b)
    return paired_bootstrap(a[ok], b[ok]) if ok.any() else None


def win_tie_loss(rows: list[dict], names=NAMES, tie_eps: float = TIE_EPS) -> dict:
    """Wins, ties and losses of the second policy's video over the first's (by reward)."""
    d = _values(rows, names[1], "reward") - _values(rows, names[0], "reward")
    win, tie = (d > tie_eps).astype(float), (np.abs(d) <= tie_eps).astype(float)
    decided = win[tie == 0]
    return {"wins": int(win.sum()), "ties": int(tie.sum()), "losses": int(len(d) - win.sum()
                                                                           - tie.sum()),
            "tie_eps": tie_eps,
            # the contract's figure: ties count half (as before)
            "win_rate": float(np.mean(win + 0.5 * tie)) if len(d) else float("nan"),
            "win_rate_ci": bootstrap_mean(win + 0.5 * tie) if len(d) else None,
            "win_rate_decided": float(decided.mean()) if decided.size else float("nan"),
            "win_rate_decided_ci": bootstrap_mean(decided) if decided.size else None}


def _block(rows: list[dict], names=NAMES) -> dict:
    """Means per policy and paired deltas of every figure present, over ``rows``."""
    present = [k for k in FIGURES if rows and any(k in r[names[0]] for r in rows)]
    out = {name: {k: _mean(_values(rows, name, k)) for k in present} for name in names}
    out["n_scenes"] = len(rows)
    out["delta"] = {}
    for k in present:
        d = _delta(_values(rows, names[0], k), _values(rows, names[1], k))
        if d is not None:
            out["delta"][k] = d
    return out


def summarize(rows: list[dict], names=NAMES, tie_eps: float = TIE_EPS) -> dict:
    """Overall figures (``<name>``: means, ``delta``: paired changes with intervals), the win
    rate (ties half, the contract's ``win_rate``; ``win_rate_decided`` without the ties),
    and ``per_material``: the same block per TRUE material with the bias reduction
    ``bias_shrink`` = 1 − |bias w/| / |bias w/o| of the signed E bias on the scenes whose
    material the policy got right."""
    summary = _block(rows, names)
    summary.update(win_tie_loss(rows, names, tie_eps))
    per = {}
    for mat in sorted({r.get("true_material") for r in rows} - {None}):
        sub = [r for r in rows if r.get("true_material") == mat]
        block = _block(sub, names)
        block.update({k: v for k, v in win_tie_loss(sub, names, tie_eps).items()
                      if k in ("wins", "ties", "losses", "win_rate")})
        # the annotator's bias shows where the material is right (a wrong material brings
        # that material's E range with it)
        pre = block[names[0]].get("E_bias_log10_ok")
        post = block[names[1]].get("E_bias_log10_ok")
        if pre is not None and post is not None and np.isfinite(pre) and abs(pre) > 1e-12:
            block["bias_shrink"] = float(1.0 - abs(post) / abs(pre))
        per[mat] = block
    summary["per_material"] = per
    return summary


def _fmt(value, places: int, width: int) -> str:
    return f"{value:>{width}.{places}f}" if value is not None and np.isfinite(value) \
        else f"{'–':>{width}}"


def format_table(summary: dict, names=NAMES) -> str:
    """The paper-style comparison table, the paired changes, then one line per material."""
    labels = {"pretrained": "w/o DPO", "dpo": "w/ DPO"}
    cols = [c for c in COLUMNS if c[0] in summary[names[0]]]
    head = f"{'':<10}" + "".join(f"{label:>{w}}" for _, label, _, w in cols)
    lines = [head, "-" * len(head)]
    for n in names:
        lines.append(f"{labels.get(n, n):<10}" + "".join(
            _fmt(summary[n].get(k), p, w) for k, _, p, w in cols))
    ci = summary.get("win_rate_ci")
    ci_text = f" (95% CI {ci['lo']:.0%}–{ci['hi']:.0%})" if ci else ""
    lines.append(f"win rate of w/ DPO over w/o DPO (video closer to GT): "
                 f"{summary['win_rate']:.1%}{ci_text} on {summary['n_scenes']} held-out scenes"
                 f" ({summary['wins']} wins, {summary['ties']} ties within "
                 f"{summary['tie_eps']:g}, {summary['losses']} losses)")
    delta = summary.get("delta")
    if delta:
        lines += ["", f"{'w/ − w/o DPO, paired over scenes':<34}{'change':>10}   95% CI"]
        for key, label, places, _ in COLUMNS:
            if key in delta:
                d = delta[key]
                lines.append(f"{label:<34}{d['mean']:>+10.{places}f}   "
                             f"[{d['lo']:+.{places}f}, {d['hi']:+.{places}f}]")
        lines.append("(an interval that excludes 0 is a change the draw of scenes does not explain)")
    per = summary.get("per_material") or {}
    if per:
        lines += ["", f"{'per true material':<12}{'n':>4}{'E bias w/o':>12}{'w/':>8}"
                  f"{'shrink':>8}{'E err ok w/o':>14}{'w/':>8}{'acc w/o':>9}{'w/':>7}"
                  f"{'win':>7}"]
        for mat, b in per.items():
            a, c = b[names[0]], b[names[1]]
            lines.append(f"{mat:<12}{b['n_scenes']:>4}{_fmt(a.get('E_bias_log10_ok'), 3, 12)}"
                         f"{_fmt(c.get('E_bias_log10_ok'), 3, 8)}"
                         f"{_fmt(b.get('bias_shrink', float('nan')) * 100, 0, 7)}%"
                         f"{_fmt(a.get('E_err_log10_ok'), 3, 14)}"
                         f"{_fmt(c.get('E_err_log10_ok'), 3, 8)}"
                         f"{_fmt(a.get('material_ok'), 2, 9)}{_fmt(c.get('material_ok'), 2, 7)}"
                         f"{_fmt(b.get('win_rate', float('nan')) * 100, 0, 6)}%")
        lines.append("(E bias: mean predicted − true log10 E [decades] on scenes whose material "
                     "is right; shrink: 1 − |w/| / |w/o|)")
    return "\n".join(lines)


def mlflow_metrics(summary: dict, prefix: str = "eval") -> dict:
    """``<prefix>/win_rate``, ``<prefix>/{video_reward,material_acc,E_mae_log10}/{pretrained,
    dpo}`` (the contract's names), and beside them every figure per policy
    (``<prefix>/<figure>/<policy>``), ``<prefix>/delta/<figure>/{mean,lo,hi}``, the ties, and
    ``<prefix>/material/<m>/{E_bias_log10/<policy>, bias_shrink, n}``."""
    out = {f"{prefix}/win_rate": summary["win_rate"],
           f"{prefix}/win_rate_decided": summary["win_rate_decided"],
           f"{prefix}/ties": summary["ties"]}
    for key, d in summary.get("delta", {}).items():
        out.update({f"{prefix}/delta/{key}/{part}": d[part] for part in ("mean", "lo", "hi")})
    for name in NAMES:
        s = summary[name]
        out[f"{prefix}/video_reward/{name}"] = s["reward"]
        if "material_ok" in s:
            out[f"{prefix}/material_acc/{name}"] = s["material_ok"]
            out[f"{prefix}/E_mae_log10/{name}"] = s["E_err_log10"]
        out.update({f"{prefix}/{k}/{name}": v for k, v in s.items()
                    if k not in ("reward", "material_ok", "E_err_log10")})
    for mat, b in (summary.get("per_material") or {}).items():
        out[f"{prefix}/material/{mat}/n"] = b["n_scenes"]
        for name in NAMES:
            for key in ("E_bias_log10", "E_bias_log10_ok", "E_err_log10_ok", "material_ok"):
                if key in b[name]:
                    out[f"{prefix}/material/{mat}/{key}/{name}"] = b[name][key]
        if "bias_shrink" in b:
            out[f"{prefix}/material/{mat}/bias_shrink"] = b["bias_shrink"]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
