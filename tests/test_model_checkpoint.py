"""save_model / load_model round trips: identical outputs, config and extras kept, clear
errors."""
import json

import pytest
import torch

import physgm
from physgm.config import ModelConfig, RunConfig
from physgm.model import PhysGM
from physgm.model.backbone import CheckpointError
from physgm.model.checkpoint import (FILE_NAME, checkpoint_file, load_model, read_checkpoint,
                                     save_model)
from tiny_model import TINY as TINY_MODEL

TINY = {**TINY_MODEL, "near": 0.3, "far": 3.0}


def _trained_model(cfg):
    torch.manual_seed(0)
    model = PhysGM(cfg)
    with torch.no_grad():  # move away from the init so a fresh model would differ
        for p in model.parameters():
            if p.requires_grad:  # a frozen DINOv3 keeps its file's weights
                p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def _outputs(model):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 2, 3, 32, 32, generator=g)
    rays = torch.randn(2, 2, 6, 32, 32, generator=g)
    with torch.no_grad():
        out = model(images, rays)
    return [out.gaussians.depth, out.gaussians.colors, out.gaussians.scales, out.physics.logits,
            out.physics.mu, out.physics.log_var]


@pytest.mark.parametrize("as_file", [False, True])
def test_round_trip_gives_identical_outputs(tmp_path, as_file):
    cfg = ModelConfig(**TINY)
    model = _trained_model(cfg)
    path = tmp_path / ("model.pt" if as_file else "ckpt")
    written = save_model(path, model, cfg, extra={"step": 7, "policy_version": 3,
                                                  "metrics": {"loss": 0.5}})
    assert written == checkpoint_file(path) and written.is_file()
    loaded, cfg2 = load_model(path, "cpu")
    assert cfg2 == cfg and not loaded.training
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)
    payload = read_checkpoint(path)
    assert payload["version"] == physgm.__version__
    assert payload["extra"] == {"step": 7, "policy_version": 3, "metrics": {"loss": 0.5}}
    if not as_file:
        info = json.loads((path / "config.json").read_text())
        assert info["model_config"]["near"] == 0.3 and info["extra"]["step"] == 7


def test_run_config_is_stored_and_model_section_returned(tmp_path):
    run = RunConfig(model=ModelConfig(**TINY))
    model = _trained_model(run.model)
    save_model(tmp_path / "c", model, run)
    _, cfg = load_model(tmp_path / "c")
    assert cfg == run.model
    assert read_checkpoint(tmp_path / "c")["run_config"]["model"]["dim"] == 32


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    cfg = ModelConfig(**TINY)
    model = _trained_model(cfg)
    save_model(tmp_path / "c", model, cfg, extra={"step": 1})
    save_model(tmp_path / "c", model, cfg, extra={"step": 2})
    assert read_checkpoint(tmp_path / "c")["extra"]["step"] == 2
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json", FILE_NAME]


def test_errors_are_clear(tmp_path):
    cfg = ModelConfig(**TINY)
    model = _trained_model(cfg)
    with pytest.raises(FileNotFoundError, match="no PhysGM checkpoint"):
        load_model(tmp_path / "absent")
    with pytest.raises(TypeError, match="extra.bad"):
        save_model(tmp_path / "c", model, cfg, extra={"bad": object()})
    with pytest.raises(ValueError, match="include_backbone=False"):
        save_model(tmp_path / "c", model, cfg, include_backbone=False)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a PhysGM checkpoint"):
        load_model(tmp_path / "other.pt")
    save_model(tmp_path / "c.pt", model, cfg)
    payload = torch.load(tmp_path / "c.pt")
    payload["format"] = 99
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_model(tmp_path / "c.pt")
    save_model(tmp_path / "d.pt", model, cfg)
    payload = torch.load(tmp_path / "d.pt")
    payload["model_config"]["dim"] = 64
    torch.save(payload, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="does not match its own model config"):
        load_model(tmp_path / "d.pt")


def test_physics_head_weights_survive_dpo_style_update(tmp_path):
    """The learner publishes a checkpoint after training only the physics head."""
    cfg = ModelConfig(**TINY)
    model = _trained_model(cfg)
    model.freeze_for_dpo()
    with torch.no_grad():
        model.physics_head.material[-1].bias.add_(1.0)
    save_model(tmp_path / "v1", model, cfg, extra={"policy_version": 1})
    loaded, _ = load_model(tmp_path / "v1")
    assert torch.equal(loaded.physics_head.material[-1].bias, model.physics_head.material[-1].bias)


@pytest.mark.slow
def test_dinov3_checkpoint_omits_the_frozen_backbone(tmp_path):
    """The 300 M frozen parameters are re-read from model.backbone_checkpoint on load."""
    from physgm.model.backbone import dinov3_vitl16

    torch.manual_seed(0)
    vit = dinov3_vitl16()
    official = {k.replace("patch_embed.", "patch_embed.proj.").replace("register_tokens",
                                                                       "storage_tokens"): v
                for k, v in vit.state_dict().items()}
    torch.save(official, tmp_path / "dinov3.pth")
    del vit, official
    cfg = ModelConfig(**{**TINY, "patch_size": 16}, backbone="dinov3",
                      backbone_checkpoint=str(tmp_path / "dinov3.pth"))
    model = _trained_model(cfg)
    written = save_model(tmp_path / "c", model, cfg)
    assert written.stat().st_size < 20e6
    assert not any(k.startswith("backbone.") for k in read_checkpoint(tmp_path / "c")["state_dict"])
    loaded, _ = load_model(tmp_path / "c")
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)
