"""DeepSpeed engine for pretraining, configured from ``PretrainConfig``.

- ZeRO stage ``zero_stage``; bf16 mixed precision on GPU when ``bf16`` (fp16 is not offered:
  it does not run on the CPU accelerator), fp32 on CPU;
- AdamW with ``"torch_adam": true`` (PyTorch's kernel, so no C++ op is compiled on CPU),
  weight decay on matrices only (biases, norms, tokens and embeddings are not decayed);
- gradient accumulation ``grad_accum`` micro-batches of ``batch_size`` per worker and
  clipping of the global gradient norm at ``grad_clip``;
- the warm-up + cosine schedule of ``pretrain.schedule`` as a client scheduler, stepped by
  the engine once per optimizer step.

``build_plain`` gives the same optimizer and schedule without DeepSpeed (benchmark peer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from physgm.config import PretrainConfig
from pretrain.schedule import warmup_cosine
from runtime.distributed import import_deepspeed, init_process_group


def on_gpu(cfg: PretrainConfig) -> bool:
    """True when the config asks for a GPU and one is visible to this process."""
    return bool(cfg.use_gpu) and torch.cuda.is_available()


def compute_dtype(cfg: PretrainConfig) -> Optional[torch.dtype]:
    """bf16 on GPU when enabled, else None (the model's own fp32)."""
    return torch.bfloat16 if on_gpu(cfg) and cfg.bf16 else None


def deepspeed_config(cfg: PretrainConfig, world_size: int, gpu: bool) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``world_size`` data-parallel workers."""
    if world_size < 1:
        raise ValueError(f"world_size must be ≥ 1, got {world_size}")
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": bool(gpu and cfg.bf16)},
        "fp16": {"enabled": False},
        "optimizer": {"type": "AdamW",
                      "params": {"lr": cfg.lr, "betas": list(cfg.betas), "eps": cfg.eps,
                                 "weight_decay": cfg.weight_decay, "torch_adam": True}},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


HEAD_PREFIXES = ("physics_head.", "photometric.")
NO_DECAY_SUFFIXES = ("global_tokens", "view_embed", "cls_token", "register_tokens", "pos_embed")


def param_groups(model: nn.Module, weight_decay: float, lr: Optional[float] = None,
                 head_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: matrices/kernels (ndim ≥ 2) decay, everything else does not. With
    ``head_lr_scale`` ≠ 1 the physics head's parameters and the photometric token's
    projection (what only the physics head reads) get groups of their own at
    ``lr · head_lr_scale`` (the warm-up/cosine schedule scales every group alike)."""
    split_head = head_lr_scale != 1.0
    if split_head and lr is None:
        raise ValueError("param_groups: head_lr_scale needs the base lr")
    groups: dict[tuple[bool, bool], list] = {}  # (head, flat) → parameters, in that order
    for name, p in model.named_parameters():
        if p.requires_grad:
            head = split_head and name.startswith(HEAD_PREFIXES)
            flat = p.ndim < 2 or name.endswith(NO_DECAY_SUFFIXES)
            groups.setdefault((head, flat), []).append(p)
    return [{"params": groups[(head, flat)], "weight_decay": 0.0 if flat else weight_decay,
             **({"lr": lr * head_lr_scale} if head else {})}
            for head, flat in sorted(groups)]


@dataclass(eq=False)
class Engine:
    """What the train loop needs: ``model`` to call (the DeepSpeed engine), ``module`` (the
    bare PhysGM), the DeepSpeed engine itself, the LR scheduler and the input dtype."""

    model: Any
    module: nn.Module
    ds: Any
    scheduler: Any
    dtype: Optional[torch.dtype]
    device: torch.device

    def backward_step(self, loss: torch.Tensor) -> None:
        """Backward and (at the accumulation boundary) clip, update and schedule."""
        self.ds.backward(loss)
        self.ds.step()

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    @property
    def at_boundary(self) -> bool:
        return bool(self.ds.is_gradient_accumulation_boundary())


def build_engine(model: nn.Module, cfg: PretrainConfig, total_steps: Optional[int] = None
                 ) -> Engine:
    """Wrap ``model`` in a DeepSpeed engine (initialising torch.distributed if needed).

    Inside Ray Train the process group already exists; alone, a one-process group (gloo
    on CPU) is made (``runtime.distributed.init_process_group``)."""
    gpu = on_gpu(cfg)
    deepspeed = import_deepspeed(gpu)
    init_process_group(gpu)
    world = torch.distributed.get_world_size()
    if gpu:
        device = torch.device("cuda", torch.cuda.current_device())
        model = model.to(device)
    else:
        device = torch.device("cpu")
    steps = total_steps if total_steps is not None else cfg.steps
    ds, _, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=param_groups(model, cfg.weight_decay, cfg.lr,
                                                    cfg.head_lr_scale),
        config=deepspeed_config(cfg, world, gpu),
        lr_scheduler=lambda opt: warmup_cosine(opt, cfg.warmup_steps, steps, cfg.min_lr_ratio))
    return Engine(model=ds, module=ds.module, ds=ds, scheduler=scheduler,
                  dtype=compute_dtype(cfg), device=device)


def build_plain(model: nn.Module, cfg: PretrainConfig, total_steps: Optional[int] = None):
    """The same AdamW and schedule as ``build_engine``, in plain PyTorch:
    (optimizer, scheduler). Clip with ``torch.nn.utils.clip_grad_norm_(…, cfg.grad_clip)``."""
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.head_lr_scale)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    steps = total_steps if total_steps is not None else cfg.steps
    return opt, warmup_cosine(opt, cfg.warmup_steps, steps, cfg.min_lr_ratio)
