"""Direct Preference Optimisation loss (Rafailov et al. 2023) in TRL's convention.

With policy log-probabilities π_w, π_l of the chosen (winner) and rejected (loser)
parameter sets and reference log-probabilities ref_w, ref_l (constants):

    h = (π_w − ref_w) − (π_l − ref_l)
    sigmoid: L = −(1 − ε) · logsigmoid(β h) − ε · logsigmoid(−β h)   (ε = label_smoothing)
    ipo:     L = (h − 1 / (2β))²                                     (Azar et al. 2023)
    hinge:   L = relu(1 − β h)                                       (SLiC)

Implicit rewards: chosen = β (π_w − ref_w), rejected = β (π_l − ref_l), both detached.
All inputs and outputs are per-example tensors of shape (B,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example DPO losses and implicit rewards.

    Args:
        policy_*_logps: (B,) log π(x | scene) of the chosen / rejected parameter sets.
        ref_*_logps: (B,) the same under the frozen reference policy (detached here).
        beta: inverse temperature β > 0.
        loss_type: "sigmoid" (DPO), "ipo" or "hinge".
        label_smoothing: ε in [0, 0.5), conservative DPO; only for "sigmoid".
    Returns:
        (losses (B,), chosen_rewards (B,), rejected_rewards (B,)); rewards are detached.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got '{loss_type}'")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing > 0 and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to the sigmoid loss only, not '{loss_type}'")
    ref_chosen = ref_chosen_logps.detach()
    ref_rejected = ref_rejected_logps.detach()
    chosen_logratios = policy_chosen_logps - ref_chosen
    rejected_logratios = policy_rejected_logps - ref_rejected
    h = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = (-(1.0 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    elif loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = torch.relu(1.0 - beta * h)
    chosen_rewards = (beta * chosen_logratios).detach()
    rejected_rewards = (beta * rejected_logratios).detach()
    return losses, chosen_rewards, rejected_rewards


def preference_metrics(losses: torch.Tensor, chosen_rewards: torch.Tensor,
                       rejected_rewards: torch.Tensor) -> dict[str, float]:
    """TRL-style scalars: loss, rewards/{chosen,rejected,margins,accuracies}."""
    margins = chosen_rewards - rejected_rewards
    return {"loss": float(losses.mean()), "rewards/chosen": float(chosen_rewards.mean()),
            "rewards/rejected": float(rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()),
            "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean())}
