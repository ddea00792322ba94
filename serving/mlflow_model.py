"""PhysGM as an MLflow model: logged with a signature and an input example, registered as
``physgm`` with aliases (``champion`` = the DPO model, ``pretrained``), loadable anywhere
with ``mlflow.pyfunc.load_model("models:/physgm@champion")`` and servable with
``physgm serve --model-uri models:/physgm@champion``.

The MLflow model directory holds the PhysGM checkpoint as its artifact ``checkpoint/``
(``model.pt`` + ``config.json``: what ``physgm.model.load_model`` reads), so the same
weights serve through the pyfunc flavour (one prediction per batch item) or through
physgm's own Ray Serve app (``checkpoint_dir`` finds them in a downloaded model)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import mlflow
import numpy as np

from physgm.config import RunConfig
from physgm.materials import PARAM_NAMES
from runtime import tracking

REGISTERED_NAME = "physgm"
ARTIFACT = "checkpoint"


def checkpoint_dir(path: str | Path) -> Path:
    """The PhysGM checkpoint inside a downloaded MLflow model (``MLmodel`` present), else
    ``path`` itself."""
    import yaml

    path = Path(path)
    if not (path / "MLmodel").is_file():
        return path
    meta = yaml.safe_load((path / "MLmodel").read_text())
    rel = (((meta.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
           ).get(ARTIFACT, {}).get("path")
    if not rel or not (path / rel / "model.pt").is_file():
        raise FileNotFoundError(f"{path} is an MLflow model without a PhysGM checkpoint "
                                f"(artifact '{ARTIFACT}' with a model.pt): log it with "
                                "serving.mlflow_model.log_physgm_model")
    return path / rel


class PhysGMPyfunc(mlflow.pyfunc.PythonModel):
    """``predict({"images": (B, V, H, W, 3) uint8})`` → a table, one row per batch item: the
    most probable material, its probability, and each parameter's mean (SI units; ``E``
    in Pa) with ``log10`` mean and std for the log-scale ones. Views are taken on the
    default orbit (``serve.default_camera_*``), as the HTTP API does without cameras."""

    def load_context(self, context) -> None:
        from physgm.model import load_model

        self.model, self.cfg = load_model(context.artifacts[ARTIFACT], "cpu")
        self.model.eval()

    def predict(self, context, model_input, params: Optional[dict] = None):
        import pandas as pd
        import torch

        from physgm.config import ServeConfig
        from physgm.model import distribution
        from serving.inputs import CameraDefaults, prepare_views

        images = np.asarray(model_input["images"] if isinstance(model_input, dict)
                            else model_input)
        if images.ndim != 5 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (B, V, H, W, 3) uint8, got {images.shape} "
                             f"{images.dtype}")
        defaults = CameraDefaults.from_config(ServeConfig())
        rows = []
        for views in images:
            x = prepare_views(list(views), None, self.cfg.image_size, defaults)
            with torch.inference_mode():
                tokens = self.model.encode_global(torch.tensor(x.images)[None],
                                                  torch.tensor(x.plucker)[None])
                stats = distribution(self.model.physics(tokens)).param_stats()[0]
            name = stats["material"]["name"]
            row = {"material": name, "probability": stats["material"]["probs"][name]}
            for p in PARAM_NAMES:
                s = stats["params"].get(p, {})
                row[p] = s.get("mean", np.nan)
                row[f"{p}_log10_mean"] = s.get("log10_mean", np.nan)
                row[f"{p}_log10_std"] = s.get("log10_std", np.nan)
            rows.append(row)
        return pd.DataFrame(rows)


def input_example(cfg: RunConfig, views: int = 2) -> dict:
    """A small valid input: ``views`` grey views of the model's input size, batch of one."""
    s = cfg.model.image_size
    return {"images": np.full((1, views, s, s, 3), 128, np.uint8)}


def log_physgm_model(cfg: RunConfig, run_id: str, checkpoint: str | Path,
                     name: str = "model") -> str:
    """Log ``checkpoint`` (a PhysGM checkpoint directory) as the MLflow model ``name`` of the
    run ``run_id`` (signature inferred from a real prediction on ``input_example``); returns
    its model URI."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import Schema, TensorSpec

    mlflow.set_tracking_uri(tracking.tracking_uri(cfg))
    example = input_example(cfg)
    python_model = PhysGMPyfunc()

    class _Context:  # the signature comes from one real prediction of this checkpoint
        artifacts = {ARTIFACT: str(checkpoint)}

    python_model.load_context(_Context())
    outputs = infer_signature(example, python_model.predict(None, example)).outputs
    # any number of views of any size: (B, V, H, W, 3) uint8
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8),
                                                         (-1, -1, -1, -1, 3), "images")]),
                               outputs=outputs)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.pyfunc.log_model(
            name=name, python_model=PhysGMPyfunc(), artifacts={ARTIFACT: str(checkpoint)},
            signature=signature, input_example=example,
            pip_requirements=[f"physgm=={_version()}", "torch", "numpy", "pandas"])
    return info.model_uri


def register(cfg: RunConfig, model_uri: str, alias: str,
             name: str = REGISTERED_NAME) -> int:
    """Register ``model_uri`` as a new version of the registered model ``name`` and point
    ``alias`` at it; returns the version number."""
    client = tracking.client(cfg)
    mlflow.set_tracking_uri(tracking.tracking_uri(cfg))
    version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def _version() -> str:
    import physgm

    return physgm.__version__

