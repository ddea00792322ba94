"""DINOv3 ViT-L/16 architecture, official-checkpoint key mapping and loader, RoPE, and the
frozen dinov3 path through PhysGM."""
import math

import pytest
import torch

from physgm.config import ModelConfig
from physgm.model import PhysGM
from physgm.model.backbone import (Backbone, CheckpointError, dinov3_vitl16, load_dinov3,
                                   map_dinov3_state_dict)
from physgm.model.layers import RopeEmbedding, apply_rope
from physgm.model.vit import ViT


def _small_dinov3_like(seed=0):
    """Same class and layout as ViT-L/16, reduced depth/width."""
    torch.manual_seed(seed)
    return ViT(patch_size=16, dim=64, depth=2, heads=4, n_registers=4, layer_scale=1e-5)


def _official_names(vit: ViT) -> dict:
    """Write ``vit``'s weights under the official DINOv3 names (independent of the loader's
    table): patch_embed.proj, storage_tokens, qkv bias + bias_mask, mask_token, rope periods."""
    out = {}
    for k, v in vit.state_dict().items():
        k = k.replace("patch_embed.", "patch_embed.proj.").replace("register_tokens", "storage_tokens")
        out[k] = v.clone()
    d = vit.dim
    for i in range(len(vit.blocks)):
        out[f"blocks.{i}.attn.qkv.bias"] = torch.randn(3 * d)  # key part must end up masked
        mask = torch.ones(3 * d)
        mask[d:2 * d] = 0
        out[f"blocks.{i}.attn.qkv.bias_mask"] = mask
    out["mask_token"] = torch.zeros(1, d)
    out["rope_embed.periods"] = vit.rope.periods()
    return out


def test_vitl16_architecture_matches_dinov3():
    with torch.device("meta"):
        vit = dinov3_vitl16()
    sd = vit.state_dict()
    assert sd["patch_embed.weight"].shape == (1024, 3, 16, 16)
    assert sd["register_tokens"].shape == (1, 4, 1024)
    assert sd["cls_token"].shape == (1, 1, 1024)
    assert sd["blocks.23.attn.qkv.weight"].shape == (3072, 1024)
    assert sd["blocks.23.mlp.fc1.weight"].shape == (4096, 1024)
    assert sd["blocks.0.ls1.gamma"].shape == (1024,)
    assert "blocks.24.norm1.weight" not in sd
    n = sum(p.numel() for p in vit.parameters())
    assert 300e6 < n < 306e6  # ViT-L/16 + 4 registers: ~303 M
    assert vit.rope.periods().shape == (64 // 4,)


def test_rope_is_a_rotation_and_relative():
    rope = RopeEmbedding(16, base=100.0)
    sin, cos = rope(3, 5)
    assert sin.shape == cos.shape == (15, 16)
    x = torch.randn(1, 2, 1 + 15, 16)
    y = apply_rope(x, (sin, cos), n_prefix=1)
    assert torch.equal(y[:, :, 0], x[:, :, 0])                        # prefix untouched
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # norm-preserving
    # q·k after rotation depends only on the offset between positions
    q = torch.randn(16)
    k = torch.randn(16)
    qs = apply_rope(q.expand(1, 1, 15, 16), (sin, cos), 0)[0, 0]
    ks = apply_rope(k.expand(1, 1, 15, 16), (sin, cos), 0)[0, 0]
    # positions (0,0)->(0,1) and (1,2)->(1,3) have the same offset
    assert torch.allclose(qs[0] @ ks[1], qs[7] @ ks[8], atol=1e-4)
    # first frequency: period base^0 = 1 over the [-1, 1] coordinate
    c = 2 * (0.5 / 3) - 1
    assert math.isclose(float(sin[0, 0]), math.sin(2 * math.pi * c), abs_tol=1e-5)


def test_dinov3_loader_round_trip(tmp_path):
    src = _small_dinov3_like(0)
    official = _official_names(src)
    path = tmp_path / "dinov3_small.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in official.items()}}, path)

    dst = _small_dinov3_like(1)
    load_dinov3(dst, path)
    mapped, extras = map_dinov3_state_dict(official)
    assert set(mapped) == set(dst.state_dict())           # every key maps
    assert "rope_periods" in extras
    d = src.dim
    for i in range(2):
        bias = dst.blocks[i].attn.qkv.bias
        assert torch.all(bias[d:2 * d] == 0)               # key bias masked like DINOv3
        assert torch.equal(bias[:d], official[f"blocks.{i}.attn.qkv.bias"][:d])
    for k, v in src.state_dict().items():
        if ".attn.qkv.bias" not in k:
            assert torch.equal(dst.state_dict()[k], v), k
    # identical outputs once the source applies the same masked bias
    with torch.no_grad():
        for i in range(2):
            src.blocks[i].attn.qkv.bias.copy_(dst.blocks[i].attn.qkv.bias)
    x = torch.rand(2, 3, 32, 48)
    assert torch.allclose(src(x), dst(x), atol=1e-6)
    assert dst(x).shape == (2, 2 * 3, 64)

    # a flat state dict (no wrapper) loads too
    torch.save(official, tmp_path / "flat.pth")
    load_dinov3(_small_dinov3_like(2), tmp_path / "flat.pth")


def test_dinov3_loader_errors_name_file_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone_checkpoint"):
        load_dinov3(_small_dinov3_like(), None)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_dinov3(_small_dinov3_like(), tmp_path / "nope.pth")
    official = _official_names(_small_dinov3_like())
    del official["blocks.1.mlp.fc2.weight"]
    official["blocks.1.mlp.w3.weight"] = torch.zeros(3)
    torch.save(official, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing 1 keys: blocks\.1\.mlp\.fc2\.weight") as err:
        load_dinov3(_small_dinov3_like(), tmp_path / "broken.pth")
    assert "blocks.1.mlp.w3.weight" in str(err.value)
    wide = ViT(patch_size=16, dim=128, depth=2, heads=4, n_registers=4)
    torch.save(_official_names(_small_dinov3_like()), tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_dinov3(wide, tmp_path / "small.pth")
    official = _official_names(_small_dinov3_like())
    official["rope_embed.periods"] = official["rope_embed.periods"] * 2
    torch.save(official, tmp_path / "rope.pth")
    with pytest.raises(CheckpointError, match="RoPE periods"):
        load_dinov3(_small_dinov3_like(), tmp_path / "rope.pth")


def test_config_rejects_dinov3_with_wrong_patch():
    with pytest.raises(ValueError, match="patch_size=16"):
        ModelConfig(backbone="dinov3", patch_size=8)


def test_backbone_dinov3_missing_checkpoint_is_clear():
    cfg = ModelConfig(backbone="dinov3", patch_size=16, backbone_checkpoint="missing/dinov3.pth")
    with pytest.raises(FileNotFoundError, match="missing/dinov3.pth"):
        Backbone(cfg)


def test_physgm_with_frozen_dinov3_backbone():
    """Full ViT-L/16 (random weights, load_backbone=False): frozen, eval, no gradients."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="dinov3", patch_size=16, image_size=32, dim=32, depth=2, heads=2,
                      dpt_features=16, physics_hidden=32)
    model = PhysGM(cfg, load_backbone=False).train()
    assert not model.backbone.vit.training                 # stays in eval mode
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert isinstance(model.proj, torch.nn.Linear) and model.proj.in_features == 1024
    images = torch.rand(1, 2, 3, 32, 32)
    rays = torch.randn(1, 2, 6, 32, 32)
    out = model(images, rays)
    assert out.gaussians.depth.shape == (1, 2, 32, 32)
    (out.gaussians.depth.mean() + out.physics.logits.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.proj.weight.grad is not None


@pytest.mark.slow
def test_backbone_loads_full_size_official_checkpoint(tmp_path):
    """Full ViT-L/16 through Backbone(cfg): 1.2 GB file of random weights, official names."""
    torch.manual_seed(0)
    src = dinov3_vitl16().eval()
    path = tmp_path / "dinov3_vitl16_random.pth"
    official = _official_names(src)
    torch.save({"model": official}, path)
    with torch.no_grad():
        for i, blk in enumerate(src.blocks):
            blk.attn.qkv.bias.copy_(official[f"blocks.{i}.attn.qkv.bias"]
                                    * official[f"blocks.{i}.attn.qkv.bias_mask"])
    del official
    cfg = ModelConfig(backbone="dinov3", patch_size=16, backbone_checkpoint=str(path))
    backbone = Backbone(cfg)
    images = torch.rand(1, 3, 32, 32)
    x = (images - backbone.mean) / backbone.std
    with torch.no_grad():
        assert torch.allclose(backbone(images), src(x), atol=1e-5)
