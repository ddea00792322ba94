"""``reward`` CLI: score a candidate video against a reference video.

    python -m reward.cli score candidate.mp4 reference.mp4 --backend classical --json

(``physgm reward score ...`` once wired into physgm/cli.py.) Videos are .mp4, .gif or
.npy ``(T, H, W, 3) uint8``; mp4 is lossy, so a re-encoded copy scores close to, not
exactly, 0.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

app = typer.Typer(help="Video reward: SAM-2/CoTracker3 or classical masks + tracks.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _main() -> None:
    """Video reward commands."""


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
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="run config YAML"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override, e.g. "
                                             "reward.random_init=true"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON line"),
) -> None:
    """Score CANDIDATE against REFERENCE: reward = −(w_mask·(1 − mIoU) + w_track·track_error)."""
    from physgm.config import ConfigError, load_config

    from .scorer import score

    try:
        cfg = load_config(config, set_)
        cand, ref = load_any_video(candidate), load_any_video(reference)
        result = score(cand, ref, backend=backend, cfg=cfg)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
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


if __name__ == "__main__":
    app()
