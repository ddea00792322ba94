"""Held-out validation against the TRUE physical parameters (never the annotator's labels).

Per scene: novel-view PSNR of the predicted Gaussians rendered into the target views,
whether the most probable material is the true one, |log10 E_pred − log10 E_true| and
|ν_pred − ν_true|. The prediction is the policy's mode (argmax material, its μ), mapped to
SI units and clipped into that material's range, as ``PhysicsDistribution.mean_params``
does. The annotator's labels on the same scenes are scored the same way, so the model can
be compared with the supervision it learned from. ``material_by_views`` scores material
accuracy again at each input view count of ``pretrain.report_views`` (1, 2, 4).

    PSNR = −10 log10(mean((rgb − target)²))   [dB], per target image, RGB in [0, 1]
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Optional

import numpy as np
import torch

from physgm.materials import MATERIALS, NORM, PARAM_NAMES, PARAM_RANGES
from pretrain.step import input_depth, pretrain_step, to_device

E_SLOT, NU_SLOT = PARAM_NAMES.index("E"), PARAM_NAMES.index("nu")


def psnr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-image PSNR [dB] of pred, target (N, H, W, 3) in [0, 1] → (N,)."""
    mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(eps))


def log10_E_and_nu(material: torch.Tensor, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """material (N,) long, z (N, P) normalised → (log10 E [Pa], ν), each (N,), clipped into
    each scene's material range."""
    mats = material.long().cpu().numpy()
    zz = z.detach().float().cpu().numpy()
    (ce, he), (cn, hn) = NORM["E"], NORM["nu"]
    log_e = ce + he * zz[:, E_SLOT]
    nu = cn + hn * zz[:, NU_SLOT]
    lo_e = np.array([math.log10(PARAM_RANGES[MATERIALS[m]]["E"][0]) for m in mats])
    hi_e = np.array([math.log10(PARAM_RANGES[MATERIALS[m]]["E"][1]) for m in mats])
    lo_n = np.array([PARAM_RANGES[MATERIALS[m]]["nu"][0] for m in mats])
    hi_n = np.array([PARAM_RANGES[MATERIALS[m]]["nu"][1] for m in mats])
    return np.clip(log_e, lo_e, hi_e), np.clip(nu, lo_n, hi_n)


def physics_errors(pred_material: torch.Tensor, pred_z: torch.Tensor,
                   true_material: torch.Tensor, true_z: torch.Tensor,
                   pred_mask: Optional[torch.Tensor] = None) -> dict[str, np.ndarray]:
    """Per-scene scores of a material/parameter guess against the truth.

    Returns ``correct`` (N,) bool, ``E_err_log10`` (N,) |Δ log10 E| and ``nu_err`` (N,)
    |Δν|; an error is NaN where ``pred_mask`` (N, P) says the guess has no value."""
    pl, pn = log10_E_and_nu(pred_material, pred_z)
    tl, tn = log10_E_and_nu(true_material, true_z)
    e_err, nu_err = np.abs(pl - tl), np.abs(pn - tn)
    if pred_mask is not None:
        m = pred_mask.bool().cpu().numpy()
        e_err = np.where(m[:, E_SLOT], e_err, np.nan)
        nu_err = np.where(m[:, NU_SLOT], nu_err, np.nan)
    correct = (pred_material.long().cpu() == true_material.long().cpu()).numpy()
    return {"correct": correct, "E_err_log10": e_err, "nu_err": nu_err}


def _mean(values: list[np.ndarray]) -> float:
    if not values:
        return float("nan")
    v = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in values])
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


# The held-out figures ``validate`` returns beside the loss (``psnr_black``: the baseline that
# predicts every target pixel black).
# ``depth_mae``: mean |z − stored z| [m] of the input views' per-pixel Gaussians on the object
# (whether the Gaussians of the views land on one surface).
METRICS = ("psnr", "psnr_black", "depth_mae", "material_acc", "E_mae_log10", "nu_mae")


def summarize(per_scene: Mapping[str, list[np.ndarray]]) -> dict[str, float]:
    """Lists of per-scene arrays → ``material_acc``, ``E_mae_log10``, ``nu_mae`` (+ ``psnr``,
    ``psnr_black`` and ``depth_mae`` when present)."""
    out = {"material_acc": _mean(per_scene["correct"]),
           "E_mae_log10": _mean(per_scene["E_err_log10"]),
           "nu_mae": _mean(per_scene["nu_err"])}
    for key in ("psnr", "psnr_black", "depth_mae"):
        if per_scene.get(key):
            out[key] = _mean(per_scene[key])
    return out


@torch.no_grad()
def validate(model: Callable, batches: Iterable[Mapping], device: torch.device | str = "cpu",
             dtype: Optional[torch.dtype] = None, background=None, backend: str = "auto",
             tile_size: int = 16, max_scenes: int = 0, loss_weights=None) -> dict:
    """Score ``model`` (PhysGM or an engine calling it) and the annotator on held-out batches.

    Returns ``{"psnr", "psnr_black", "depth_mae", "material_acc", "E_mae_log10", "nu_mae", "loss",
    "n_scenes", "annotator": {"material_acc", "E_mae_log10", "nu_mae"}}`` (means over scenes;
    PSNR over target images; ``psnr_black``: the baseline that predicts every target pixel
    black, so a model whose Gaussians vanished scores ≈ that; ``depth_mae`` [m] per scene over
    its input views' object pixels, absent without stored depth). ``max_scenes`` > 0 stops
    after the batch that reaches that many scenes."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    ours = {"correct": [], "E_err_log10": [], "nu_err": [], "psnr": [], "psnr_black": [],
            "depth_mae": []}
    annot = {"correct": [], "E_err_log10": [], "nu_err": []}
    losses, n = [], 0
    try:
        for batch in batches:
            batch = to_device(batch, device)
            out = pretrain_step(model, batch, loss_weights, background, backend, tile_size, dtype)
            target = batch["target_images"].permute(0, 1, 3, 4, 2)
            flat = target.flatten(0, 1)
            ours["psnr"].append(psnr(out.rgb.flatten(0, 1), flat).cpu().numpy())
            ours["psnr_black"].append(psnr(torch.zeros_like(flat), flat).cpu().numpy())
            zs = input_depth(out.out.gaussians, batch)
            if zs is not None:
                z_pred, z_true, known_z = zs
                err = ((z_pred - z_true).abs() * known_z).flatten(1).sum(1)
                ours["depth_mae"].append((err / known_z.flatten(1).sum(1).clamp_min(1))
                                         .cpu().numpy()[known_z.flatten(1).any(1).cpu().numpy()])
            losses.append(float(out.loss))
            mat, z = _float_mode(out.out.physics)
            known = batch["true_material"] >= 0            # real scenes may lack the truth
            truth = (batch["true_material"][known], batch["true_params_z"][known])
            for k, v in physics_errors(mat[known], z[known], *truth).items():
                ours[k].append(v)
            labelled = batch["material"][known] >= 0
            for k, v in physics_errors(batch["material"][known].clamp_min(0),
                                       batch["params_z"][known], *truth,
                                       pred_mask=batch["params_mask"][known]).items():
                annot[k].append(v[labelled.cpu().numpy()])
            n += int(batch["images"].shape[0])
            if max_scenes and n >= max_scenes:
                break
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    result = summarize(ours)
    result.update(loss=float(np.mean(losses)) if losses else float("nan"), n_scenes=n,
                  annotator=summarize(annot))
    return result


@torch.no_grad()
def material_by_views(model: Callable, dataset, views: Iterable[int], batch_size: int,
                      device: torch.device | str = "cpu", dtype: Optional[torch.dtype] = None,
                      max_scenes: int = 0) -> dict[str, float]:
    """Material accuracy (argmax against the TRUE material) of ``model`` on ``dataset`` (a
    ``SceneDataset``, read as ``dataset[(index, V)]``) with V input views, for each V of
    ``views`` → ``{"material_acc/v<V>": accuracy}``, and ``"n_scenes/v<V>"``: the scenes
    scored (those with the truth and at least V stored views; the first ``max_scenes`` of
    the dataset when > 0). A V that no scene can show is left out."""
    from physgm.data.dataset import collate_views

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    n = len(dataset) if not max_scenes else min(len(dataset), int(max_scenes))
    out: dict[str, float] = {}
    try:
        for v in views:
            correct: list[np.ndarray] = []
            for start in range(0, n, batch_size):
                items = [dataset[(i, int(v))] for i in range(start, min(n, start + batch_size))]
                items = [it for it in items
                         if it["images"].shape[0] == v and int(it["true_material"]) >= 0]
                if not items:
                    continue
                batch = to_device(collate_views(items), device)
                images, plucker = batch["images"], batch["plucker"]
                if dtype is not None:
                    images, plucker = images.to(dtype), plucker.to(dtype)
                mat, _ = _float_mode(model(images, plucker).physics)
                correct.append((mat.cpu() == batch["true_material"].cpu()).numpy())
            if correct:
                out[f"material_acc/v{v}"] = _mean(correct)
                out[f"n_scenes/v{v}"] = float(sum(len(c) for c in correct))
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return out


def _float_mode(physics):
    from physgm.model.distribution import PhysicsDistribution

    return PhysicsDistribution(physics.logits.float(), physics.mu.float(),
                               physics.log_var.float()).mode()
