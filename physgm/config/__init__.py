"""Typed configuration: one pydantic model per stage, composed into ``RunConfig``.

YAML files under ``configs/`` hold a ``RunConfig``; every CLI command takes ``--config`` and
any number of ``--set a.b=c`` overrides (values parsed as YAML: ``--set sim.grid_res=64``,
``--set sim.gravity=[0,-9.8,0]``). ``load_config`` is the one loader; a validation error
names the field, the allowed range and the value given.
"""
from __future__ import annotations

# What the single-module physgm.config imported at module level stays importable from it.
from pathlib import Path  # noqa: F401
from typing import Any, Literal, Optional  # noqa: F401

import yaml  # noqa: F401
from pydantic import (BaseModel, ConfigDict, Field, ValidationError,  # noqa: F401
                      field_validator, model_validator)

from physgm.config.loading import (ConfigError, _describe, _merge, _set_path, build_config,
                                   dump_config, flatten, load_config, parse_overrides)
from physgm.config.preference import DPOConfig, RewardConfig
from physgm.config.run import RunConfig
from physgm.config.sections import (DataConfig, ModelConfig, MPMConfig, PretrainConfig,
                                    RenderConfig, _Section)
from physgm.config.serve import _SERVE_SIM, ServeConfig
