"""The figures of ``physgm study`` (pure: no I/O): each run's headline figures of the w/o vs
w/ DPO comparison on the final test store, their mean over runs with a t-interval, and the
study's table (markdown: the console, study.md).

Interval: the 95 % Student-t interval of the mean over the R = M × N runs (M data seeds ×
N DPO seeds), mean ± t(0.975, R − 1) · sd / √R. Runs that share a data seed share their
scenes and their pretraining, so they are not independent draws: when the data seeds
differ more than the DPO seeds (``sd_data`` > ``sd_dpo``) that interval is too narrow, and
the honest one is the t-interval over the M data-seed means (``data_ci``, df M − 1: wide
for M = 2). Both are reported; min and max say whether *every* run met a bar.
"""
from __future__ import annotations

import math

import numpy as np

# t(0.975, df) for df = 1…30 (Student's t table); above 30 the Cornish–Fisher expansion of
# ``t_quantile`` is within 1e-3 of it
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964

# (figure key, label, decimals) of the study table, in order; per-material rows follow
HEADLINE = (
    ("win_rate", "win rate, ties half ↑", 3),
    ("win_rate_decided", "win rate, decided scenes ↑", 3),
    ("ties", "ties (scenes)", 1),
    ("reward/pretrained", "video reward w/o DPO", 4),
    ("reward/dpo", "video reward w/ DPO", 4),
    ("reward/change", "video reward change ↑", 4),
    ("particle_dist/change", "particle distance change [m] ↓", 4),
    ("E_err_log10/change", "log10 E error change ↓", 3),
    ("E_err_log10/rel_change", "log10 E error relative change ↓", 3),
    ("E_err_log10_ok/pretrained", "log10 E error, material right, w/o", 3),
    ("E_err_log10_ok/dpo", "log10 E error, material right, w/", 3),
    ("E_err_log10_ok/change", "log10 E error change, material right ↓", 3),
    ("E_err_log10_ok/rel_change", "… relative change ↓", 3),
    ("material_acc/pretrained", "material accuracy w/o DPO", 3),
    ("material_acc/dpo", "material accuracy w/ DPO", 3),
    ("material_acc/change", "material accuracy change", 3),
)
# per true material m: E_bias/<m>/{pretrained, dpo, shrink}
BIAS_PARTS = (("pretrained", "w/o", 3), ("dpo", "w/", 3), ("shrink", "shrink ↑", 2))


def t_quantile(df: int) -> float:
    """t(0.975, df): the two-sided 95 % quantile of Student's t with ``df`` ≥ 1 degrees."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be ≥ 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def _finite(x) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else float("nan")


def headline_figures(summary: dict) -> dict[str, float]:
    """One run's figures (flat keys of ``HEADLINE`` and ``E_bias/<m>/<part>``) from the
    comparison summary of ``learner.eval_summary.summarize``. Changes are w/ − w/o DPO
    (paired over scenes); relative changes are w/ ÷ w/o − 1 of the means; a figure the
    run cannot give (no scene of a material right) is NaN."""
    pre, dpo, delta = summary["pretrained"], summary["dpo"], summary.get("delta", {})

    def change(key: str) -> float:
        return _finite(delta[key]["mean"]) if key in delta else float("nan")

    def rel(key: str) -> float:
        a, b = _finite(pre.get(key)), _finite(dpo.get(key))
        return b / a - 1.0 if math.isfinite(a) and a > 0 and math.isfinite(b) else float("nan")

    out = {"win_rate": _finite(summary["win_rate"]),
           "win_rate_decided": _finite(summary.get("win_rate_decided")),
           "ties": float(summary.get("ties", float("nan"))),
           "reward/pretrained": _finite(pre.get("reward")),
           "reward/dpo": _finite(dpo.get("reward")), "reward/change": change("reward"),
           "particle_dist/change": change("particle_dist"),
           "E_err_log10/change": change("E_err_log10"),
           "E_err_log10/rel_change": rel("E_err_log10"),
           "E_err_log10_ok/pretrained": _finite(pre.get("E_err_log10_ok")),
           "E_err_log10_ok/dpo": _finite(dpo.get("E_err_log10_ok")),
           "E_err_log10_ok/change": change("E_err_log10_ok"),
           "E_err_log10_ok/rel_change": rel("E_err_log10_ok"),
           "material_acc/pretrained": _finite(pre.get("material_ok")),
           "material_acc/dpo": _finite(dpo.get("material_ok")),
           "material_acc/change": change("material_ok")}
    for mat, block in (summary.get("per_material") or {}).items():
        out[f"E_bias/{mat}/pretrained"] = _finite(block["pretrained"].get("E_bias_log10_ok"))
        out[f"E_bias/{mat}/dpo"] = _finite(block["dpo"].get("E_bias_log10_ok"))
        out[f"E_bias/{mat}/shrink"] = _finite(block.get("bias_shrink"))
    return out


def _t_interval(x: np.ndarray) -> tuple[float, float]:
    if x.size < 2:
        return float(x.mean()), float(x.mean())
    half = t_quantile(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def aggregate_figure(values: list[float], data_seeds: list[int]) -> dict | None:
    """Mean over runs of one figure and its spread; ``values[i]`` came from a run with
    data seed ``data_seeds[i]`` (NaNs are left out). Returns {"mean", "lo", "hi" (t-interval
    over runs), "n", "min", "max", "sd" (over runs), "sd_dpo" (pooled within data seeds),
    "sd_data" (of the data-seed means), "data_ci" ({"lo", "hi"}: t-interval over the
    data-seed means, when ≥ 2)}, None when no run has it."""
    x = np.asarray(values, float)
    seeds = np.asarray(data_seeds)
    ok = np.isfinite(x)
    x, seeds = x[ok], seeds[ok]
    if not x.size:
        return None
    lo, hi = _t_interval(x)
    groups = [x[seeds == s] for s in dict.fromkeys(seeds.tolist())]
    within = sum(((g - g.mean()) ** 2).sum() for g in groups)
    dof = sum(g.size - 1 for g in groups)
    means = np.array([g.mean() for g in groups])
    out = {"mean": float(x.mean()), "lo": lo, "hi": hi, "n": int(x.size),
           "min": float(x.min()), "max": float(x.max()),
           "sd": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
           "sd_dpo": float(math.sqrt(within / dof)) if dof else float("nan"),
           "sd_data": float(means.std(ddof=1)) if means.size > 1 else float("nan")}
    if means.size > 1:
        dlo, dhi = _t_interval(means)
        out["data_ci"] = {"lo": dlo, "hi": dhi}
    return out


def aggregate(runs: list[dict]) -> dict[str, dict]:
    """{figure key: ``aggregate_figure``} over ``runs`` ([{"data_seed", "figures"}]), keys in
    the order of ``HEADLINE`` then per material."""
    keys = list(dict.fromkeys(k for r in runs for k in r["figures"]))
    order = [k for k, _, _ in HEADLINE if k in keys] + sorted(
        k for k in keys if k not in {h for h, _, _ in HEADLINE})
    seeds = [r["data_seed"] for r in runs]
    out = {}
    for key in order:
        agg = aggregate_figure([r["figures"].get(key, float("nan")) for r in runs], seeds)
        if agg is not None:
            out[key] = agg
    return out


def _num(v: float, places: int, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:+.{places}f}" if sign else f"{v:.{places}f}"


def _row(label: str, a: dict, places: int) -> str:
    sign = a["min"] < 0 or "change" in label
    d = a.get("data_ci")
    data_ci = f"[{_num(d['lo'], places, sign)}, {_num(d['hi'], places, sign)}]" if d else "–"
    return (f"| {label} | {_num(a['mean'], places, sign)} | [{_num(a['lo'], places, sign)}, "
            f"{_num(a['hi'], places, sign)}] | {data_ci} | {_num(a['min'], places, sign)} … "
            f"{_num(a['max'], places, sign)} | {_num(a['sd_data'], places)} | "
            f"{_num(a['sd_dpo'], places)} | {a['n']} |")


def format_study(study: dict) -> str:
    """The study table (markdown): every figure's mean, 95 % t-interval over runs, min … max
    and spreads, then the per-material E bias, then one line per run."""
    figs, runs = study["figures"], study["runs"]
    head = ("| figure | mean | 95 % CI, runs | 95 % CI, data seeds | min … max | sd data seeds "
            "| sd DPO seeds | runs |\n|---|---|---|---|---|---|---|---|")
    lines = [f"# physgm study {study['name']}: w/o vs w/ DPO on the final test store", "",
             f"{len(study['data_seeds'])} data seeds ({', '.join(map(str, study['data_seeds']))})"
             f" × {len(study['dpo_seeds'])} DPO seeds ({', '.join(map(str, study['dpo_seeds']))})"
             f" = {len(runs)} runs; final test store: {study.get('test_scenes', '?')} scenes "
             f"(seed {study.get('test_seed', '?')}), the same for every run.",
             f"95 % CI: {study['interval']}", "", head]
    lines += [_row(label, figs[key], p) for key, label, p in HEADLINE if key in figs]
    materials = sorted({k.split("/")[1] for k in figs if k.startswith("E_bias/")})
    if materials:
        lines += ["", "Signed log10 E bias per true material (pred − true [decades], scenes "
                  "whose material is right; shrink = 1 − |w/| / |w/o| per run):", "", head]
        for mat in materials:
            for part, label, p in BIAS_PARTS:
                if f"E_bias/{mat}/{part}" in figs:
                    lines.append(_row(f"{mat} {label}", figs[f"E_bias/{mat}/{part}"], p))
    lines += ["", "| data seed | DPO seed | win rate | reward change | E err change, mat ok "
              "| material acc w/o → w/ |", "|---|---|---|---|---|---|"]
    for r in runs:
        f = r["figures"]
        lines.append(f"| {r['data_seed']} | {r['dpo_seed']} | {_num(f['win_rate'], 3)} | "
                     f"{_num(f['reward/change'], 4, True)} | "
                     f"{_num(f['E_err_log10_ok/change'], 3, True)} | "
                     f"{_num(f['material_acc/pretrained'], 3)} → "
                     f"{_num(f['material_acc/dpo'], 3)} |")
    return "\n".join(lines)


INTERVAL = ("Student-t over the runs (mean ± t(0.975, R−1)·sd/√R); runs sharing a data seed "
            "share its scenes and pretraining, so when sd data seeds > sd DPO seeds that "
            "interval is optimistic, and the Student-t interval over the data-seed means "
            "(df M−1; data_ci in study.json) is the one to trust")


def study_metrics(figures: dict) -> dict[str, float]:
    """MLflow metrics of the study's parent run: ``study/<figure>/{mean,lo,hi,min,max}``."""
    out = {}
    for key, a in figures.items():
        for part in ("mean", "lo", "hi", "min", "max"):
            if math.isfinite(a[part]):
                out[f"study/{key}/{part}"] = a[part]
    return out
