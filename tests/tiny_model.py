"""The tiny PhysGM config the tests build random models from (seconds on one CPU core)."""

TINY = dict(image_size=32, patch_size=8, dim=32, depth=2, heads=2, backbone_depth=1,
            dpt_features=16, physics_hidden=32)
