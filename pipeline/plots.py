"""The eval stage's plots, under runs/<name>/plots/ and as MLflow artifacts (``plots/``):

    E_bias_by_material.png   signed log10 E bias per true material, w/o vs w/ DPO, on the
                             final test store (bootstrap 95 % intervals)
    dpo_curve.png            held-out video reward and E bias per material against the DPO
                             step: the snapshots of ``eval.curve_every`` (learner.curve)
                             scored on ``eval.curve_scenes`` validation scenes

Each PNG has its numbers beside it (``.json``); the curve is also logged as MLflow metrics
``curve/*`` at step = the DPO step, so the MLflow UI draws it too.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

from physgm.config import RunConfig


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float))


def score_and_plot_curve(cfg: RunConfig, val: Optional[RunConfig], run_id: str, plots: Path,
                         say: Callable, val_rows: Optional[list[dict]] = None
                         ) -> Optional[dict]:
    """Score the run's DPO snapshots on the validation store, log ``curve/*`` and draw
    dpo_curve.png → {"points", "snapshots", "scenes", "wall_s"}, or None (said why).
    ``val_rows``: the w/o vs w/ DPO rows of that store (the snapshots equal to either
    model reuse them; ``learner.curve.score_curve``)."""
    from learner.curve import list_snapshots, score_curve
    from learner.curve_summary import curve_metrics
    from learner.dpo import pretrained_path
    from learner.plots import plot_curve
    from runtime import tracking

    if val is None:
        say("  DPO curve: not scored: no validation store (set eval.val_scenes)")
        return None
    snapshots = list_snapshots(cfg.run_dir)
    if not snapshots:
        say("  DPO curve: no snapshots under dpo/curve/ (DPO ran with eval.curve_every 0; "
            "`physgm run --redo dpo` makes them)")
        return None
    n = min(cfg.eval.curve_scenes, cfg.eval.val_scenes)
    say(f"  DPO curve: {len(snapshots)} snapshots (steps {', '.join(str(s) for s, _ in snapshots)})"
        f" × {n} validation scenes")
    t0 = time.perf_counter()
    known = None
    if val_rows:
        from learner.dpo import dpo_checkpoint_path
        from physgm.model import load_model

        known = {key: (load_model(str(path), "cpu")[0].physics_head, val_rows)
                 for key, path in (("pretrained", pretrained_path(cfg, None)),
                                   ("dpo", dpo_checkpoint_path(cfg)))}
    points, _ = score_curve(val, cfg.run_dir, str(pretrained_path(cfg, None)), n,
                            on_progress=lambda d, t: say(f"  curve scenes {d}/{t}",
                                                         transient=True), known=known)
    for point in points:
        tracking.log_metrics(cfg, run_id, curve_metrics(point), point["step"])
    plot_curve(points, plots / "dpo_curve.png", title=f"{cfg.name}: DPO on the validation store")
    _write_json(plots / "dpo_curve.json", points)
    return {"points": points, "snapshots": len(snapshots), "scenes": n,
            "wall_s": round(time.perf_counter() - t0, 1)}


def make_plots(cfg: RunConfig, val: Optional[RunConfig], test_rows: list[dict], run_id: str,
               say: Callable, val_rows: Optional[list[dict]] = None) -> dict:
    """Both plots (the curve when ``eval.curve_every`` > 0), logged to the eval run.
    ``val_rows``: the validation comparison's rows, reused by the curve."""
    from learner.curve_summary import bias_by_material
    from learner.plots import plot_bias_bars
    from runtime import tracking

    plots = cfg.run_dir / "plots"
    bias = bias_by_material(test_rows)
    if bias:  # a store without true physics (a real capture) has no bias to show
        plot_bias_bars(bias, plots / "E_bias_by_material.png", title=f"{cfg.name}: E bias per "
                       f"true material on {len(test_rows)} test scenes")
        _write_json(plots / "E_bias_by_material.json", bias)
    out = {"dir": str(plots), "E_bias_by_material": bias}
    if cfg.eval.curve_every:
        out["curve"] = score_and_plot_curve(cfg, val, run_id, plots, say, val_rows)
    pngs = sorted(p.name for p in plots.glob("*.png"))
    if pngs:
        tracking.log_artifacts(cfg, run_id, plots, "plots")
        say(f"  plots: {', '.join(pngs)} in {plots}/")
    return out
