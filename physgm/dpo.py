"""DPO of the physics head on one page (Rafailov et al. 2023, in TRL's convention).

A scene s is its frozen encoder's global tokens t_s, its object (particles + Gaussians) and
its ground-truth video V_s. The policy π_θ(m, z | t_s) is the physics head's distribution
(material m, normalised parameters z); π_ref is a frozen copy of the pretrained head.

    1. sample    (m_k, z_k) ~ π_θ(· | t_s),  k = 1..K             sample_candidates
    2. simulate  V_k = render(MPM(object_s, m_k, z_k))             simulate_and_render
    3. score     r_k = R(V_k, V_s) ≤ 0   (masks + tracks vs GT)   score_candidates
    4. pair      (w, l) = (argmax_k r_k, argmin_k r_k)             make_pairs
    5. loss      h = [log π_θ(x_w) − log π_ref(x_w)] − [log π_θ(x_l) − log π_ref(x_l)]
                 L = −log σ(β h)                                   dpo_loss
    6. step      θ ← AdamW(θ, ∇_θ L)                               dpo_step

Steps 1–4 run in the simulation actors (actors/sim_actor.py: one task = one scene, the
reward service does step 3 for many actors), steps 5–6 in the DeepSpeed learner
(learner/learner.py); learner/orchestrator.py moves tasks, pairs and weight versions
between them over Ray. Everything here is plain torch/numpy: no Ray, no I/O.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from physgm.materials import MATERIALS, PhysParams, denormalize

if TYPE_CHECKING:
    from physgm.sim import SimResult

LOSS_TYPES = ("sigmoid", "ipo", "hinge")
PAIR_MODES = ("best_worst", "margin", "mirrored")
SCORING_FAILED = ("invalid", "error")  # reward statuses that say nothing about the video


@dataclass
class Candidate:
    """One sampled parameter set and its video (None when the simulation failed)."""

    material: int  # index into physgm.materials.MATERIALS
    z: np.ndarray  # (P,) normalised parameters as sampled (before clipping into the range)
    params: PhysParams
    video: Optional[np.ndarray]  # (T, H, W, 3) uint8
    status: str  # the simulation's: ok | unstable | escaped
    sim_s: float
    render_s: float
    message: str = ""
    positions: Optional[np.ndarray] = None  # (F+1, N, 3) [m], when asked for (evaluation)


# ---- 1. sample -------------------------------------------------------------------------
def task_seed(base_seed: int, task_id: str) -> int:
    """A stable 63-bit seed per (run seed, task): a redone task samples the same K sets."""
    digest = hashlib.sha256(f"{base_seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_candidates(dist, k: int, seed: int, mode: str = "independent",
                      material: str = "sample", blocks: str = "joint"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """K draws from a batch-of-one ``PhysicsDistribution``: (materials (K,), z (K, P));
    ``mode``, ``material`` and ``blocks`` as ``PhysicsDistribution.sample`` (``dpo.sampling``,
    ``dpo.material``, ``dpo.mirror_blocks``)."""
    gen = torch.Generator(device=dist.logits.device).manual_seed(seed)
    materials, z = dist.sample(k, generator=gen, mode=mode, material=material, blocks=blocks)
    return materials[0].cpu().numpy(), z[0].float().cpu().numpy()


# ---- 2. simulate -----------------------------------------------------------------------
def simulate_and_render(scene, materials, zs, width: int, height: int, backend: str = "auto",
                        keep_positions: bool = False, reference: Optional[PhysParams] = None
                        ) -> tuple[list[Candidate], Optional[SimResult]]:
    """Simulate ``scene``'s object (a ``runtime.scenes.RolloutScene``: particles, volumes,
    velocity, gaussians, camera, sim) with K parameter sets in one ``simulate_batch`` and
    render each video from the GT camera. A simulation that is not "ok" (unstable, escaped)
    gives ``video=None``; the error never propagates.

    Args: materials (K,) indices into ``MATERIALS``; zs (K, P) normalised parameters;
    ``keep_positions``: also return each particle trajectory; ``reference``: physics
    simulated in the same batch (the scene's TRUE parameters, for an evaluation).
    Returns (K candidates, the reference's ``SimResult`` or None). A candidate's ``sim_s`` is
    its share (1/K, or 1/(K+1) with a reference) of the batch's wall time."""
    from physgm.render import render_video
    from physgm.sim import simulate_batch

    params = [denormalize(MATERIALS[int(m)], z) for m, z in zip(materials, zs)]
    runs = params + ([reference] if reference is not None else [])
    n_runs = len(runs)
    results = simulate_batch([scene.particles] * n_runs, runs, scene.sim,
                             volumes=[scene.volumes] * n_runs,
                             velocities=[scene.velocity] * n_runs)
    sim_s = results[0].wall_s / n_runs if results else 0.0
    n = len(scene.gaussians)
    cands = []
    for m, z, p, result in zip(materials, zs, params, results):
        positions = result.positions if keep_positions else None
        if result.status != "ok":
            cands.append(Candidate(int(m), z, p, None, result.status, sim_s, 0.0,
                                   result.message, positions))
            continue
        t1 = time.perf_counter()
        video = render_video(scene.gaussians, result.positions[:, :n],
                             result.deformation[:, :n], scene.camera, width, height,
                             backend=backend)
        cands.append(Candidate(int(m), z, p, video, "ok", sim_s, time.perf_counter() - t1,
                               positions=positions))
    return cands, (results[-1] if reference is not None else None)


# ---- 3. score --------------------------------------------------------------------------
def score_candidates(score_videos: Callable[[list], list], candidates: list[Candidate],
                     failure_reward: float) -> tuple[np.ndarray, list]:
    """Rewards (K,) of the candidates and the reward results of those that were scored.

    ``score_videos(videos) -> [RewardResult]`` scores videos against the scene's GT (the
    reward service's client, or an in-process ``RewardScorer``). A failed simulation gets
    ``failure_reward``: the sampled physics blew up, a real (bad) outcome to learn from. A
    video the reward could not score (status invalid/error: a lost replica, a model error)
    gets NaN: it says nothing about the physics, so it enters no pair."""
    rewards = np.full(len(candidates), float(failure_reward), np.float64)
    ok = [i for i, c in enumerate(candidates) if c.video is not None]
    results = score_videos([candidates[i].video for i in ok]) if ok else []
    for i, res in zip(ok, results):
        rewards[i] = np.nan if res.status in SCORING_FAILED else res.reward
    return rewards, results


# ---- 4. pair ---------------------------------------------------------------------------
def make_pairs(rewards: np.ndarray, mode: str = "best_worst", margin: float = 0.0
               ) -> list[tuple[int, int]]:
    """Indices (chosen, rejected) from K rewards (higher = better; NaN = not scored, never
    paired).

    best_worst: the best against the worst, if their rewards differ by more than
    ``margin``; margin: every (i, j) with rewards[i] − rewards[j] > margin; mirrored: within
    each couple (2c, 2c + 1) of mirrored samples, the better against the worse if they
    differ by more than ``margin``."""
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError(f"make_pairs needs ≥ 2 rewards, got shape {r.shape}")
    if mode not in PAIR_MODES:
        raise ValueError(f"pair mode must be one of {PAIR_MODES}, got '{mode}'")
    valid = np.flatnonzero(np.isfinite(r))
    if mode == "mirrored":
        if len(r) % 2:
            raise ValueError(f"mirrored pairs need an even number of rewards, got {len(r)}")
        couples = [(i, i + 1) if r[i] >= r[i + 1] else (i + 1, i) for i in range(0, len(r), 2)
                   if np.isfinite(r[i]) and np.isfinite(r[i + 1])]
        return [(w, l) for w, l in couples if r[w] - r[l] > margin]
    if len(valid) < 2:
        return []
    if mode == "best_worst":
        best, worst = int(valid[np.argmax(r[valid])]), int(valid[np.argmin(r[valid])])
        return [(best, worst)] if r[best] - r[worst] > margin else []
    return [(int(i), int(j)) for i in valid for j in valid if r[i] - r[j] > margin]


# ---- 5. loss ---------------------------------------------------------------------------
def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example DPO losses and implicit rewards. With h as above:

        sigmoid: L = −(1 − ε) · logsigmoid(β h) − ε · logsigmoid(−β h)   (ε = label_smoothing)
        ipo:     L = (h − 1 / (2β))²                                     (Azar et al. 2023)
        hinge:   L = relu(1 − β h)                                       (SLiC)

    Args: policy_*_logps (B,) log π_θ of the chosen / rejected sets; ref_*_logps (B,) the
    same under π_ref (detached here); beta β > 0; label_smoothing ε in [0, 0.5), sigmoid only.
    Returns (losses (B,), chosen_rewards β(π_w − ref_w) (B,), rejected_rewards (B,)); the
    rewards are detached."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got '{loss_type}'")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing > 0 and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to the sigmoid loss only, not '{loss_type}'")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()
    h = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = (-(1.0 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    elif loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = torch.relu(1.0 - beta * h)
    return losses, (beta * chosen_logratios).detach(), (beta * rejected_logratios).detach()


def preference_metrics(losses: torch.Tensor, chosen_rewards: torch.Tensor,
                       rejected_rewards: torch.Tensor) -> dict[str, float]:
    """TRL-style scalars: loss, rewards/{chosen,rejected,margins,accuracies}."""
    margins = chosen_rewards - rejected_rewards
    return {"loss": float(losses.mean()), "rewards/chosen": float(chosen_rewards.mean()),
            "rewards/rejected": float(rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()),
            "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean())}


# ---- 6. step ---------------------------------------------------------------------------
def pair_logps(head, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(x_w), log π(x_l)), each (B,), of a batch {tokens (B, G, D), chosen_m (B,),
    chosen_z (B, P), rejected_m, rejected_z} under a physics head, in the head's dtype."""
    tokens = batch["tokens"].to(next(head.parameters()).dtype)
    dist = head(tokens).distribution()
    return (dist.log_prob(batch["chosen_m"], batch["chosen_z"]),
            dist.log_prob(batch["rejected_m"], batch["rejected_z"]))


def dpo_step(policy, reference, batch: dict, cfg, optimize: Callable[[torch.Tensor], None],
             updates: int = 1) -> dict:
    """``updates`` steps of the DPO objective on one batch of pairs; ``optimize(total)``
    back-propagates and steps the optimizer (the DeepSpeed engine's backward + step).

    total = mean L + α · NLL(x_w)   (α = ``cfg.rpo_alpha``, TRL's RPO; 0: plain DPO)

    Returns the TRL metrics of the first update, measured before any update on this batch
    (on fresh pairs they say how well the policy already prefers the winners), the mean log
    π of chosen/rejected sets, and ``loss_last`` (the loss at the last update)."""
    with torch.no_grad():
        ref_w, ref_l = pair_logps(reference, batch)
    metrics: dict = {}
    for update in range(updates):
        pi_w, pi_l = pair_logps(policy, batch)
        losses, chosen, rejected = dpo_loss(pi_w.float(), pi_l.float(), ref_w.float(),
                                            ref_l.float(), beta=cfg.beta, loss_type=cfg.loss_type,
                                            label_smoothing=cfg.label_smoothing)
        total = losses.mean()
        if cfg.rpo_alpha > 0:
            total = total - cfg.rpo_alpha * pi_w.float().mean()
        optimize(total)
        if update == 0:
            metrics = preference_metrics(losses.detach(), chosen, rejected)
            metrics["logps/chosen"] = float(pi_w.detach().float().mean())
            metrics["logps/rejected"] = float(pi_l.detach().float().mean())
    metrics["loss_last"] = float(losses.detach().mean())
    return metrics
