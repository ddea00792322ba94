"""The DPO learner: a DeepSpeed engine on the physics head only, with a frozen reference
copy of the pretrained head. Runs inside a Ray actor (``DPOLearner``) or in-process
(tests). Backbone and Gaussian head are frozen and never loaded here: the learner sees
each scene through its cached global tokens (G, D) from the frozen encoder."""
from __future__ import annotations

import copy
import os
import socket
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from learner.loss import dpo_loss, preference_metrics
from physgm.config import DPOConfig, ModelConfig
from physgm.model.physics_head import PhysicsHead
from pretrain.checkpoint import capture_rng, restore_rng


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_single_process_dist(use_gpu: bool) -> None:
    """torch.distributed world of one (DeepSpeed needs a process group even alone)."""
    import deepspeed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    # A world of one: never inherit a port another process group listens on, and leave no
    # rendezvous address behind for later process groups or subprocesses.
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
           "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT")}  # ranks stay set:
    # deepspeed.initialize reads LOCAL_RANK later
    os.environ.update(env)
    os.environ.pop("LOCAL_SIZE", None)  # on CPU it leaks shared memory (RECIPES.md)
    try:
        deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo", verbose=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def deepspeed_config(cfg: DPOConfig, use_gpu: bool) -> dict:
    """DeepSpeed config of the learner: AdamW (torch implementation, no C++ op build),
    ZeRO stage from config, bf16 on GPU and fp32 on CPU, gradient clipping."""
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_pairs,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.grad_clip,
        "optimizer": {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                                  "torch_adam": True}},
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": bool(use_gpu)},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


def pairs_to_tensors(pairs, tokens: dict, device) -> dict:
    """A list of ``actors.rollout.Pair`` → batched tensors (tokens (B, G, D), materials (B,),
    z (B, P) for chosen and rejected)."""
    return {
        "tokens": torch.stack([torch.tensor(tokens[p.scene_id]) for p in pairs]).float().to(device),
        "chosen_m": torch.tensor([p.chosen_material for p in pairs], device=device),
        "chosen_z": torch.as_tensor(np.stack([p.chosen_z for p in pairs]), device=device).float(),
        "rejected_m": torch.tensor([p.rejected_material for p in pairs], device=device),
        "rejected_z": torch.as_tensor(np.stack([p.rejected_z for p in pairs]), device=device).float(),
    }


class LearnerCore:
    """Policy (trainable physics head in a DeepSpeed engine) + frozen reference head."""

    def __init__(self, head_state: dict, model_cfg: ModelConfig, cfg: DPOConfig,
                 tokens: dict, seed: int = 0, use_gpu: bool = False):
        import deepspeed

        if use_gpu and not torch.cuda.is_available():
            raise RuntimeError("dpo.learner_gpus > 0 but no CUDA device is visible")
        torch.manual_seed(seed)
        self.cfg, self.tokens = cfg, tokens
        self.device = torch.device("cuda" if use_gpu else "cpu")
        policy = PhysicsHead(model_cfg)
        policy.load_state_dict(head_state)
        self.reference = copy.deepcopy(policy).to(self.device).eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        init_single_process_dist(use_gpu)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=policy, model_parameters=[p for p in policy.parameters() if p.requires_grad],
            config=deepspeed_config(cfg, use_gpu))
        self.step_count = 0

    def _logps(self, head, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = batch["tokens"].to(next(head.parameters()).dtype)
        dist = head(tokens).distribution()
        return (dist.log_prob(batch["chosen_m"], batch["chosen_z"]),
                dist.log_prob(batch["rejected_m"], batch["rejected_z"]))

    def step(self, pairs: list) -> dict:
        """``dpo.updates_per_batch`` DPO updates on a batch of pairs → TRL-style metrics of
        the first one (measured before any update on this batch: on fresh pairs they say
        how well the policy already prefers the winners) plus ``loss_last``."""
        batch = pairs_to_tensors(pairs, self.tokens, self.device)
        self.engine.train()
        with torch.no_grad():
            ref_w, ref_l = self._logps(self.reference, batch)
        metrics = {}
        for update in range(self.cfg.updates_per_batch):
            pi_w, pi_l = self._logps(self.engine, batch)
            losses, chosen, rejected = dpo_loss(pi_w.float(), pi_l.float(), ref_w.float(),
                                                ref_l.float(), beta=self.cfg.beta,
                                                loss_type=self.cfg.loss_type,
                                                label_smoothing=self.cfg.label_smoothing)
            total = losses.mean()
            if self.cfg.rpo_alpha > 0:  # TRL's rpo_alpha: + α · NLL of the chosen sets
                total = total - self.cfg.rpo_alpha * pi_w.float().mean()
            self.engine.backward(total)
            self.engine.step()
            if update == 0:
                metrics = preference_metrics(losses.detach(), chosen, rejected)
                metrics["logps/chosen"] = float(pi_w.detach().mean())
                metrics["logps/rejected"] = float(pi_l.detach().mean())
        metrics["loss_last"] = float(losses.detach().mean())
        self.step_count += 1
        return metrics

    def weights(self) -> dict:
        """Physics-head weights as CPU fp32 tensors (what actors load)."""
        return {k: v.detach().float().cpu().clone() for k, v in self.engine.module.state_dict().items()}

    def save(self, directory: str, client_state: Optional[dict] = None) -> None:
        """DeepSpeed checkpoint (head, optimizer) + step + RNG states, under ``directory``."""
        state = {"step_count": self.step_count, "rng": capture_rng(), **(client_state or {})}
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.engine.save_checkpoint(directory, tag="learner", client_state=state)

    def load(self, directory: str) -> dict:
        path, state = self.engine.load_checkpoint(directory, tag="learner")
        if path is None:
            raise FileNotFoundError(f"no learner checkpoint under {directory}")
        self.step_count = int(state["step_count"])
        restore_rng(state["rng"])
        return state
