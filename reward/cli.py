"""``physgm reward`` CLI: score a candidate video against a reference video, and sweep one
physical parameter of a synthetic scene to see how much the reward can tell it apart.

    physgm reward score candidate.mp4 reference.mp4 --backend classical --json
    physgm reward sweep -c configs/quickstart.yaml --scene 000004 --param E

Videos are .mp4, .gif or
.npy ``(T, H, W, 3) uint8``; mp4 is lossy, so a re-encoded copy scores close to, not
exactly, 0.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from physgm.cli_common import (PASS_THROUGH, ConfigOpt, JsonOpt, SetOpt, fail, get_config,
                               run_benchmark)

app = typer.Typer(help="Video reward: SAM-2/CoTracker3 or classical masks + tracks.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _main() -> None:
    """Video reward commands."""


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """``physgm reward {score,sweep}`` and ``physgm bench reward``."""
    root.add_typer(app, name="reward")
    bench.command("reward", context_settings=PASS_THROUGH)(bench_reward)


def bench_reward(ctx: typer.Context) -> None:
    """Videos scored per second per reward backend, batched vs unbatched, reference vs
    candidate cost. Options: --backends classical,sam2_cotracker --k 8 --json."""
    run_benchmark("reward", list(ctx.args))


def load_any_video(path: Path) -> np.ndarray:
    """``.npy`` (T, H, W, 3) uint8 or ``.mp4``/``.gif`` → ``(T, H, W, 3) uint8``."""
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"video not found: {path}")
        return np.load(path, allow_pickle=False)
    from physgm.video import read_video
    return read_video(path)


@app.command("score")
def score_cmd(
    candidate: Path = typer.Argument(..., help="candidate video (.mp4, .gif, .npy)"),
    reference: Path = typer.Argument(..., help="ground-truth video (.mp4, .gif, .npy)"),
    backend: Optional[str] = typer.Option(None, "--backend", "-b",
                                          help="classical | sam2_cotracker (default: config)"),
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Score CANDIDATE against REFERENCE: reward = −(w_mask·(1 − mIoU) + w_track·track_error)."""
    from .scorer import score

    cfg = get_config(config, set_)
    try:
        cand, ref = load_any_video(candidate), load_any_video(reference)
        result = score(cand, ref, backend=backend, cfg=cfg)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"reward ({backend or cfg.reward.backend})")
    for col in ("reward", "mask IoU", "track error", "status", "frames"):
        table.add_column(col)
    table.add_row(f"{result.reward:.4f}", f"{result.mask_iou:.4f}", f"{result.track_error:.4f}",
                  result.status, str(result.n_frames))
    Console().print(table)


@app.command("sweep")
def sweep_cmd(
    scene: Optional[str] = typer.Option(None, "--scene", help="scene id in data.path (e.g. "
                                        "000004)"),
    per_material: int = typer.Option(0, "--per-material", help="instead of --scene: the "
                                     "first N scenes of each true material of --split, and "
                                     "the mean reward per offset and material"),
    split: str = typer.Option("train", "--split", help="with --per-material: train | val | "
                              "test | all"),
    param: str = typer.Option("E", "--param", help="E | nu | density | yield_stress | "
                              "friction_angle | hardening | critical_compression | "
                              "critical_stretch"),
    offsets: str = typer.Option("-0.6,-0.3,-0.15,0,0.15,0.3,0.6", "--offsets",
                                help="comma-separated shifts from the true value: decades for "
                                "E, density, yield_stress; SI units otherwise"),
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """How far the video reward falls when one TRUE parameter of a synthetic scene is shifted.

    The scene is re-simulated at its true parameters with PARAM moved by each offset and
    scored against its GT video: offset 0 scores ~0, and a flat row means the video (and so
    DPO) cannot tell values of PARAM apart on this scene.

    Example: physgm reward sweep -c configs/quickstart.yaml --scene 000004 --param E
             physgm reward sweep -c configs/quickstart.yaml --per-material 4 --param E
    """
    from runtime.scenes import load_rollout_scene

    from .scorer import RewardScorer
    from .sweep import sensitivity, sweep, unit

    cfg = get_config(config, set_)
    if (scene is None) == (per_material <= 0):
        fail("give either --scene ID or --per-material N (N ≥ 1)")
    if per_material > 0:
        _sweep_materials(cfg, param, offsets, per_material, split, as_json)
        return
    try:
        values = [float(v) for v in offsets.split(",") if v.strip()]
        if 0.0 not in values:
            values.append(0.0)
        values.sort()
        rollout_scene = load_rollout_scene(cfg, scene)
        rows = sweep(rollout_scene, RewardScorer(cfg.reward), param, values,
                     rollout_scene.reference.shape[2], rollout_scene.reference.shape[1],
                     cfg.render.backend,
                     on_row=None if as_json else
                     lambda r: typer.echo(f"  {r['offset']:+.3g} → reward {r['reward']:.4f}",
                                          err=True))
    except (ValueError, FileNotFoundError, KeyError) as err:
        fail(str(err))
    slope = sensitivity(rows)
    true = rollout_scene.true
    if as_json:
        typer.echo(json.dumps({"scene": scene, "material": true.material.value, "param": param,
                               "true": getattr(true, param), "unit": unit(param),
                               "sensitivity": slope, "rows": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"scene {scene} ({true.material.value}): reward vs {param} "
                  f"(true {getattr(true, param):.4g})")
    for col in (f"offset [{unit(param)}]", param, "reward", "mask IoU", "track error", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(f"{r['offset']:+.3g}", f"{r['value']:.4g}", f"{r['reward']:.4f}",
                      f"{r['mask_iou']:.3f}", f"{r['track_error']:.4f}", r["status"])
    console = Console()
    console.print(table)
    console.print(f"sensitivity: {slope:.3f} reward lost per unit of offset "
                  f"[{unit(param) or 'SI'}] (≈ 0: DPO cannot learn {param} from this video)")


def _sweep_materials(cfg, param: str, offsets: str, per_material: int, split: str,
                     as_json: bool) -> None:
    """``physgm reward sweep --per-material N``: the table of mean rewards per material."""
    from runtime.scenes import scene_split

    from .sweep import sweep_materials, unit

    try:
        values = sorted({float(v) for v in offsets.split(",") if v.strip()} | {0.0})
        ids = scene_split(cfg, split)
        out = sweep_materials(cfg, ids, param, values, per_material,
                              on_scene=None if as_json else
                              lambda sid, mat: typer.echo(f"  scene {sid} ({mat})", err=True))
    except (ValueError, FileNotFoundError, KeyError) as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps({"param": param, "unit": unit(param), "split": split,
                               "materials": out}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mean reward vs {param} offset [{unit(param) or 'SI'}] per true "
                  f"material ({split} scenes)")
    for col in ["material", "scenes", *[f"{v:+g}" for v in values], "sensitivity",
                "visible"]:
        table.add_column(col)
    for mat, row in out.items():
        table.add_row(mat, str(len(row["scenes"])), *[f"{row['reward'][f'{v:+g}']:.3f}"
                                                      for v in values],
                      f"{row['sensitivity']:.3f}", f"{row['visible']:.0%}")
    Console().print(table)
    typer.echo("visible: share of scenes whose reward at the largest offset falls below "
               "-0.01 (the video tells the parameter apart)")


if __name__ == "__main__":
    app()
