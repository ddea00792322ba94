"""Sections of preference optimisation: ``reward`` (the video reward) and ``dpo``."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from physgm.config.sections import _Section


class RewardConfig(_Section):
    """Video reward: reward = −(w_mask·(1 − mIoU) + w_track·track_error), see reward/."""

    backend: Literal["classical", "sam2_cotracker"] = "classical"
    w_mask: float = Field(1.0, ge=0)
    w_track: float = Field(1.0, ge=0)
    failure_reward: float = Field(-2.0, le=0)
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    sam2_checkpoint: Optional[str] = None
    cotracker_checkpoint: Optional[str] = None
    random_init: bool = False
    grid_size: int = Field(10, ge=2)
    replicas: int = Field(1, ge=1)
    max_batch_size: int = Field(4, ge=1)
    num_gpus: float = Field(0.0, ge=0)
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per reward replica")
    resources: dict[str, float] = Field(default_factory=dict, description="Ray custom "
                                        "resources per replica, e.g. {reward: 1}")
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="sam2_cotracker models")
    background: tuple[int, int, int] = Field((0, 0, 0), description="RGB 0..255 of the "
                                             "renderer's background (foreground = differs)")
    fg_threshold: int = Field(10, ge=0, le=254, description="max |pixel − background| over "
                              "channels above which a pixel is foreground (0..255)")
    sam2_image_size: int = Field(1024, ge=64, le=4096, description="SAM-2 input size "
                                 "(1024 for the released checkpoints; small for tests)")
    cotracker_resolution: tuple[int, int] = Field((384, 512), description="(H, W) CoTracker "
                                                  "input, multiples of 4 (released: 384×512)")
    cotracker_iters: int = Field(6, ge=1, le=32)
    visibility_threshold: float = Field(0.9, gt=0, lt=1, description="CoTracker visibility "
                                        "probability above which a point counts as visible")
    lk_window: int = Field(15, ge=3, le=101, description="Lucas–Kanade window [px]")
    lk_levels: int = Field(3, ge=0, le=8, description="Lucas–Kanade pyramid levels")
    lk_fb_threshold_px: float = Field(1.0, gt=0, description="forward–backward error [px] "
                                      "above which a classical track is lost")
    cache_size: int = Field(64, ge=1, description="reference scenes kept in the cache")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="Serve batching wait")


class DPOConfig(_Section):
    """Preference optimisation of the physics head (actors → reward → learner)."""

    beta: float = Field(0.1, gt=0, description="DPO inverse temperature β")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO ε "
                                   "(sigmoid loss only)")
    rpo_alpha: float = Field(0.0, ge=0, description="weight of the chosen sets' NLL added to "
                             "the DPO loss (TRL's rpo_alpha): anchors the Gaussian policy on "
                             "the winners instead of only pushing away from the losers")
    k: int = Field(4, ge=2, description="candidates sampled per scene")
    encode_views: int = Field(4, ge=1, le=16, description="input views (the first V stored "
                              "of each scene; fewer when it stores fewer) the frozen encoder "
                              "sees for the tokens of DPO and of its w/o-vs-w/ evaluation "
                              "(runtime.scenes.encode_scenes; part of the token cache key); "
                              "4 = the paper's; at most model.max_views")
    sampling: Literal["independent", "shared_material", "mirrored"] = Field(
        "independent", description="how the K candidates are drawn from the policy: "
        "independent; shared_material (one material per scene, K parameter sets of it); "
        "mirrored (K/2 draws, each with its mirror image about the policy mean: antithetic, "
        "same material and density; pair them with pair_mode: mirrored)")
    mirror_blocks: Literal["joint", "E_rest"] = Field(
        "joint", description="what a mirrored couple perturbs: joint (every parameter); "
        "E_rest (couples alternate between E alone and every other parameter alone, the rest "
        "at the policy mean: E's reward gap is not mixed with ν's, yield stress's, snow's "
        "thresholds'; needs sampling: mirrored and an even number of couples to probe both)")
    material: Literal["sample", "mode"] = Field(
        "sample", description="the material of the K candidates: sample (each drawn from the "
        "policy); mode (the policy's most likely material for all K: with pair_mode mirrored "
        "the material cancels from every pair, so DPO refines the parameters of the material "
        "the model names, and no simulation is spent on, nor learned from, a material the "
        "model thinks unlikely)")
    trainable: Literal["head", "output"] = Field(
        "head", description="what DPO trains: head (the whole physics head); output (its "
        "output layers only: a pair moves the μ, σ rows of its own material, never the hidden "
        "layers all materials share)")
    batch_candidates: bool = Field(True, description="simulate a task's K candidates in one "
                                   "physgm.sim.simulate_batch (False: one after another; the "
                                   "same results on CPU, less memory at once on a GPU)")
    n_actors: int = Field(2, ge=1, description="simulation actors")
    actor_cpus: float = Field(1.0, gt=0, description="CPUs per simulation actor")
    actor_gpus: float = Field(0.0, ge=0, description="GPU fraction per simulation actor")
    actor_resources: dict[str, float] = Field(default_factory=dict, description="Ray custom "
                                              "resources per actor, e.g. {sim_actor: 1}: "
                                              "pins actors to their cluster node type")
    learner_resources: dict[str, float] = Field(default_factory=dict, description="Ray custom "
                                                "resources of the learner, e.g. {learner: 1}")
    epochs: int = Field(2, ge=1, description="passes over the training scenes (one task = "
                        "one scene: K samples, simulations, renders, rewards)")
    steps: Optional[int] = Field(None, ge=1, description="stop after this many learner steps "
                                 "(None: when every task of every epoch is done)")
    batch_pairs: int = Field(4, ge=1, description="pairs per learner step")
    updates_per_batch: int = Field(1, ge=1, le=64, description="optimizer updates per batch "
                                   "of pairs (PPO-style reuse of scarce simulated pairs)")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage of the learner")
    learner_gpus: float = Field(0.0, ge=0)
    max_staleness: int = Field(2, ge=0, description="drop pairs sampled more than this many "
                               "policy versions ago")
    publish_every: int = Field(1, ge=1, description="learner steps between weight versions")
    queue_size: int = Field(16, ge=1, description="bounded rollout queue: actors wait when full")
    max_restarts: int = Field(3, ge=0, description="restarts of a dead simulation actor")
    pair_mode: Literal["best_worst", "margin", "mirrored"] = Field(
        "best_worst", description="best_worst: best vs worst of the K; margin: every pair "
        "whose rewards differ by > reward_margin; mirrored: each mirrored couple (needs "
        "sampling: mirrored)")
    reward_margin: float = Field(0.0, ge=0, description="minimum reward gap for a pair")
    checkpoint_every: int = Field(10, ge=1, description="learner steps between checkpoints")
    log_videos_every: int = Field(10, ge=1, description="learner steps between GT | winner | "
                                  "loser video artifacts")
    init_checkpoint: Optional[str] = Field(None, description="the pretrained checkpoint DPO "
                                           "starts from and is compared with (None: "
                                           "runs/<name>/checkpoints/final); lets several "
                                           "DPO runs share one pretraining (physgm study)")
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self):
        if self.sampling == "mirrored" and self.k % 2:
            raise ValueError(f"dpo.sampling: mirrored draws couples: dpo.k must be even, "
                             f"got {self.k}")
        if self.mirror_blocks != "joint" and self.sampling != "mirrored":
            raise ValueError(f"dpo.mirror_blocks: {self.mirror_blocks} splits mirrored couples: "
                             "set dpo.sampling: mirrored (or mirror_blocks: joint)")
        if self.pair_mode == "mirrored" and self.sampling != "mirrored":
            raise ValueError("dpo.pair_mode: mirrored pairs each mirrored couple: set "
                             "dpo.sampling: mirrored (or use pair_mode best_worst | margin)")
        return self
