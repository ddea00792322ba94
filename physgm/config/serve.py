"""The ``serve`` section: the Ray Serve endpoint."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from physgm.config.sections import MPMConfig, _Section


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
    models: dict[str, str] = Field(default_factory=dict, description="models served beside "
                                   "the default one, {id: checkpoint path | MLflow URI | "
                                   "random[:seed]}, chosen per request by the header "
                                   "serve_multiplexed_model_id or the field 'model' (default: "
                                   "the run's pretrained and dpo checkpoints)")
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
    resources: dict[str, float] = Field(default_factory=dict, description="Ray custom "
                                        "resources per model replica, e.g. {serve: 1}")
    sim_resources: dict[str, float] = Field(default_factory=dict, description="Ray custom "
                                            "resources per simulation replica")
    request_timeout_s: float = Field(120.0, gt=0, description="model/simulation call limit [s]")
    max_request_mb: float = Field(20.0, gt=0)
    min_image_px: int = Field(32, ge=1, description="smallest image side [px]")
    max_image_px: int = Field(4096, ge=1, description="largest image side [px]")
    max_views: int = Field(4, ge=1, le=16)
    max_ply_gaussians: int = Field(200_000, ge=16, description="Gaussians an uploaded 3DGS "
                                   "PLY may hold (POST /v1/simulate, field 'gaussians')")
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
