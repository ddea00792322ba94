"""Sections of the pipeline's stages up to pretraining: ``sim``, ``render``, ``data``,
``model`` and ``pretrain``, and ``_Section``, the base every section model shares."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from physgm.materials import PARAM_RANGES, Material

# added to data.seed for the pretraining store (data.pretrain_scenes): a seed no other
# store of a run uses (validation: data.seed + 1, final test: data.seed + 7919; the
# data seeds of `physgm study` step by 100)
PRETRAIN_SEED_OFFSET = 3571


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MPMConfig(_Section):
    """MLS-MPM simulation settings (SI units). The domain is the cube [0, domain_size]³ m
    split into grid_res³ cells; the floor is the plane y = 3·dx (boundary cells). Every
    value must be finite (NaN or ±inf is refused, naming the field)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    grid_res: int = Field(32, ge=8, le=512, description="cells per axis")
    domain_size: float = Field(1.0, gt=0, description="edge of the cubic domain [m]")
    substep_dt: Optional[float] = Field(None, gt=0, description="substep [s]; None = from the "
                                        "CFL and elastic wave-speed bound")
    frame_dt: float = Field(1.0 / 25.0, gt=0, description="time between output frames [s] "
                            "(paper: 25 fps)")
    n_frames: int = Field(50, ge=1, le=10000, description="frames after the initial one "
                          "(paper: 50); DPO and its evaluation re-simulate a stored scene for "
                          "its GT video's length instead (runtime.scenes.rollout_sim_config)")
    gravity: tuple[float, float, float] = Field((0.0, -9.8, 0.0), description="[m/s²], y up")
    boundary: Literal["sticky", "slip", "separate"] = Field(
        "separate", description="floor/walls: sticky (wall nodes v=0, and particles within "
        "one cell of a wall are held where they are), slip (normal v=0), separate (only "
        "inward normal v removed, so objects can bounce off)")
    friction: float = Field(0.5, ge=0, le=10, description="Coulomb friction of slip/separate "
                            "walls, acting where a node presses on the wall")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int = Field(0, ge=0, le=256, description="CPU threads for the kernels (0 = all "
                         "cores; ignored on CUDA); DPO actors use dpo.actor_cpus threads and "
                         "evaluation tasks 1 instead (runtime.scenes.rollout_sim_config)")
    cfl: float = Field(0.3, gt=0, le=1, description="substep ≤ cfl·dx / (wave speed + speed) "
                       "(snow: also ≤ dx / (hardened wave speed + speed))")
    max_substeps_per_frame: int = Field(10_000, ge=1, description="a run needing more "
                                        "substeps per frame is refused before it starts (every "
                                        "parameter in PARAM_RANGES needs fewer up to grid_res "
                                        "512)")
    max_speed: float = Field(50.0, gt=0, description="speed [m/s] above which a run is 'unstable'")
    escape_fraction: float = Field(0.01, ge=0, le=1, description="fraction of particles leaving "
                                   "the interior above which a run is 'escaped'")
    particles_per_cell: int = Field(8, ge=1, le=64, description="sampling density of primitives "
                                    "(8 = 2 per axis)")
    seed: int = 0

    @model_validator(mode="after")
    def _substep_fits_frame(self):
        if self.substep_dt is not None and self.substep_dt > self.frame_dt:
            raise ValueError(f"sim.substep_dt ({self.substep_dt:g} s) must not exceed "
                             f"sim.frame_dt ({self.frame_dt:g} s)")
        return self


class RenderConfig(_Section):
    width: int = Field(64, ge=8, le=4096)
    height: int = Field(64, ge=8, le=4096)
    backend: Literal["auto", "torch", "gsplat", "warp"] = Field(
        "auto", description="auto: gsplat on CUDA; on CPU warp where no gradient is needed "
        "(videos, views) and torch where it is (pretraining)")
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
    label_bias: float = Field(1.0, ge=0, le=5, description="extra scale of the annotator's "
                              "systematic E and ν offsets per material (on top of "
                              "label_noise): how far off its idea of each material is")
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
    physics_cue: float = Field(0.0, ge=0, le=1, description="how much an object's colour "
                               "tells its physics within its material: brightness ↔ E, "
                               "saturation ↔ a second parameter (physgm/data/appearance.py). "
                               "0: only the material shows, so one E per material is the best "
                               "any image model can predict")
    true_E_pa: dict[Literal["jelly", "metal", "plasticine", "sand", "snow"],
                    tuple[float, float]] = Field(
        default_factory=dict, description="per material, the (low, high) range [Pa] the TRUE "
        "E is drawn from (log-uniformly), inside physgm.materials.PARAM_RANGES; unset: the "
        "whole range. An inner range keeps the annotator's biased labels inside the range "
        "(unclipped), and the physics cue spans it")
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
    image_only: bool = Field(False, description="write image-only scenes: views, masks, "
                             "cameras, the object (particles, volumes, Gaussians), true "
                             "physics, label, appearance and shape, drawn exactly as full "
                             "scenes are, but no simulation and no GT video (pretraining "
                             "reads none; DPO and its evaluation refuse such a store). "
                             "`physgm data synth --image-only`")
    pretrain_scenes: int = Field(0, ge=0, le=10_000_000, description="image-only scenes of "
                                 "a separate pretraining store (data.pretrain_path) that "
                                 "`physgm run` synthesises and pretraining trains on (its "
                                 "train split) and validates on (its val split, "
                                 "data.val_fraction); DPO and evaluation keep data.path. "
                                 "0 = pretrain on data.path")
    pretrain_path: Optional[str] = Field(None, description="the pretraining store (None: "
                                         "<data.path's stem>-pretrain.zarr beside data.path)")
    pretrain_seed: Optional[int] = Field(None, description="seed of the pretraining store "
                                         f"(None: data.seed + {PRETRAIN_SEED_OFFSET}); must "
                                         "differ from data.seed and the validation and final "
                                         "test seeds")

    def pretrain_store(self) -> Optional[str]:
        """Path of the pretraining store, or None when pretraining reads data.path
        (``pretrain_scenes`` = 0)."""
        if not self.pretrain_scenes:
            return None
        if self.pretrain_path:
            return self.pretrain_path
        p = Path(self.path)
        return str(p.parent / f"{p.stem}-pretrain.zarr")

    def pretrain_store_seed(self) -> int:
        """Seed of the pretraining store (``pretrain_seed`` or data.seed + offset)."""
        return self.seed + PRETRAIN_SEED_OFFSET if self.pretrain_seed is None \
            else self.pretrain_seed

    @model_validator(mode="after")
    def _consistent(self):
        if self.pretrain_path and not self.pretrain_scenes:
            raise ValueError("data.pretrain_path names a pretraining store: set "
                             "data.pretrain_scenes > 0 too (0 = pretrain on data.path)")
        if self.pretrain_scenes and Path(self.pretrain_store()).resolve() == \
                Path(self.path).resolve():
            raise ValueError(f"data.pretrain_path ({self.pretrain_path}) must differ from "
                             "data.path: the pretraining store is image-only, DPO needs videos")
        for name in ("object_size_m", "drop_height_m", "view_radius_m", "view_elevation_deg"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"data.{name} must be (low, high), got {(lo, hi)}")
        if self.object_size_m[0] <= 0 or self.view_radius_m[0] <= 0:
            raise ValueError("data.object_size_m and data.view_radius_m must be > 0")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction must be < 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        for material, (lo, hi) in self.true_E_pa.items():
            low, high = PARAM_RANGES[Material(material)]["E"]
            if not low <= lo < hi <= high:
                raise ValueError(f"data.true_E_pa.{material} must be (low, high) with "
                                 f"{low:g} ≤ low < high ≤ {high:g} Pa (PARAM_RANGES), got "
                                 f"({lo:g}, {hi:g})")
        return self

    def true_ranges(self, material) -> dict[str, tuple[float, float]]:
        """{name: (low, high)} narrowing ``PARAM_RANGES[material]`` for the TRUE parameters."""
        value = Material(material).value
        return {"E": tuple(self.true_E_pa[value])} if value in self.true_E_pa else {}


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
    n_global_tokens: int = Field(3, ge=2, description="learned global tokens; the physics "
                                 "head reads them and the max-pooled patch token (all → material, "
                                 "tokens 1.. → continuous parameters)")
    photometric_token: bool = Field(False, description="the physics head also reads a token "
                                    "of the object pixels' colour statistics "
                                    "(physgm/model/photometric.py): a from-scratch encoder "
                                    "learns them slowly; a pretrained one does not need them")
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

    @property
    def n_physics_tokens(self) -> int:
        """Tokens the physics head reads (and DPO caches per scene): the learned global
        tokens, the photometric token (``photometric_token``) and the max-pooled patch
        token."""
        return self.n_global_tokens + 1 + int(self.photometric_token)

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


# The quickstart-tested weights; a config or --set naming some of them keeps the others.
PRETRAIN_LOSS_WEIGHTS = {"rgb": 1.0, "alpha": 0.01, "depth": 1.0, "material": 0.1,
                         "params": 0.01}


class PretrainConfig(_Section):
    steps: int = Field(300, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(3e-4, gt=0)
    head_lr_scale: float = Field(1.0, gt=0, le=100, description="the physics head's learning "
                                 "rate as a multiple of lr (the head of a from-scratch encoder "
                                 "lags its features: a linear probe on them beat it)")
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
        default_factory=lambda: dict(PRETRAIN_LOSS_WEIGHTS),
        description="physgm_losses weights; the ones not given keep these defaults; alpha "
        "≥ 0.1 made the quickstart model turn all Gaussians transparent within ~50 steps "
        "(novel-view BCE outweighs the rest)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a fraction of lr")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW (β1, β2)")
    eps: float = Field(1e-8, gt=0, description="AdamW ε")
    bf16: bool = Field(True, description="bf16 mixed precision on GPU (CPU always runs fp32)")
    views: tuple[int, int] = Field((1, 4), description="(min, max) input views of a "
                                   "training batch: one V per batch, every V in the range "
                                   "equally often (pretrain.loader.ShardedBatches)")
    n_targets: int = Field(1, ge=1, description="held-out views rendered per scene for the "
                           "image losses")
    val_views: int = Field(2, ge=1, description="input views per held-out scene in validation")
    report_views: list[int] = Field(default_factory=lambda: [1, 2, 4], max_length=16,
                                    description="input view counts at which validation and "
                                    "`physgm eval` also report material accuracy "
                                    "(pretrain/material_acc/v<V>; each 1 ≤ V ≤ "
                                    "model.max_views; scenes storing fewer views are left "
                                    "out of that V)")
    val_scenes: int = Field(0, ge=0, description="held-out scenes per validation (0 = all)")
    log_every: int = Field(10, ge=1, description="steps between metric logs")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept besides 'final'")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs Ray reserves per train worker")
    resources_per_worker: dict[str, float] = Field(default_factory=dict, description="Ray "
                                                   "custom resources per train worker, e.g. "
                                                   "{learner: 1}: pins them to a node type")
    loader_workers: int = Field(0, ge=0, description="DataLoader processes per train worker")
    render_size: Optional[int] = Field(None, ge=8, le=4096, description="edge [px] the "
                                       "training targets are rendered at (intrinsics scaled, "
                                       "targets area-averaged); None: model.image_size. The "
                                       "image losses cost ∝ pixels on a CPU; validation "
                                       "renders at full size")
    image_loss_every: int = Field(1, ge=1, le=100_000, description="steps between steps with the "
                                  "image losses; the steps between train the physics losses "
                                  "alone (no rendering: ~20× cheaper on a CPU)")
    depth_every: int = Field(1, ge=1, le=100_000, description="steps between steps with the "
                             "input views' depth loss where the store has depth (every "
                             "rendering step has it; on a physics-only step it runs the "
                             "Gaussian head without rendering: ~1.5× that step's cost on a "
                             "CPU)")
    input_targets: int = Field(1, ge=0, description="input views also rendered for the image "
                               "losses (they pin opacity/colour; novel views teach depth)")

    @field_validator("loss_weights", mode="before")
    @classmethod
    def _keep_unnamed_weights(cls, value):
        # `--set pretrain.loss_weights.material=1` must not drop rgb/alpha/params (the loss
        # would fall back to physgm_losses' generic alpha 0.1, which collapses the model)
        return {**PRETRAIN_LOSS_WEIGHTS, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self):
        lo, hi = self.views
        if not 1 <= lo <= hi:
            raise ValueError(f"pretrain.views must be (min, max) with 1 ≤ min ≤ max, got "
                             f"{self.views}")
        if any(v < 1 for v in self.report_views) or \
                len(set(self.report_views)) != len(self.report_views):
            raise ValueError(f"pretrain.report_views must be distinct view counts ≥ 1, got "
                             f"{self.report_views}")
        return self
