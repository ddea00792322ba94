"""One supervised pretraining step as a pure function of a model and a batch (no Ray, no
DeepSpeed, no I/O): predict per-pixel Gaussians and the physics distribution, render the
Gaussians into the held-out target views, and score everything with
``physgm.model.losses.physgm_losses``.

Batch (``physgm.data.dataset.collate_views``), B scenes, V input views, T target views:

- ``images`` (B, V, 3, H, W) float in [0, 1]; ``plucker`` (B, V, 6, H, W);
  ``K`` (B, V, 3, 3) [px]; ``c2w`` (B, V, 4, 4) [m] (OpenCV axes);
- ``target_images`` (B, T, 3, Ht, Wt) in [0, 1]; ``target_alpha`` (B, T, 1, Ht, Wt) in
  [0, 1]; ``target_K`` (B, T, 3, 3); ``target_c2w`` (B, T, 4, 4);
- ``material`` (B,) long and ``params_z`` (B, P), ``params_mask`` (B, P) bool: the
  annotator's labels, the only supervision of the physics head;
- optional ``depth`` (B, V, 1, H, W) [m]: the input views' expected camera-frame z (0 where
  unknown). Where it is known, the per-pixel Gaussians' z is pulled to it (loss term
  ``depth``): without it the quickstart head switched every Gaussian off within 50 steps
  (depth at a bound, opacity < 1e-4; docs/results.md), and the Gaussians of two views did
  not meet on one surface.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Mapping, Optional

import torch
import torch.nn.functional as F

from physgm.camera import Camera
from physgm.model import PhysGMOutput, PixelGaussians, pixels_to_gaussians
from physgm.model.losses import DEFAULT_LOSS_WEIGHTS, physgm_losses
from physgm.render import rasterize

BATCH_KEYS = ("images", "plucker", "K", "c2w", "target_images", "target_alpha", "target_K",
              "target_c2w", "material", "params_z", "params_mask")


@dataclass(eq=False)
class StepOutput:
    """loss: weighted total (scalar, differentiable); terms: every loss term (detached
    floats are in ``scalars()``); rgb (B, T, Ht, Wt, 3) and alpha (B, T, Ht, Wt): the
    renders of the target views (None on a physics-only step); out: the model's output."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    rgb: Optional[torch.Tensor]
    alpha: Optional[torch.Tensor]
    out: PhysGMOutput

    def scalars(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in self.terms.items()}


def check_batch(batch: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError naming the missing keys or mismatched shapes."""
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}; build batches with "
                         "physgm.data.dataset.collate_views")
    b, v = batch["images"].shape[:2]
    t = batch["target_images"].shape[1]
    expect = {"plucker": (b, v), "K": (b, v), "c2w": (b, v), "target_alpha": (b, t),
              "target_K": (b, t), "target_c2w": (b, t), "material": (b,), "params_z": (b,),
              "params_mask": (b,)}
    for key, lead in expect.items():
        if tuple(batch[key].shape[:len(lead)]) != lead:
            raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, expected "
                             f"leading dims {lead} (images {tuple(batch['images'].shape)})")


def to_device(batch: Mapping[str, object], device: torch.device | str) -> dict:
    """Tensors of ``batch`` moved to ``device``; other values kept as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def input_rays(K: torch.Tensor, c2w: torch.Tensor, width: int, height: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera centres (V, 3) and unit pixel-ray directions (V, H, W, 3) of one scene's input
    views, K (V, 3, 3), c2w (V, 4, 4)."""
    cams = [Camera(K[v], c2w[v], width, height) for v in range(K.shape[0])]
    origins = torch.stack([c.position for c in cams])
    directions = torch.stack([c.rays()[1] for c in cams])
    return origins, directions


def depth_weight(loss_weights: Optional[Mapping[str, float]]) -> float:
    """The weight of the ``depth`` term under ``loss_weights`` (default where not named)."""
    return float({**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}["depth"])


def view_cosines(K: torch.Tensor, c2w: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """cos of the angle between each pixel's ray and its camera's optical axis, (B, V, H, W)
    for K (B, V, 3, 3), c2w (B, V, 4, 4): camera-frame z = ray distance · cos."""
    out = torch.empty(K.shape[0], K.shape[1], height, width, device=K.device)
    for i in range(K.shape[0]):
        _, directions = input_rays(K[i], c2w[i], width, height)        # (V, H, W, 3)
        forward = c2w[i, :, :3, 2].to(directions)                       # (V, 3)
        out[i] = torch.einsum("vhwc,vc->vhw", directions, forward)
    return out


def input_depth(pix: PixelGaussians, batch: Mapping[str, torch.Tensor]
                ) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(predicted z, stored z, mask), each (B, V, H, W), of the input views' per-pixel
    Gaussians [m]; None when the batch carries no depth or none of it is known."""
    target = batch.get("depth")
    if target is None:
        return None
    target = target[:, :, 0].float()
    mask = target > 0
    if not bool(mask.any()):
        return None
    b, v, h, w = pix.depth.shape
    if tuple(target.shape) != (b, v, h, w):
        raise ValueError(f"batch['depth'] must be (B, V, 1, H, W) = {(b, v, 1, h, w)}, got "
                         f"{tuple(batch['depth'].shape)}")
    z = pix.depth.float() * view_cosines(batch["K"], batch["c2w"], w, h)
    return z, target, mask


def _float32(pix: PixelGaussians) -> PixelGaussians:
    return PixelGaussians(**{f.name: getattr(pix, f.name).float() for f in fields(pix)})


def render_views(pix: PixelGaussians, batch: Mapping[str, torch.Tensor], K: torch.Tensor,
                 c2w: torch.Tensor, width: int, height: int,
                 background: Optional[tuple[float, float, float]] = None,
                 backend: str = "auto", tile_size: int = 16
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render each scene's per-pixel Gaussians (all V·H·W of them) into its cameras
    K (B, T, 3, 3), c2w (B, T, 4, 4) at ``width`` × ``height``.

    Returns rgb (B, T, height, width, 3) and alpha (B, T, height, width), differentiable in
    ``pix``; the Gaussians sit on the rays of the input cameras ``batch["K"]``, ``["c2w"]``."""
    pix = _float32(pix)
    b, v, h, w = pix.depth.shape
    rgbs, alphas = [], []
    for i in range(b):
        origins, directions = input_rays(batch["K"][i], batch["c2w"][i], w, h)
        gaussians = pixels_to_gaussians(pix, origins, directions, index=i)
        for t in range(K.shape[1]):
            cam = Camera(K[i, t], c2w[i, t], width, height)
            r = rasterize(gaussians, cam.to(pix.depth.device), background=background,
                          backend=backend, tile_size=tile_size)
            rgbs.append(r.rgb)
            alphas.append(r.alpha)
    t = K.shape[1]
    return (torch.stack(rgbs).view(b, t, height, width, 3),
            torch.stack(alphas).view(b, t, height, width))


def resize_targets(batch: Mapping[str, torch.Tensor], size: int) -> dict:
    """The batch with its target views (and, for input targets, its input views' copies
    ``loss_images``/``loss_alpha``) at size × size [px]: images and masks area-averaged,
    intrinsics scaled. Unchanged if they already are that size."""
    def scaled(K: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        K = K.clone()
        K[..., 0, :] *= size / hw[1]
        K[..., 1, :] *= size / hw[0]
        return K

    def area(x: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W)
        b, t = x.shape[:2]
        y = F.interpolate(x.flatten(0, 1), size=(size, size), mode="area")
        return y.view(b, t, *y.shape[1:])

    out = dict(batch)
    hw = tuple(batch["target_images"].shape[-2:])
    if hw != (size, size):
        out.update(target_images=area(batch["target_images"]),
                   target_alpha=area(batch["target_alpha"]),
                   target_K=scaled(batch["target_K"], hw))
    hw_in = tuple(batch["images"].shape[-2:])
    if hw_in != (size, size):
        out["loss_images"] = area(batch["images"])
        out["loss_K"] = scaled(batch["K"], hw_in)
        if "alpha" in batch:
            out["loss_alpha"] = area(batch["alpha"])
    return out


def pretrain_step(model: Callable[..., PhysGMOutput], batch: Mapping[str, torch.Tensor],
                  loss_weights: Optional[Mapping[str, float]] = None,
                  background: Optional[tuple[float, float, float]] = None,
                  backend: str = "auto", tile_size: int = 16,
                  compute_dtype: Optional[torch.dtype] = None,
                  input_targets: int = 0, alpha_loss: str = "bce",
                  render_size: Optional[int] = None, render: bool = True,
                  depth: bool = True) -> StepOutput:
    """Forward pass and losses of one batch (call ``backward`` on ``.loss`` yourself).

    ``model`` is a ``PhysGM`` or anything that calls it (a DeepSpeed engine);
    ``compute_dtype`` casts the inputs (bf16 engines); rendering and losses run in fp32.
    ``input_targets`` > 0 also renders that many input views and adds them to the image
    losses (rgb; alpha too when the batch carries input masks ``alpha`` (B, V, 1, H, W)):
    a pixel's own Gaussian lands on it whatever its depth, so these views pin opacity and
    colour while the novel views teach depth. ``rgb``/``alpha`` of the output are the novel
    target views only. ``alpha_loss``: "bce" or "l1" (see ``physgm.model.losses``).
    ``render_size``: render the targets at render_size² [px] (intrinsics scaled, target
    images and masks area-averaged to it): the image losses cost ∝ pixels on a CPU.
    ``render`` False: no rendering (``rgb``/``alpha`` are None): the physics losses, and the
    input views' depth loss when ``depth`` is True and the batch has depth (the Gaussian
    head then runs, ~1/3 of a physics step's cost on a CPU, rendering none).
    ``depth``: the ``depth`` term where the batch carries stored depth (module docstring) on
    a step without rendering too (a rendering step always has it); a ``depth`` weight of 0
    turns it off."""
    check_batch(batch)
    if render_size is not None:
        batch = resize_targets(batch, int(render_size))
    images, plucker = batch["images"], batch["plucker"]
    if compute_dtype is not None:
        images, plucker = images.to(compute_dtype), plucker.to(compute_dtype)
    use_depth = (render or bool(depth)) and depth_weight(loss_weights) > 0 \
        and batch.get("depth") is not None and bool((batch["depth"] > 0).any())
    out = model(images, plucker, with_gaussians=render or use_depth)
    physics, material, z, z_mask = _labelled(out.physics, batch)
    zs = input_depth(out.gaussians, batch) if use_depth else None
    pred_z, target_z, z_known = zs if zs is not None else (None, None, None)
    if not render:
        terms = physgm_losses(physics=physics, material=material, z=z, z_mask=z_mask,
                              depth=pred_z, target_depth=target_z, depth_mask=z_known,
                              weights=loss_weights)
        return StepOutput(loss=terms["total"] + 0.0 * _touch(out, model), terms=terms,
                          rgb=None, alpha=None, out=out)
    n_in = min(int(input_targets), images.shape[1])
    t = batch["target_K"].shape[1]
    ht, wt = batch["target_images"].shape[-2:]
    in_images = batch.get("loss_images", batch["images"])
    in_K, in_alpha = batch.get("loss_K", batch["K"]), batch.get("loss_alpha", batch.get("alpha"))
    if n_in and tuple(in_images.shape[-2:]) != (ht, wt):
        raise ValueError(f"input views {tuple(in_images.shape[-2:])} and target views "
                         f"{(ht, wt)} differ in size: set pretrain.input_targets=0 or "
                         "pretrain.render_size")
    K = torch.cat([batch["target_K"], in_K[:, :n_in]], 1)
    c2w = torch.cat([batch["target_c2w"], batch["c2w"][:, :n_in]], 1)
    rgb_all, alpha_all = render_views(out.gaussians, batch, K, c2w, wt, ht, background,
                                      backend, tile_size)
    target_rgb = torch.cat([batch["target_images"], in_images[:, :n_in]], 1)
    if n_in and in_alpha is not None:
        alpha, mask = alpha_all, torch.cat([batch["target_alpha"], in_alpha[:, :n_in]], 1)
    else:
        alpha, mask = alpha_all[:, :t], batch["target_alpha"]
    terms = physgm_losses(
        physics=physics, material=material, z=z, z_mask=z_mask,
        rgb=rgb_all, target_rgb=target_rgb.permute(0, 1, 3, 4, 2),
        alpha=alpha, target_mask=mask[:, :, 0], depth=pred_z, target_depth=target_z,
        depth_mask=z_known, weights=loss_weights, alpha_kind=alpha_loss)
    loss = terms["total"] + 0.0 * _touch(out)
    return StepOutput(loss=loss, terms=terms, rgb=rgb_all[:, :t], alpha=alpha_all[:, :t],
                      out=out)


def _touch(out: PhysGMOutput, model=None) -> torch.Tensor:
    """Σ of every head output, to be weighted by 0: each parameter gets a gradient (zero if
    unused) in every step. Without it a batch whose Gaussians all fall outside the target
    views, or that has no labels, leaves a head without gradients on one worker only, and
    ZeRO's gradient buckets then differ between workers (a collective size mismatch). On a
    physics-only step (no Gaussians) the Gaussian head's parameters of ``model`` (a PhysGM
    or a DeepSpeed engine around one) are touched directly, without running the head."""
    pix, phys = out.gaussians, out.physics
    parts = [phys.logits.float().sum(), phys.mu.float().sum(), phys.log_var.float().sum()]
    if pix is not None:
        parts += [getattr(pix, f.name).float().sum() for f in fields(pix)]
    else:
        head = getattr(model, "module", model).gaussian_head
        parts += [p.float().sum() for p in head.parameters() if p.requires_grad]
    return torch.stack(parts).sum()


def _labelled(physics, batch):
    """The physics outputs (fp32) and labels of the scenes that have a label (material ≥ 0;
    real captures may have none): (physics, material, z, z_mask), or four Nones."""
    keep = batch["material"] >= 0
    if not bool(keep.any()):
        return None, None, None, None
    idx = keep.nonzero().squeeze(1)
    physics = type(physics)(logits=physics.logits[idx].float(), mu=physics.mu[idx].float(),
                            log_var=physics.log_var[idx].float())
    return (physics, batch["material"][idx], batch["params_z"][idx],
            batch["params_mask"][idx])
