"""Save and load PhysGM weights together with the ``ModelConfig`` that builds them.

A checkpoint is one torch file (``*.pt``/``*.pth``) or a directory holding ``model.pt``
(plus a readable ``config.json``). The payload: ``format`` (int), ``version`` (physgm
version that wrote it), ``model_config`` (JSON-able dict), ``run_config`` (the whole
``RunConfig`` when one was given), ``has_backbone`` and ``state_dict``, and ``extra``
(plain data: step, policy version, metrics...). A frozen DINOv3 backbone is not stored by
default (it is 300 M parameters that never change): loading reads it again from
``model.backbone_checkpoint``. Files are written atomically (temp file + rename) so a
reader never sees half a checkpoint.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch

import physgm
from physgm.config import ModelConfig, RunConfig
from physgm.model.backbone import CheckpointError
from physgm.model.physgm_model import PhysGM

FORMAT = 1
FILE_NAME = "model.pt"
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def checkpoint_file(path: Union[str, Path]) -> Path:
    """The torch file of a checkpoint: ``path`` itself for *.pt/*.pth, else path/model.pt."""
    path = Path(path)
    return path if path.suffix in (".pt", ".pth") else path / FILE_NAME


def _check_plain(value: Any, where: str = "extra") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(f"{where} is a {type(value).__name__}; checkpoint extras must be plain "
                        "data (dict, list, str, number, bool, None, tensor)")


def _atomic_save(obj: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(path: Union[str, Path], model: PhysGM, cfg: Union[ModelConfig, RunConfig],
               extra: Optional[dict] = None, include_backbone: Optional[bool] = None,
               state_dict: Optional[dict] = None) -> Path:
    """Write ``model`` and its config to ``path`` (a directory, or a *.pt file); returns the
    torch file written. ``include_backbone`` defaults to False for dinov3, True otherwise.
    ``state_dict``: the weights to write instead of ``model.state_dict()`` (e.g. gathered
    from a ZeRO-3 engine, whose module holds only its partition)."""
    model_cfg = cfg.model if isinstance(cfg, RunConfig) else cfg
    if include_backbone is None:
        include_backbone = model_cfg.backbone != "dinov3"
    if not include_backbone and model_cfg.backbone != "dinov3":
        raise ValueError("include_backbone=False only applies to the frozen dinov3 backbone "
                         "(its weights are re-read from model.backbone_checkpoint); a trained "
                         "vit backbone must be saved")
    extra = dict(extra or {})
    _check_plain(extra)
    weights = model.state_dict() if state_dict is None else state_dict
    state = {k: v.detach().cpu().clone() for k, v in weights.items()
             if include_backbone or not k.startswith("backbone.")}
    payload = {
        "format": FORMAT,
        "version": physgm.__version__,
        "saved_at": time.time(),
        "model_config": model_cfg.model_dump(mode="json"),
        "run_config": cfg.model_dump(mode="json") if isinstance(cfg, RunConfig) else None,
        "has_backbone": include_backbone,
        "state_dict": state,
        "extra": extra,
    }
    target = checkpoint_file(path)
    _atomic_save(payload, target)
    if target.name == FILE_NAME:
        info = {k: payload[k] for k in ("format", "version", "model_config", "has_backbone")}
        info["extra"] = {k: v for k, v in extra.items() if not isinstance(v, torch.Tensor)}
        (target.parent / "config.json").write_text(json.dumps(info, indent=2, default=str))
    return target


def read_checkpoint(path: Union[str, Path]) -> dict:
    """The raw payload (see the module docstring), with its format checked."""
    target = checkpoint_file(path)
    if not target.is_file():
        raise FileNotFoundError(f"no PhysGM checkpoint at {target} (pass a checkpoint "
                                f"directory containing {FILE_NAME}, or the .pt file itself)")
    payload = torch.load(target, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "model_config" not in payload:
        raise CheckpointError(f"{target} is not a PhysGM checkpoint (written by save_model)")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{target} has checkpoint format {payload.get('format')}, this "
                              f"physgm ({physgm.__version__}) reads format {FORMAT}")
    return payload


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu"
               ) -> tuple[PhysGM, ModelConfig]:
    """Rebuild the model saved at ``path`` on ``device``, in eval mode → (model, ModelConfig)."""
    payload = read_checkpoint(path)
    cfg = ModelConfig.model_validate(payload["model_config"])
    model = PhysGM(cfg, load_backbone=not payload["has_backbone"])
    try:
        result = model.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{checkpoint_file(path)} does not match its own model config: "
                              f"{err}") from None
    missing = [k for k in result.missing_keys
               if payload["has_backbone"] or not k.startswith("backbone.")]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{checkpoint_file(path)} does not match its own model config: "
                              f"missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}")
    return model.to(device).eval(), cfg
