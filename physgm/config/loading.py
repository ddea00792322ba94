"""The one config loader: ``--set`` overrides, merging, validation errors that say what to
change, and YAML/flat views of a resolved ``RunConfig``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from physgm.config.run import RunConfig


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
