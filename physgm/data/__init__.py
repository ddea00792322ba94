"""Scene datasets (docs/data.md): the zarr scene store, the synthetic generator, the
annotator's noisy labels, the torch Dataset and the converter for real captures.

Names are imported lazily so that ``physgm --help`` (which registers ``physgm data``)
does not load torch, zarr or warp.

- ``store``: ``open_store``, ``write_scene``, ``read_scene``, ``list_scenes``, ``splits``, ``Scene``,
  ``has_video``, ``is_image_only`` (image-only scenes: no GT video)
- ``dataset``: ``SceneDataset``, ``collate_views``, ``bucket_views`` (one V per batch),
  ``load_scene_tensors``, ``scene_mpm_config``
- ``synth``: ``generate_scene`` (one scene); ``build``: ``synthesize`` (a dataset, in parallel)
- ``annotator``: ``annotate``, ``confusion_matrix``; ``convert``: ``convert_folder``
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Scene": "store", "StoreError": "store", "open_store": "store", "write_scene": "store",
    "read_scene": "store", "list_scenes": "store", "splits": "store", "has_video": "store",
    "is_image_only": "store", "SceneDataset": "dataset", "collate_views": "dataset",
    "bucket_views": "dataset", "load_scene_tensors": "dataset",
    "scene_mpm_config": "dataset", "generate_scene": "synth", "synthesize": "build",
    "annotate": "annotator", "confusion_matrix": "annotator", "convert_folder": "convert",
    "ConvertError": "convert",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"physgm.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'physgm.data' has no attribute {name!r}")
