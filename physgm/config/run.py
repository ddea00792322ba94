"""``RunConfig``: the whole job, one section per stage."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

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
        pre = self.data.pretrain_store_seed()
        # only the stores a run makes (eval.val_scenes / test_scenes / data.pretrain_scenes
        # > 0) must be apart: the config of a held-out store itself
        # (pipeline.run.held_out_config) makes none
        seeds = [self.data.seed] + ([val] if self.eval.val_scenes else []) + (
            [test] if self.eval.test_scenes else []) + (
            [pre] if self.data.pretrain_scenes else [])
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"data.seed ({self.data.seed}), the validation seed ({val}), the "
                             f"final test seed ({test})"
                             + (f" and the pretraining seed ({pre})"
                                if self.data.pretrain_scenes else "")
                             + " must differ: the stores must hold different scenes (set "
                             "eval.val_seed / eval.test_seed / data.pretrain_seed)")
        return self

    @model_validator(mode="after")
    def _views_fit_the_model(self):
        top = self.model.max_views
        if self.dpo.encode_views > top:
            raise ValueError(f"dpo.encode_views ({self.dpo.encode_views}) exceeds "
                             f"model.max_views ({top})")
        wide = [v for v in self.pretrain.report_views if v > top]
        if wide:
            raise ValueError(f"pretrain.report_views {wide} exceed model.max_views ({top})")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def pretrain_store_config(cfg: RunConfig) -> Optional[RunConfig]:
    """The config whose ``data`` is the pretraining store of ``cfg`` (None when
    ``data.pretrain_scenes`` is 0): ``data.pretrain_scenes`` image-only scenes made like the
    training data, with the pretraining seed, at ``data.pretrain_store()``; split into
    train and val (``data.val_fraction``), no test split (the final test store has its
    own seed)."""
    path = cfg.data.pretrain_store()
    if path is None:
        return None
    data = cfg.data.model_copy(update={
        "seed": cfg.data.pretrain_store_seed(), "n_scenes": cfg.data.pretrain_scenes,
        "test_fraction": 0.0, "path": path, "image_only": True, "pretrain_scenes": 0,
        "pretrain_path": None, "pretrain_seed": None})
    # the pretraining store makes no stores of its own (and its seed is now data.seed)
    ev = cfg.eval.model_copy(update={"val_scenes": 0, "test_scenes": 0})
    return RunConfig.model_validate({**cfg.model_dump(), "data": data.model_dump(),
                                     "eval": ev.model_dump()})
