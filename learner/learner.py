"""The DPO learner: steps 5–6 of ``physgm.dpo`` in a DeepSpeed engine on the physics head
only, with a frozen reference copy of the pretrained head. Runs inside a Ray actor or
in-process (tests). Backbone and Gaussian head are frozen and never loaded here: the learner
sees each scene through its cached global tokens (G, D) from the frozen encoder."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from physgm.config import DPOConfig, ModelConfig
from physgm.dpo import dpo_step
from physgm.model.physics_head import PhysicsHead
from runtime.distributed import (capture_rng, full_state_dict, import_deepspeed,
                                 init_process_group, restore_rng)


def deepspeed_config(cfg: DPOConfig, bf16: bool) -> dict:
    """DeepSpeed config of the learner: AdamW (torch implementation, no C++ op build),
    ZeRO stage from config, bf16 or fp32, gradient clipping."""
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_pairs,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.grad_clip,
        "optimizer": {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                                  "torch_adam": True}},
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": bool(bf16)},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


def pairs_to_tensors(pairs, tokens: dict, device) -> dict:
    """A list of ``runtime.messages.Pair`` → batched tensors (tokens (B, G, D), materials (B,),
    z (B, P) for chosen and rejected)."""
    return {
        "tokens": torch.stack([torch.tensor(tokens[p.scene_id]) for p in pairs]).float().to(device),
        "chosen_m": torch.tensor([p.chosen_material for p in pairs], device=device),
        "chosen_z": torch.as_tensor(np.stack([p.chosen_z for p in pairs]), device=device).float(),
        "rejected_m": torch.tensor([p.rejected_material for p in pairs], device=device),
        "rejected_z": torch.as_tensor(np.stack([p.rejected_z for p in pairs]), device=device).float(),
    }


def freeze_trunk(head: PhysicsHead, trainable: str) -> None:
    """``dpo.trainable``: "head" trains every weight of the physics head; "output" only its
    two output layers (material logits; μ and log σ² of every material and parameter), so a
    pair moves only the rows of its own material: the hidden layers every material shares
    stay the pretrained ones."""
    if trainable == "head":
        return
    if trainable != "output":
        raise ValueError(f"dpo.trainable must be head or output, got {trainable!r}")
    outputs = {id(p) for layer in (head.material[-1], head.params[-1]) for p in layer.parameters()}
    for p in head.parameters():
        p.requires_grad_(id(p) in outputs)


class LearnerCore:
    """Policy (trainable physics head in a DeepSpeed engine) + frozen reference head.

    ``bf16`` (default: on GPU): the engine keeps bf16 weights; the reference is cast to the
    same dtype, so π = π_ref exactly at step 0 (a fp32 reference against a bf16 policy
    gives every pair a spurious margin)."""

    def __init__(self, head_state: dict, model_cfg: ModelConfig, cfg: DPOConfig,
                 tokens: dict, seed: int = 0, use_gpu: bool = False,
                 bf16: Optional[bool] = None):
        if use_gpu and not torch.cuda.is_available():
            raise RuntimeError("dpo.learner_gpus > 0 but no CUDA device is visible")
        deepspeed = import_deepspeed(use_gpu)
        torch.manual_seed(seed)
        self.cfg, self.tokens = cfg, tokens
        self.device = torch.device("cuda" if use_gpu else "cpu")
        bf16 = use_gpu if bf16 is None else bf16
        policy = PhysicsHead(model_cfg)
        policy.load_state_dict(head_state)
        self.reference = copy.deepcopy(policy).to(self.device).eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        freeze_trunk(policy, cfg.trainable)
        init_process_group(use_gpu)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=policy, model_parameters=[p for p in policy.parameters() if p.requires_grad],
            config=deepspeed_config(cfg, bf16))
        if bf16:
            self.reference.to(torch.bfloat16)
        self.step_count = 0

    def ready(self) -> bool:
        """True once constructed (the driver waits on it, reporting while it is pending)."""
        return True

    def _optimize(self, total: torch.Tensor) -> None:
        self.engine.backward(total)
        self.engine.step()

    def step(self, pairs: list) -> dict:
        """``dpo.updates_per_batch`` DPO updates on a batch of pairs (``physgm.dpo.dpo_step``)."""
        batch = pairs_to_tensors(pairs, self.tokens, self.device)
        self.engine.train()
        metrics = dpo_step(self.engine, self.reference, batch, self.cfg, self._optimize,
                           self.cfg.updates_per_batch)
        self.step_count += 1
        return metrics

    def weights(self) -> dict:
        """Physics-head weights as CPU fp32 tensors (what actors load), gathered whole under
        ZeRO-3."""
        return full_state_dict(self.engine)

    def publish(self) -> list:
        """Put the current weights into the object store from here and return ``[ref]``:
        the driver hands the reference on to the actors without ever fetching the weights
        (the list keeps Ray from resolving the reference on the way back)."""
        import ray

        return [ray.put(self.weights())]

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
