"""The PNGs of a run's evaluation (runs/<name>/plots/): the DPO learning curve on the
validation store and the per-material signed E bias before/after DPO on the final test
store. Inputs are the figures of ``learner.curve_summary``; matplotlib draws off-screen
(``Figure`` + Agg canvas: no GUI, no pyplot global state, safe in any process)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = {"pretrained": "w/o DPO", "dpo": "w/ DPO"}
BIAS_AXIS = "signed log10 E bias, pred − true [decades]"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _errors(items: list) -> tuple[np.ndarray, np.ndarray]:
    """Means and (2, N) asymmetric error bars of [{"mean", "lo", "hi"} or None]."""
    mean = np.array([b["mean"] if b else np.nan for b in items], float)
    lo = np.array([b["mean"] - b["lo"] if b else 0.0 for b in items], float)
    hi = np.array([b["hi"] - b["mean"] if b else 0.0 for b in items], float)
    return mean, np.stack([lo, hi])


def plot_curve(points: list[dict], path: Path, title: str = "") -> Path:
    """Two panels against the DPO learner step: the mean held-out video reward (band: the
    paired 95 % interval of its change from step 0, drawn around step 0's mean) and the
    signed log10 E bias per true material on material-right scenes (bars: bootstrap 95 %)."""
    steps = np.array([p["step"] for p in points], float)
    fig = _figure(11, 4.2)
    ax_r, ax_b = fig.subplots(1, 2)
    reward = np.array([p["reward"] for p in points], float)
    ax_r.plot(steps, reward, "o-", color="C0", label="mean video reward")
    base = reward[0]
    change = [p["reward_change"] or {"lo": np.nan, "hi": np.nan} for p in points]
    ax_r.fill_between(steps, [base + c["lo"] for c in change], [base + c["hi"] for c in change],
                      color="C0", alpha=0.2, label="95 % CI of the change from step 0")
    ax_r.set_xlabel("DPO learner step")
    ax_r.set_ylabel("video reward (↑, 0 = the GT video)")
    ax_r.set_title(f"held-out video reward ({points[0]['n_scenes']} validation scenes)")
    ax_r.legend(loc="best", fontsize=8)
    materials = sorted({m for p in points for m in p["E_bias"]})
    for i, mat in enumerate(materials):
        mean, err = _errors([p["E_bias"].get(mat) for p in points])
        # offset the materials a little so their error bars do not hide each other
        dx = (i - (len(materials) - 1) / 2) * 0.01 * max(steps.max() - steps.min(), 1.0)
        ax_b.errorbar(steps + dx, mean, yerr=err, fmt="o-", capsize=3, color=f"C{i}",
                      label=mat)
    ax_b.axhline(0.0, color="k", lw=0.8, ls="--")
    ax_b.set_xlabel("DPO learner step")
    ax_b.set_ylabel(BIAS_AXIS)
    ax_b.set_title("E bias per material (scenes whose material is right)")
    if materials:
        ax_b.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_bias_bars(bias: dict, path: Path, title: str = "", names=("pretrained", "dpo")
                   ) -> Path:
    """Grouped bars per true material: the signed log10 E bias of each policy (``bias``:
    ``curve_summary.bias_by_material``) with its bootstrap 95 % interval; under each
    material n = its scenes whose material each policy got right (w/o | w/)."""
    materials = list(bias)
    x = np.arange(len(materials), dtype=float)
    width = 0.8 / len(names)
    fig = _figure(max(5.0, 1.6 * len(materials) + 2), 4.2)
    ax = fig.subplots()
    for j, name in enumerate(names):
        items = [bias[m].get(name) for m in materials]
        mean, err = _errors(items)
        pos = x + (j - (len(names) - 1) / 2) * width
        # no bar where no scene of the material has it right (n = 0 in the tick label)
        ax.bar(pos, np.nan_to_num(mean), width, yerr=err, capsize=3, color=f"C{j}",
               label=LABELS.get(name, name))
    ax.axhline(0.0, color="k", lw=0.8)
    counts = [" | ".join(str(bias[m][n]["n"] if bias[m].get(n) else 0) for n in names)
              for m in materials]
    ax.set_xticks(x, [f"{m}\nn = {c}" for m, c in zip(materials, counts)])
    ax.set_ylabel(BIAS_AXIS)
    ax.set_title(title or "E bias per true material, before and after DPO")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
