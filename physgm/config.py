"""Typed configuration: one pydantic model per stage, composed into ``RunConfig``.

YAML files under ``configs/`` hold a ``RunConfig``; every CLI command takes ``--config`` and
any number of ``--set a.b=c`` overrides (values parsed as YAML: ``--set sim.grid_res=64``,
``--set sim.gravity=[0,-9.8,0]``). ``load_config`` is the one loader; a validation error
names the field, the allowed range and the value given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MPMConfig(_Section):
    """MLS-MPM simulation settings (SI units). The domain is the cube [0, domain_size]³ m
    split into grid_res³ cells; the floor is the plane y = 3·dx (boundary cells)."""

    grid_res: int = Field(32, ge=8, le=512, description="cells per axis")
    domain_size: float = Field(1.0, gt=0, description="edge of the cubic domain [m]")
    substep_dt: Optional[float] = Field(None, gt=0, description="substep [s]; None = from the "
                                        "CFL and elastic wave-speed bound")
    frame_dt: float = Field(1.0 / 25.0, gt=0, description="time between output frames [s] "
                            "(paper: 25 fps)")
    n_frames: int = Field(50, ge=1, le=10000, description="frames after the initial one "
                          "(paper: 50)")
    gravity: tuple[float, float, float] = Field((0.0, -9.8, 0.0), description="[m/s²], y up")
    boundary: Literal["sticky", "slip", "separate"] = Field(
        "separate", description="floor/walls: sticky (v=0), slip (normal v=0), separate "
        "(only inward normal v removed, so objects can bounce off)")
    friction: float = Field(0.5, ge=0, le=10, description="Coulomb friction of slip/separate walls")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int = Field(0, ge=0, le=256, description="CPU threads for the kernels (0 = all "
                         "cores; ignored on CUDA)")
    cfl: float = Field(0.3, gt=0, le=1, description="substep ≤ cfl·dx / max(wave speed, speed)")
    max_speed: float = Field(50.0, gt=0, description="speed [m/s] above which a run is 'unstable'")
    escape_fraction: float = Field(0.01, ge=0, le=1, description="fraction of particles leaving "
                                   "the interior above which a run is 'escaped'")
    particles_per_cell: int = Field(8, ge=1, le=64, description="sampling density of primitives "
                                    "(8 = 2 per axis)")
    seed: int = 0


class RenderConfig(_Section):
    width: int = Field(64, ge=8, le=4096)
    height: int = Field(64, ge=8, le=4096)
    backend: Literal["auto", "torch", "gsplat"] = "auto"
    tile_size: int = Field(16, ge=4, le=128, description="torch backend tile edge [px]")
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)


class DataConfig(_Section):
    """Synthetic scene dataset (physgm/data, docs/data.md): procedural objects dropped onto
    the floor of the MPM domain, V input views, a ground-truth video, true physics and the
    annotator's noisy labels, in a zarr store."""

    path: str = "runs/quickstart/data.zarr"
    n_scenes: int = Field(24, ge=1)
    n_views: int = Field(6, ge=1, le=64, description="views stored per scene; a training "
                         "item draws its inputs and its novel-view targets from them")
    image_size: int = Field(64, ge=16, le=2048, description="edge of views and video [px]")
    video_frames: int = Field(16, ge=2, description="frames of the GT video, the rest pose "
                              "included (simulated: video_frames − 1)")
    max_particles: int = Field(5000, ge=100, description="particles (= Gaussians) per object; "
                               "a larger object is sampled more coarsely")
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    label_noise: float = Field(1.0, ge=0, le=5, description="scale of the annotator's noise "
                               "and bias (0 = perfect labels)")
    seed: int = 0
    workers: int = Field(2, ge=1, description="processes generating scenes in parallel")
    materials: list[Literal["jelly", "metal", "plasticine", "sand", "snow"]] = Field(
        default_factory=lambda: ["jelly", "metal", "plasticine", "sand", "snow"],
        min_length=1, description="materials drawn uniformly")
    shapes: list[Literal["cube", "sphere", "cylinder", "cone", "torus", "capsule"]] = Field(
        default_factory=lambda: ["cube", "sphere", "cylinder", "cone", "torus", "capsule"],
        min_length=1, description="primitives (physgm.sim.shapes) that objects are made of")
    object_size_m: tuple[float, float] = Field((0.12, 0.25), description="range of the "
                                               "object's largest extent [m]")
    drop_height_m: tuple[float, float] = Field((0.03, 0.2), description="range of the gap "
                                               "between the floor and the object's bottom [m]")
    throw_probability: float = Field(0.3, ge=0, le=1, description="chance of an initial "
                                     "velocity (a throw) instead of a plain drop")
    throw_speed_mps: float = Field(0.3, ge=0, le=5, description="largest horizontal speed of "
                                   "a throw [m/s] (vertical: up to half of it)")
    appearance_mix: float = Field(0.1, ge=0, le=1, description="chance that an object wears "
                                  "another material's palette")
    view_radius_m: tuple[float, float] = Field((0.65, 1.0), description="input camera distance "
                                               "from the object's centre [m]")
    view_elevation_deg: tuple[float, float] = Field((5.0, 45.0))
    view_fov_deg: float = Field(30.0, gt=0, lt=180, description="input views' vertical FoV")
    video_distance_m: float = Field(0.9, gt=0, description="video camera distance [m]")
    video_elevation_deg: float = Field(10.0, ge=-80, le=80)
    video_fov_deg: float = Field(40.0, gt=0, lt=180)
    video_target_height_m: float = Field(0.25, description="height above the floor that the "
                                         "video camera looks at [m]")
    max_attempts: int = Field(8, ge=1, description="resamples of a scene whose simulation "
                              "is unstable or escapes before it counts as failed")
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="rendering device")

    @model_validator(mode="after")
    def _consistent(self):
        for name in ("object_size_m", "drop_height_m", "view_radius_m", "view_elevation_deg"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"data.{name} must be (low, high), got {(lo, hi)}")
        if self.object_size_m[0] <= 0 or self.view_radius_m[0] <= 0:
            raise ValueError("data.object_size_m and data.view_radius_m must be > 0")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction must be < 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        return self


class ModelConfig(_Section):
    """PhysGM network (physgm/model): backbone → Plücker-augmented patch tokens + global
    tokens → multi-view transformer → DPT Gaussian head and physics head."""

    backbone: Literal["vit", "dinov3"] = Field("vit", description="vit: small ViT trained "
                                               "from scratch; dinov3: frozen DINOv3 ViT-L/16")
    backbone_checkpoint: Optional[str] = Field(None, description="local DINOv3 weights (.pth)")
    image_size: int = Field(64, ge=16, description="input views are resized to this [px]")
    patch_size: int = Field(8, ge=2, description="patch edge [px] (16 for dinov3)")
    dim: int = Field(128, ge=16, description="transformer width (and the vit backbone's)")
    depth: int = Field(4, ge=1, description="multi-view transformer blocks")
    heads: int = Field(4, ge=1)
    backbone_depth: int = Field(4, ge=1, description="vit backbone blocks (dinov3: 24, fixed)")
    n_global_tokens: int = Field(3, ge=2, description="token 0 → material, the rest → "
                                 "continuous parameters")
    mlp_ratio: float = Field(4.0, gt=0)
    max_views: int = Field(4, ge=1, le=16, description="views the view embedding covers")
    dpt_layers: Optional[list[int]] = Field(None, description="transformer blocks (0-based) "
                                            "the Gaussian head fuses; None = 4 evenly spaced")
    dpt_features: int = Field(64, ge=8, description="channels of the DPT fusion maps")
    near: float = Field(0.5, gt=0, description="smallest Gaussian depth along the ray [m]")
    far: float = Field(4.0, gt=0, description="largest Gaussian depth along the ray [m]")
    scale_min: float = Field(1e-3, gt=0, description="smallest Gaussian scale [m]")
    scale_max: float = Field(0.1, gt=0, description="largest Gaussian scale [m]")
    color_residual: bool = Field(True, description="colour = sigmoid(logit(pixel) + output)")
    physics_hidden: int = Field(256, ge=8, description="physics head MLP width")
    std_min: float = Field(0.01, gt=0, description="smallest std of a normalised parameter")
    std_max: float = Field(1.0, gt=0, description="largest std of a normalised parameter")
    grad_checkpoint: bool = Field(False, description="recompute transformer blocks in "
                                  "backward (saves memory at paper scale)")
    lpips_checkpoint: Optional[str] = Field(None, description="LPIPS linear-layer weights "
                                            "(vgg.pth of the lpips package); None = no LPIPS")
    lpips_vgg_checkpoint: Optional[str] = Field(None, description="torchvision VGG16 weights "
                                                "for LPIPS (needed with lpips_checkpoint)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.backbone == "dinov3" and self.patch_size != 16:
            raise ValueError("backbone dinov3 is ViT-L/16: set model.patch_size=16")
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise ValueError(f"model.dim ({self.dim}) / model.heads ({self.heads}) must be an "
                             "integer multiple of 4 (RoPE head dim)")
        if self.image_size % self.patch_size:
            raise ValueError(f"model.image_size ({self.image_size}) must be a multiple of "
                             f"model.patch_size ({self.patch_size})")
        if not self.near < self.far:
            raise ValueError(f"model.near ({self.near}) must be < model.far ({self.far})")
        if not self.scale_min < self.scale_max:
            raise ValueError("model.scale_min must be < model.scale_max")
        if not self.std_min < self.std_max:
            raise ValueError("model.std_min must be < model.std_max")
        if self.dpt_layers is not None and any(not 0 <= i < self.depth for i in self.dpt_layers):
            raise ValueError(f"model.dpt_layers {self.dpt_layers} must lie in [0, depth-1="
                             f"{self.depth - 1}]")
        if self.dpt_layers is not None and len(self.dpt_layers) != 4:
            raise ValueError("model.dpt_layers must list 4 block indices (coarse DPT levels "
                             "come from the later ones)")
        if self.lpips_checkpoint and not self.lpips_vgg_checkpoint:
            raise ValueError("model.lpips_checkpoint needs model.lpips_vgg_checkpoint "
                             "(torchvision VGG16 weights) too")
        return self


class PretrainConfig(_Section):
    steps: int = Field(300, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(20, ge=0)
    grad_accum: int = Field(1, ge=1)
    grad_clip: float = Field(1.0, gt=0)
    zero_stage: int = Field(2, ge=0, le=3)
    num_workers: int = Field(2, ge=1, description="Ray Train workers")
    use_gpu: bool = False
    checkpoint_every: int = Field(100, ge=1)
    val_every: int = Field(100, ge=1)
    loss_weights: dict[str, float] = Field(
        default_factory=lambda: {"rgb": 1.0, "alpha": 0.01, "material": 0.1, "params": 0.01},
        description="physgm_losses weights; alpha ≥ 0.1 made the quickstart model turn all "
        "Gaussians transparent within ~50 steps (novel-view BCE outweighs the rest)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a fraction of lr")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW (β1, β2)")
    eps: float = Field(1e-8, gt=0, description="AdamW ε")
    bf16: bool = Field(True, description="bf16 mixed precision on GPU (CPU always runs fp32)")
    views: tuple[int, int] = Field((1, 4), description="(min, max) input views per training "
                                   "scene, drawn per scene")
    n_targets: int = Field(1, ge=1, description="held-out views rendered per scene for the "
                           "image losses")
    val_views: int = Field(2, ge=1, description="input views per held-out scene in validation")
    val_scenes: int = Field(0, ge=0, description="held-out scenes per validation (0 = all)")
    log_every: int = Field(10, ge=1, description="steps between metric logs")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept besides 'final'")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs Ray reserves per train worker")
    loader_workers: int = Field(0, ge=0, description="DataLoader processes per train worker")
    input_targets: int = Field(1, ge=0, description="input views also rendered for the image "
                               "losses (they pin opacity/colour; novel views teach depth)")

    @model_validator(mode="after")
    def _consistent(self):
        lo, hi = self.views
        if not 1 <= lo <= hi:
            raise ValueError(f"pretrain.views must be (min, max) with 1 ≤ min ≤ max, got "
                             f"{self.views}")
        return self


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
    pair_mode: Literal["best_worst", "margin"] = "best_worst"
    reward_margin: float = Field(0.0, ge=0, description="minimum reward gap for a pair")
    checkpoint_every: int = Field(10, ge=1, description="learner steps between checkpoints")
    log_videos_every: int = Field(10, ge=1, description="learner steps between GT | winner | "
                                  "loser video artifacts")
    eval_scenes: int = Field(16, ge=1, description="held-out scenes for `physgm eval`")
    seed: int = 0


_SERVE_SIM = {"grid_res": 32, "n_frames": 16}


class ServeConfig(_Section):
    """Ray Serve endpoint (serving/): where the model comes from, replicas and batching of
    the model deployment, the simulation deployment, request limits and the quickstart-sized
    simulation behind ``POST /v1/simulate``. Weights: ``checkpoint`` (a path), else
    ``model_uri`` (MLflow ``runs:/…`` or ``models:/…``), else ``random_init``, else the
    newest ``<out_dir>/*/checkpoints/final``."""

    host: str = Field("127.0.0.1", description="bind address; anything but loopback needs "
                      "api_key (or env PHYSGM_API_KEY)")
    port: int = Field(8000, ge=1, le=65535)
    api_key: Optional[str] = Field(None, description="required in header X-API-Key on /v1/* "
                                   "when set (env PHYSGM_API_KEY also sets it)")
    checkpoint: Optional[str] = Field(None, description="PhysGM checkpoint dir or .pt file")
    model_uri: Optional[str] = Field(None, description="MLflow URI of a checkpoint directory "
                                     "(runs:/<run_id>/<path>, models:/<name>/<version>)")
    random_init: bool = Field(False, description="serve an untrained model built from the "
                              "model section (smoke tests)")
    model_version: Optional[str] = Field(None, description="label reported as model_version "
                                         "(default: derived from the weights' content)")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    replicas: int = Field(1, ge=1, description="model replicas (without autoscaling)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per model replica")
    num_gpus: float = Field(0.0, ge=0, description="GPU fraction per model replica")
    max_batch_size: int = Field(8, ge=1, description="predict requests per model call")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="wait for a fuller "
                                        "batch [s]")
    max_ongoing_requests: int = Field(64, ge=1, description="per replica")
    autoscaling: bool = False
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0, description="autoscaling target per "
                                           "model replica")
    ingress_replicas: int = Field(1, ge=1, description="HTTP ingress replicas (decode and "
                                  "validate uploads)")
    sim_replicas: int = Field(1, ge=1, description="simulation + rendering replicas")
    sim_num_cpus: float = Field(1.0, ge=0)
    sim_num_gpus: float = Field(0.0, ge=0)
    request_timeout_s: float = Field(120.0, gt=0, description="model/simulation call limit [s]")
    max_request_mb: float = Field(20.0, gt=0)
    min_image_px: int = Field(32, ge=1, description="smallest image side [px]")
    max_image_px: int = Field(4096, ge=1, description="largest image side [px]")
    max_views: int = Field(4, ge=1, le=16)
    # Cameras assumed when a request sends none: the middle of the synthetic data's view
    # distribution (data.view_radius_m, view_elevation_deg, view_fov_deg), aimed at a typical
    # object centre in the simulation domain.
    default_camera_radius: float = Field(0.8, gt=0, description="[m] orbit radius")
    default_camera_elevation_deg: float = Field(25.0, ge=-89, le=89)
    default_camera_fov_deg: float = Field(30.0, gt=0, lt=180)
    default_camera_target: tuple[float, float, float] = Field((0.5, 0.25, 0.5), description=
                                                              "[m] point the cameras look at")
    sim: MPMConfig = Field(default_factory=lambda: MPMConfig(**_SERVE_SIM),
                           description="simulation of /v1/simulate (quickstart-sized)")
    max_particles: int = Field(5000, ge=16, description="particles simulated per request")
    fill_interior: bool = Field(True, description="add interior particles "
                                "(physgm.gaussians.fill_particles)")
    min_opacity: float = Field(0.3, ge=0, lt=1, description="Gaussians below are dropped")
    object_size: float = Field(0.4, gt=0, le=0.8, description="longest object extent as a "
                               "fraction of the domain")
    drop_height: float = Field(0.1, ge=0, le=0.5, description="gap between object and floor "
                                "as a fraction of the domain")
    video_size: int = Field(128, ge=16, le=1024, description="rendered video side [px]")
    video_fps: float = Field(25.0, gt=0, le=120)

    @field_validator("sim", mode="before")
    @classmethod
    def _quickstart_sim(cls, v):
        # a partial `serve.sim` keeps the endpoint's quickstart sizes for what it leaves out
        return {**_SERVE_SIM, **v} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_image_px > self.max_image_px:
            raise ValueError(f"serve.min_image_px ({self.min_image_px}) must be ≤ "
                             f"serve.max_image_px ({self.max_image_px})")
        if self.autoscaling and self.min_replicas > self.max_replicas:
            raise ValueError("serve.min_replicas must be ≤ serve.max_replicas")
        if self.checkpoint and self.model_uri:
            raise ValueError("set serve.checkpoint or serve.model_uri, not both")
        return self


class RunConfig(_Section):
    """The whole job: one section per stage."""

    name: str = "quickstart"
    out_dir: str = "runs"
    seed: int = 0
    sim: MPMConfig = Field(default_factory=MPMConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ ") or v.startswith("."):
            raise ValueError("run name must be a plain folder name (no slashes or spaces)")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


class ConfigError(ValueError):
    """A config file or override that does not validate; the message says what to change."""


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict:
    """['a.b=1', 'c=x'] → nested dict with YAML-parsed values."""
    tree: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. sim.grid_res=64), got '{item}'")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"--set '{item}': empty key")
        _set_path(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _describe(err: ValidationError, data: dict) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        given = e.get("input")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `physgm config show` lists all fields)"
        lines.append(f"  {loc}: {msg} (got {given!r})" if not isinstance(given, dict)
                     else f"  {loc}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def build_config(data: dict | None = None, overrides: list[str] | None = None) -> RunConfig:
    merged = _merge(data or {}, parse_overrides(overrides))
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_describe(err, merged)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML ``RunConfig`` (defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (try configs/quickstart.yaml)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of sections (sim:, render:, ...)")
    return build_config(data, overrides)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(cfg: BaseModel | dict, prefix: str = "") -> dict[str, Any]:
    """Nested config → {'sim.grid_res': 32, ...}: MLflow params are the whole resolved config."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
