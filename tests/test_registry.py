"""The final models as MLflow models in the registry: logged with a signature and an input
example, registered as ``physgm`` under aliases, loadable with pyfunc and servable by
``physgm serve --model-uri models:/physgm@champion`` (default sqlite store)."""
import numpy as np
import pytest
import torch

from dpo_fixtures import make_world, small_cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    return tmp, make_world(tmp)


def test_register_models_and_serve_the_champion(world, monkeypatch):
    import mlflow

    from physgm.config import ServeConfig
    from physgm.model import PhysGM, save_model
    from pipeline.run import register_models
    from runtime import tracking
    from serving.mlflow_model import REGISTERED_NAME, input_example
    from serving.model_source import load_source, resolve_source

    tmp, pretrained = world
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = small_cfg(tmp)
    torch.manual_seed(1)  # a "DPO" model with other weights than the pretrained one
    save_model(cfg.run_dir / "checkpoints" / "dpo", PhysGM(cfg.model), cfg)
    runs = {}
    for stage in ("pretrain", "dpo"):
        with tracking.start_run(cfg, stage) as run:
            runs[stage] = run.info.run_id
    out = register_models(cfg, runs["pretrain"], runs["dpo"])
    assert tracking.tracking_uri(cfg).startswith("sqlite:///")
    assert out["pretrained"]["version"] == 1 and out["champion"]["version"] == 2

    client = tracking.client(cfg)
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    assert exp.tags[tracking.KIND_TAG] == tracking.KIND  # MLflow's model-training view
    assert client.get_model_version_by_alias(REGISTERED_NAME, "champion").run_id == runs["dpo"]
    mlflow.set_tracking_uri(tracking.tracking_uri(cfg))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{REGISTERED_NAME}@champion")
    assert pyfunc.metadata.get_input_schema() is not None  # the signature
    table = pyfunc.predict(input_example(cfg, views=3))
    assert len(table) == 1 and table["material"][0] in {"jelly", "metal", "plasticine", "sand",
                                                        "snow"}
    assert 0 < table["probability"][0] <= 1 and table["E"][0] > 0

    # `physgm serve --model-uri models:/physgm@champion` loads the DPO weights
    source = resolve_source(ServeConfig(model_uri=f"models:/{REGISTERED_NAME}@champion"))
    model, _, version = load_source(source, cfg.model)
    dpo = torch.load(cfg.run_dir / "checkpoints" / "dpo" / "model.pt", weights_only=False)
    name, tensor = next(iter(dpo["state_dict"].items()))
    assert torch.equal(model.state_dict()[name], tensor) and "champion" in version
    pre, _, _ = load_source(resolve_source(ServeConfig(
        model_uri=f"models:/{REGISTERED_NAME}@pretrained")), cfg.model)
    assert not torch.equal(pre.state_dict()[name], tensor)
    assert np.isfinite(table["E_log10_std"][0])
