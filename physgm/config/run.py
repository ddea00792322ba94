"""``RunConfig``: the whole job, one section per stage."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from physgm.config.evaluation import EvalConfig
from physgm.config.preference import DPOConfig, RewardConfig
from physgm.config.sections import (DataConfig, ModelConfig, MPMConfig, PretrainConfig,
                                    RenderConfig, _Section)
from physgm.config.serve import ServeConfig


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
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ ") or v.startswith("."):
            raise ValueError("run name must be a plain folder name (no slashes or spaces)")
        return v

    @model_validator(mode="after")
    def _stores_apart(self):
        val, test = self.eval.seeds(self.data.seed)
        # only the stores a run makes (eval.val_scenes / test_scenes > 0) must be apart: the
        # config of a held-out store itself (pipeline.run.held_out_config) makes none
        seeds = [self.data.seed] + ([val] if self.eval.val_scenes else []) + (
            [test] if self.eval.test_scenes else [])
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"data.seed ({self.data.seed}), the validation seed ({val}) and the "
                             f"final test seed ({test}) must differ: the three stores must "
                             "hold different scenes (set eval.val_seed / eval.test_seed)")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name
