"""The DPO learning curve: snapshots of the physics head during DPO, scored after it.

    runs/<name>/dpo/curve/step_XXXXXX.pt   the head's weights after that many learner steps
                                           (step_000000: the pretrained head)

The orchestrator writes one every ``eval.curve_every`` learner steps and at the last step
(``save_snapshot``); after DPO, ``score_curve`` simulates each snapshot's mode on the first
``eval.curve_scenes`` scenes of the validation store with ``learner.evaluate.evaluate_scene``
(all snapshots of a scene in one task, its GT simulated once) and summarises the rows with
``learner.curve_summary.curve_figures``. Cost: snapshots × curve_scenes simulations (+ one
GT simulation per scene where the store lacks its trajectory), less the snapshots whose
weights equal a head already scored on those scenes (``known``: the pipeline passes its
validation comparison, so step 0 and the last step are not simulated twice).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Callable, Optional

import torch

from learner.curve_summary import curve_figures, head_name
from physgm.config import RunConfig

_FILE = re.compile(r"step_(\d{6,})\.pt$")


def curve_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "dpo" / "curve"


def snapshot_path(run_dir: Path, step: int) -> Path:
    return curve_dir(run_dir) / f"{head_name(step)}.pt"


def save_snapshot(run_dir: Path, step: int, head_state: dict) -> Path:
    """Write the physics head's state dict (CPU tensors) after ``step`` learner steps,
    atomically (a kill leaves no half file for the scoring to trip on)."""
    path = snapshot_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"step": int(step), "physics_head": {k: v.detach().cpu().float()
                                                    for k, v in head_state.items()}}, tmp)
    tmp.replace(path)
    return path


def clear_snapshots(run_dir: Path) -> None:
    """Remove the snapshots of an earlier DPO run (a fresh run starts its curve anew)."""
    for _, path in list_snapshots(run_dir):
        path.unlink()


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """[(step, path)] of the snapshots under ``run_dir``, by step."""
    d = curve_dir(run_dir)
    found = [(int(m.group(1)), p) for p in d.glob("step_*.pt") if (m := _FILE.search(p.name))]
    return sorted(found)


def load_heads(model, snapshots: list[tuple[int, Path]]) -> dict:
    """{head_name(step): physics head with that snapshot's weights} (eval mode, CPU)."""
    heads = {}
    for step, path in snapshots:
        head = copy.deepcopy(model.physics_head)
        head.load_state_dict(torch.load(path, weights_only=True)["physics_head"])
        heads[head_name(step)] = head.eval()
    return heads


def same_weights(a: dict, b: dict) -> bool:
    """Whether two state dicts hold the same tensors (same keys, shapes and values)."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k].float(), b[k].float()) for k in a)


def _reused(heads: dict, known: dict, ids: list[str]) -> dict[str, str]:
    """{snapshot name: known row key} for the snapshots whose weights equal a known head's
    and whose rows cover every scene of ``ids``."""
    out = {}
    for name, head in heads.items():
        state = head.state_dict()
        for key, (known_head, rows) in known.items():
            covered = {r["scene_id"] for r in rows if key in r} >= set(ids)
            if covered and same_weights(state, known_head.state_dict()):
                out[name] = key
                break
    return out


def score_curve(val_cfg: RunConfig, run_dir: Path, pretrained: str, n_scenes: int,
                on_progress: Optional[Callable[[int, int], None]] = None,
                known: Optional[dict[str, tuple[object, list[dict]]]] = None
                ) -> tuple[list[dict], list[dict]]:
    """Score every snapshot under ``run_dir`` on the first ``n_scenes`` scenes of
    ``val_cfg.data.path`` (all of them: a held-out store) → (curve points, rows).

    ``pretrained``: the checkpoint whose frozen encoder gives the tokens (DPO changes only
    the physics head). Scenes run as Ray tasks (one CPU each) when Ray is up. ``known``:
    {row key: (physics head, rows of ``evaluate_scene`` on this store)}, e.g. the stage's
    validation comparison ("pretrained", "dpo"): a snapshot with the same weights as such a
    head (step 0 and the last step) takes its rows instead of being simulated again (the
    simulation is deterministic, so the figures are the same)."""
    from learner.evaluate import evaluate_scene, map_scenes
    from physgm.model import load_model
    from runtime.scenes import encode_scenes, scene_split

    snapshots = list_snapshots(run_dir)
    if not snapshots:
        raise FileNotFoundError(f"no DPO snapshots under {curve_dir(run_dir)}: run DPO with "
                                "eval.curve_every > 0")
    ids = scene_split(val_cfg, "all")[:n_scenes]
    model, _ = load_model(pretrained, "cpu")
    heads = load_heads(model, snapshots)
    reuse = _reused(heads, known or {}, ids)
    todo = {name: head for name, head in heads.items() if name not in reuse}
    if todo:
        tokens = encode_scenes(model, val_cfg, ids)
        rows = map_scenes(val_cfg, ids, evaluate_scene, todo, tokens, on_progress=on_progress)
    else:
        rows = [{"scene_id": sid} for sid in ids]
    by_scene = {key: {r["scene_id"]: r for r in known[key][1]} for key in set(reuse.values())}
    for row in rows:
        for name, key in reuse.items():
            old = by_scene[key][row["scene_id"]]
            row.update({k: v for k, v in old.items() if k not in known}, **{name: old[key]})
    points = curve_figures(rows, [s for s, _ in snapshots], val_cfg.eval.tie_eps)
    return points, rows
