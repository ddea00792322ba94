"""Serving a model logged to MLflow: a runs:/ URI is downloaded and loaded (real sqlite
tracking store in a temporary directory)."""
import pytest
import torch

from physgm.config import ModelConfig, ServeConfig
from tiny_model import TINY


def test_runs_uri_is_downloaded_and_loaded(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from physgm.model import PhysGM, save_model
    from serving.model_source import load_source, resolve_source

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mcfg = ModelConfig(**TINY)
    model = PhysGM(mcfg, load_backbone=False)
    save_model(tmp_path / "ckpt", model, mcfg)
    mlflow.set_experiment("physgm-serve-test")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "ckpt"), artifact_path="checkpoints/final")
    uri = f"runs:/{run.info.run_id}/checkpoints/final"

    source = resolve_source(ServeConfig(model_uri=uri), tmp_path)
    assert source.kind == "mlflow" and source.location == uri
    loaded, cfg, version = load_source(source, ModelConfig())
    assert cfg.dim == TINY["dim"] and version.startswith(uri + "@")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="MLFLOW_TRACKING_URI"):
        load_source(resolve_source(ServeConfig(model_uri="runs:/0123456789abcdef/nothing"),
                                   tmp_path), ModelConfig())
