"""``physgm eval``: score checkpoints on held-out scenes against the TRUE parameters.

Figures per model (``pretrain.validate``): novel-view PSNR [dB], material accuracy,
log10 E MAE and ν MAE; and the same physics figures for the annotator's labels of the same
scenes (the supervision the model learned from); material accuracy also at each input
view count of ``pretrain.report_views`` (``material_acc/v<V>``, scenes storing fewer views
left out of that V). ``evaluate_models`` scores several named
models on one pass over the data (e.g. {"pretrained": …, "dpo": …}); ``evaluate_checkpoint``
is the one-checkpoint entry point the CLI uses.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch.utils.data import DataLoader

from physgm.config import ModelConfig, RunConfig
from physgm.model import load_model
from pretrain.loader import collate_fn, open_scenes
from pretrain.validate import METRICS, material_by_views, validate

PHYSICS_METRICS = ("material_acc", "E_mae_log10", "nu_mae")


def held_out_batches(cfg: RunConfig, data: Union[str, Path, None] = None, split: str = "test",
                     views: Optional[int] = None, batch_size: Optional[int] = None,
                     image_size: Optional[int] = None) -> DataLoader:
    """Deterministic batches of one split: ``views`` input views per scene (default
    ``pretrain.val_views``), ``pretrain.n_targets`` target views, in store order, resized
    to ``image_size`` (default ``model.image_size``)."""
    v = views or cfg.pretrain.val_views
    ds = open_scenes(data or cfg.data.path, split, (v, v), cfg.pretrain.n_targets, cfg.seed,
                     image_size=image_size or cfg.model.image_size)
    return DataLoader(ds, batch_size=batch_size or cfg.pretrain.batch_size, shuffle=False,
                      collate_fn=collate_fn())


def evaluate_models(models: Mapping[str, torch.nn.Module], cfg: RunConfig,
                    data: Union[str, Path, None] = None, split: str = "test",
                    max_scenes: int = 0, views: Optional[int] = None,
                    device: Union[str, torch.device] = "cpu") -> dict:
    """``{name: {psnr, material_acc, E_mae_log10, nu_mae, loss, n_scenes,
    material_acc/v<V>, n_scenes/v<V>}, "annotator": {material_acc, E_mae_log10, nu_mae},
    "split", "n_scenes"}`` on the same scenes (V: ``pretrain.report_views``)."""
    if not models:
        raise ValueError("evaluate_models needs at least one model")
    render = dict(background=tuple(cfg.render.background), backend=cfg.render.backend,
                  tile_size=cfg.render.tile_size)
    out: dict = {"split": split}
    for name, model in models.items():
        size = model.cfg.image_size if isinstance(getattr(model, "cfg", None), ModelConfig) \
            else None
        batches = held_out_batches(cfg, data, split, views, image_size=size)
        result = validate(model.to(device), batches, device, None, **render,
                          max_scenes=max_scenes, loss_weights=cfg.pretrain.loss_weights)
        result.update(material_by_views(model, batches.dataset, cfg.pretrain.report_views,
                                        batches.batch_size, device, None, max_scenes))
        out["annotator"] = result.pop("annotator")
        out["n_scenes"] = result["n_scenes"]
        out[name] = result
    return out


def evaluate_checkpoint(checkpoint: Union[str, Path], cfg: RunConfig,
                        data: Union[str, Path, None] = None, split: str = "test",
                        max_scenes: int = 0, views: Optional[int] = None,
                        device: Union[str, torch.device] = "cpu") -> dict:
    """One checkpoint (any directory ``physgm.model.load_model`` reads) → the flat figures
    ``{psnr, material_acc, E_mae_log10, nu_mae, loss, n_scenes, annotator: {…}, split,
    checkpoint, data}``."""
    model, _ = load_model(checkpoint, device)
    res = evaluate_models({"model": model}, cfg, data, split, max_scenes, views, device)
    flat = dict(res["model"])
    flat.update(annotator=res["annotator"], split=split, checkpoint=str(checkpoint),
                data=str(data or cfg.data.path))
    return flat


def mlflow_metrics(result: Mapping, prefix: str = "eval") -> dict[str, float]:
    """Flat figures of ``evaluate_checkpoint`` → ``{prefix}/psnr``, …,
    ``{prefix}/material_acc/v<V>``, ``{prefix}/annotator/material_acc``, …"""
    out = {f"{prefix}/{k}": float(result[k]) for k in METRICS if k in result}
    out.update({f"{prefix}/{k}": float(v) for k, v in result.items()
                if k.startswith("material_acc/v")})
    out.update({f"{prefix}/annotator/{k}": float(v) for k, v in result["annotator"].items()})
    return out


def format_report(result: Mapping) -> str:
    """A small table: figure | model | annotator."""
    names = {"psnr": "novel-view PSNR [dB] ↑", "psnr_black": "  all-black views [dB]",
             "depth_mae": "input-view depth MAE [m] ↓",
             "material_acc": "material accuracy ↑",
             "E_mae_log10": "log10 E MAE ↓", "nu_mae": "ν MAE ↓"}
    lines = [f"{result['split']} split, {result['n_scenes']} scenes, {result['checkpoint']}",
             f"{'figure':<26}{'model':>10}{'annotator':>12}"]
    for key in (k for k in METRICS if k in result):
        ann = result["annotator"].get(key)
        lines.append(f"{names[key]:<26}{result[key]:>10.4f}"
                     + (f"{ann:>12.4f}" if ann is not None else f"{'—':>12}"))
    for key in sorted((k for k in result if k.startswith("material_acc/v")),
                      key=lambda k: int(k.rsplit("v", 1)[1])):
        v = key.rsplit("v", 1)[1]
        label = f"  at {v} view{'s' if v != '1' else ''} ({int(result[f'n_scenes/v{v}'])})"
        lines.append(f"{label:<26}{result[key]:>10.4f}")
    return "\n".join(lines)
