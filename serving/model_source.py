"""Where the served weights come from, and loading them (no Ray).

A ``ModelSource`` is one of: a checkpoint path (``physgm.model.checkpoint.load_model``),
an MLflow URI of a checkpoint directory (downloaded, then loaded), or a random
initialisation with a seed (smoke tests). ``model_version`` labels the weights in every
response: the configured label if any, else one derived from the weights' content
(``<name>@<sha256 prefix>``), so two replicas serving the same file report the same version.

Besides the default source, one application serves further models side by side, selected
per request by an id (Ray Serve model multiplexing): ``resolve_models`` gives them, by
default the run's ``pretrained`` and ``dpo`` checkpoints (see its docstring).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from physgm.config import ModelConfig, ServeConfig

Kind = Literal["checkpoint", "mlflow", "random"]
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")   # runs:/…, models:/…, s3://…


@dataclass(frozen=True)
class ModelSource:
    kind: Kind
    location: Optional[str] = None   # path or MLflow URI; None for "random"
    seed: int = 0
    model_version: Optional[str] = None

    def to_user_config(self) -> dict:
        """The model deployment's ``user_config`` keys for this source."""
        return asdict(self)

    @classmethod
    def from_user_config(cls, uc: dict) -> "ModelSource":
        kind = uc.get("kind")
        if kind not in ("checkpoint", "mlflow", "random"):
            raise ValueError(f"model source kind must be checkpoint, mlflow or random, "
                             f"got {kind!r}")
        if kind != "random" and not uc.get("location"):
            raise ValueError(f"a {kind} model source needs a location (path or URI)")
        return cls(kind, uc.get("location"), int(uc.get("seed", 0) or 0), uc.get("model_version"))

    def describe(self) -> str:
        return f"random init (seed {self.seed})" if self.kind == "random" else \
            f"{self.kind} {self.location}"


# final checkpoints of a run: pretraining's, and DPO's (learner.dpo writes checkpoints/dpo)
FINAL_NAMES = ("final", "dpo")


def newest_checkpoint(out_dir: str | Path) -> Optional[Path]:
    """The newest ``<out_dir>/*/checkpoints/{final,dpo}`` holding a model.pt, by the
    file's modification time (after ``physgm dpo`` that is the DPO model)."""
    found = [p for name in FINAL_NAMES for p in Path(out_dir).glob(f"*/checkpoints/{name}")
             if (p / "model.pt").is_file()]
    return max(found, key=lambda p: (p / "model.pt").stat().st_mtime) if found else None


def resolve_source(cfg: ServeConfig, out_dir: str | Path = "runs") -> ModelSource:
    """``cfg.checkpoint`` > ``cfg.model_uri`` > ``cfg.random_init`` > the newest
    ``<out_dir>/*/checkpoints/final`` (or ``…/dpo``). Raises FileNotFoundError saying what
    to pass."""
    if cfg.checkpoint and not _URI.match(cfg.checkpoint):
        path = Path(cfg.checkpoint)
        target = path if path.suffix in (".pt", ".pth") else path / "model.pt"
        if not target.is_file():
            raise FileNotFoundError(f"no PhysGM checkpoint at {target}: pass a directory "
                                    "holding model.pt (e.g. runs/<name>/checkpoints/final) "
                                    "or the .pt file")
        return ModelSource("checkpoint", str(path.resolve()), 0, cfg.model_version)
    if cfg.checkpoint:  # a URI given as --checkpoint
        return ModelSource("mlflow", cfg.checkpoint, 0, cfg.model_version)
    if cfg.model_uri:
        return ModelSource("mlflow", cfg.model_uri, 0, cfg.model_version)
    if cfg.random_init:
        return ModelSource("random", None, 0, cfg.model_version)
    newest = newest_checkpoint(out_dir)
    if newest is None:
        raise FileNotFoundError(f"no trained model under {out_dir}/*/checkpoints/final: train "
                                "one (physgm run), or pass --checkpoint PATH, --model-uri "
                                "runs:/<run_id>/<path>, or --random-init for an untrained model")
    return ModelSource("checkpoint", str(newest.resolve()), 0, cfg.model_version)


MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
_REGISTERED = re.compile(r"^models:/([^/@]+)@[^/]+$")
REGISTRY_ALIASES = {"pretrained": "pretrained", "dpo": "champion"}   # model id → alias


def _registry_pair(name: str) -> dict[str, ModelSource]:
    """{pretrained, dpo} → ``models:/<name>@pretrained`` and ``…@champion`` when both aliases
    exist; {} when they do not or the registry cannot be asked.

    The registry is the one MLflow resolves, the store ``_download`` loads the models from:
    MLFLOW_TRACKING_URI (MLFLOW_REGISTRY_URI when set), or the URI this process gave
    ``mlflow.set_tracking_uri``, which exports it as MLFLOW_TRACKING_URI too."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient()
        for alias in REGISTRY_ALIASES.values():
            client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - no registry, no such model or alias: no pair
        return {}
    return {mid: ModelSource("mlflow", f"models:/{name}@{alias}")
            for mid, alias in REGISTRY_ALIASES.items()}


def parse_source(text: str, model_version: Optional[str] = None) -> ModelSource:
    """``random`` / ``random:SEED``, an MLflow URI (``runs:/…``, ``models:/…``) or a
    checkpoint path (a directory holding model.pt, or the .pt file)."""
    text = str(text).strip()
    if text == "random" or text.startswith("random:"):
        seed = text.partition(":")[2] or "0"
        if not seed.isdigit():
            raise ValueError(f"model source {text!r}: the seed after 'random:' must be an int")
        return ModelSource("random", None, int(seed), model_version)
    if _URI.match(text):
        return ModelSource("mlflow", text, 0, model_version)
    path = Path(text)
    target = path if path.suffix in (".pt", ".pth") else path / "model.pt"
    if not target.is_file():
        raise FileNotFoundError(f"model source {text!r}: no PhysGM checkpoint at {target}")
    return ModelSource("checkpoint", str(path.resolve()), 0, model_version)


def resolve_models(cfg: ServeConfig, default: ModelSource) -> dict[str, ModelSource]:
    """The models served beside the default one, by id. ``cfg.models`` ({id: source text,
    see ``parse_source``}) when given; otherwise, for a checkpoint ``<run>/checkpoints/<x>``,
    the run's ``pretrained`` (``checkpoints/final``) and ``dpo`` (``checkpoints/dpo``) when
    both exist; for a random initialisation two stand-ins, ``pretrained`` (its seed) and
    ``dpo`` (seed + 1), so the w/o-vs-w/ DPO comparison can be exercised without training;
    for a registered model ``models:/<name>@<alias>``, its aliases ``pretrained`` and
    ``champion`` (the DPO model) when the registry (MLFLOW_TRACKING_URI) has both.
    Anything else (a run's artifact URI, a lone checkpoint): none."""
    if cfg.models:
        bad = [k for k in cfg.models if not MODEL_ID.match(k)]
        if bad:
            raise ValueError(f"serve.models ids {bad} must be 1–64 characters of letters, "
                             "digits and _ . @ : -")
        return {k: parse_source(v) for k, v in cfg.models.items()}
    if default.kind == "random":
        return {"pretrained": default, "dpo": ModelSource("random", None, default.seed + 1)}
    registered = _REGISTERED.match(default.location or "") if default.kind == "mlflow" else None
    if registered:
        return _registry_pair(registered.group(1))
    if default.kind == "checkpoint":
        path = Path(default.location)
        ckpts = path.parent if path.is_dir() else path.parent.parent
        found = {mid: ckpts / name for mid, name in (("pretrained", "final"), ("dpo", "dpo"))}
        if ckpts.name == "checkpoints" and all((p / "model.pt").is_file()
                                               for p in found.values()):
            return {mid: ModelSource("checkpoint", str(p.resolve())) for mid, p in found.items()}
    return {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(uri: str) -> Path:
    """A local copy of an MLflow artifact (runs:/, models:/, mlflow-artifacts:/ ...)."""
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as err:  # noqa: BLE001 - MLflow raises many types; the message matters
        raise FileNotFoundError(f"cannot download the model from MLflow URI {uri!r} ({err}); "
                                "check MLFLOW_TRACKING_URI and the run id / model name") from None


def load_source(source: ModelSource, model_cfg: ModelConfig,
                device: str | torch.device = "cpu"):
    """Build the model of ``source`` in eval mode → (PhysGM, ModelConfig, model_version)."""
    from physgm.model import PhysGM, load_model
    from physgm.model.checkpoint import checkpoint_file

    if source.kind == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(source.seed)
            model = PhysGM(model_cfg, load_backbone=False)
        digest = hashlib.sha256(model_cfg.model_dump_json().encode()).hexdigest()[:8]
        version = source.model_version or f"random-init-seed{source.seed}-{digest}"
        return model.to(device).eval(), model_cfg, version
    if source.kind == "checkpoint":
        path = Path(source.location)
    else:  # a checkpoint directory, or an MLflow model holding one (models:/physgm@champion)
        from serving.mlflow_model import checkpoint_dir

        path = checkpoint_dir(_download(source.location))
    model, cfg = load_model(path, device=device)
    if source.model_version:
        return model, cfg, source.model_version
    file = checkpoint_file(path)
    if source.kind == "mlflow":
        name = source.location
    elif path.suffix in (".pt", ".pth"):
        name = path.stem
    elif path.parent.name == "checkpoints":           # <run>/checkpoints/<name>
        name = f"{path.parents[1].name}/{path.name}"
    else:
        name = path.name
    return model, cfg, f"{name}@{_sha256(file)[:12]}"
