"""The photometric token: the object pixels' colour statistics, read by the physics head."""
import pytest
import torch

from physgm.config import ModelConfig
from physgm.model import PhysGM
from physgm.model.photometric import N_STATS, photometric_stats
from pretrain.engine import param_groups
from runtime.scenes import encoder_fingerprint
from tiny_model import TINY


def _square(colour, size=16, side=8, views=1):
    """(1, V, 3, size, size): a ``side``² square of ``colour`` on black in every view."""
    img = torch.zeros(1, views, 3, size, size)
    img[..., :side, :side] = torch.tensor(colour)[None, None, :, None, None]
    return img


def test_stats_of_a_flat_square():
    s = photometric_stats(_square((0.8, 0.2, 0.2)))[0]
    assert s.shape == (N_STATS,)
    assert s[0] == pytest.approx(10 * 64 / 256)                    # coverage × 10
    assert s[1:4].tolist() == pytest.approx([0.8, 0.2, 0.2])       # mean colour
    assert s[4:7].abs().max() < 1e-3                               # flat: no spread
    assert s[7] == pytest.approx(0.8) and s[9] == pytest.approx(0.75)  # brightness, saturation
    assert s[11] == pytest.approx(1.0) and s[12] == pytest.approx(0.0)  # all near the peak
    assert s[13] == pytest.approx(0.0, abs=1e-6)                   # no texture


def test_stats_average_views_and_ignore_empty_ones():
    two = torch.cat([_square((0.5, 0.5, 0.5)), torch.zeros(1, 1, 3, 16, 16)], dim=1)
    s = photometric_stats(two)[0]
    assert s[0] == pytest.approx(10 * 64 / 256 / 2)                # the empty view counts 0
    assert s[1] == pytest.approx(0.25)
    # a dimmer rim (translucent edge) shows in the share of pixels under half the peak
    rim = _square((0.9, 0.9, 0.9))
    rim[..., :8, 6:8] = 0.3
    assert photometric_stats(rim)[0, 12] == pytest.approx(16 / 64)
    with pytest.raises(ValueError, match=r"\(B, V, 3, H, W\)"):
        photometric_stats(torch.zeros(1, 3, 16, 16))


def _model(**kw):
    torch.manual_seed(0)
    return PhysGM(ModelConfig(**{**TINY, **kw}))


def test_model_reads_the_photometric_token():
    cfg = ModelConfig(**TINY, photometric_token=True)
    assert cfg.n_physics_tokens == ModelConfig(**TINY).n_physics_tokens + 1
    model = _model(photometric_token=True).eval()
    plucker = torch.zeros(1, 2, 6, 32, 32)
    red, grey = _square((0.9, 0.1, 0.1), 32, 12, 2), _square((0.5, 0.5, 0.5), 32, 12, 2)
    tok_red, tok_grey = model.encode_global(red, plucker), model.encode_global(grey, plucker)
    assert tok_red.shape == (1, cfg.n_physics_tokens, cfg.dim)
    g = cfg.n_global_tokens
    assert not torch.allclose(tok_red[:, g], tok_grey[:, g])     # the photometric token
    # tokens of a model without it do not fit this head: a clear error, not a silent misread
    with pytest.raises(ValueError, match="photometric"):
        model.physics(_model().encode_global(red, plucker))


def test_photometric_projection_trains_with_the_head_and_freezes_for_dpo():
    model = _model(photometric_token=True)
    groups = param_groups(model, 0.05, lr=1e-3, head_lr_scale=10.0)
    fast = {id(p) for grp in groups if grp.get("lr") == pytest.approx(1e-2) for p in grp["params"]}
    assert all(id(p) in fast for p in model.photometric.parameters())
    assert all(id(p) in fast for p in model.physics_head.parameters())
    assert id(model.global_tokens) not in fast
    before = encoder_fingerprint(model)
    trainable = model.freeze_for_dpo()
    assert not any(n.startswith("photometric.") for n in trainable)   # part of the frozen encoder
    with torch.no_grad():
        model.photometric[0].bias.add_(1.0)
    assert encoder_fingerprint(model) != before                      # cached tokens invalidated
