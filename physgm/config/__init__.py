"""Typed configuration: one pydantic model per stage, composed into ``RunConfig``.

YAML files under ``configs/`` hold a ``RunConfig``; every CLI command takes ``--config`` and
any number of ``--set a.b=c`` overrides (values parsed as YAML: ``--set sim.grid_res=64``,
``--set sim.gravity=[0,-9.8,0]``). ``load_config`` is the one loader; a validation error
names the field, the allowed range and the value given.
"""
from __future__ import annotations

from physgm.config.loading import (ConfigError, build_config, dump_config, flatten, load_config,
                                   parse_overrides)
from physgm.config.evaluation import EvalConfig
from physgm.config.preference import DPOConfig, RewardConfig
from physgm.config.run import RunConfig, pretrain_store_config
from physgm.config.sections import (DataConfig, ModelConfig, MPMConfig, PretrainConfig,
                                    RenderConfig)
from physgm.config.serve import ServeConfig

__all__ = ["ConfigError", "DPOConfig", "DataConfig", "EvalConfig", "MPMConfig", "ModelConfig", "PretrainConfig",
           "RenderConfig", "RewardConfig", "RunConfig", "ServeConfig", "build_config",
           "dump_config", "flatten", "load_config", "parse_overrides", "pretrain_store_config"]
