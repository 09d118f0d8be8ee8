"""Training and fine-tuning SAM 2 on labelled stacks: the data engine's retraining step. Torch; never napari or Qt.

Data: :func:`open_training_data` / :func:`open_starter_data` → :class:`LabeledStack` (frames + linked labels),
:func:`synthetic_stack` for generated ones; :class:`ClipSampler` cuts clips (a pure function of seed and index),
:func:`collate_clips` batches them and :func:`augment_clip` augments a batch on its device. Names are imported on
first use, so ``import napari_sam2.train`` itself loads neither torch nor the data readers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LabeledStack": "napari_sam2.train.labeled_stack",
    "TrainingDataError": "napari_sam2.train.labeled_stack",
    "link_by_overlap": "napari_sam2.train.labeled_stack",
    "load_ctc": "napari_sam2.train.ctc",
    "load_label_store": "napari_sam2.train.loaders",
    "load_ome_zarr": "napari_sam2.train.loaders",
    "load_pair": "napari_sam2.train.loaders",
    "open_starter_data": "napari_sam2.train.stacks",
    "open_training_data": "napari_sam2.train.stacks",
    "SceneParams": "napari_sam2.train.synthetic",
    "draw_scene": "napari_sam2.train.synthetic",
    "synthetic_stack": "napari_sam2.train.synthetic",
    "Clip": "napari_sam2.train.clips",
    "ClipSampler": "napari_sam2.train.clips",
    "augment_clip": "napari_sam2.train.augment",
    "collate_clips": "napari_sam2.train.clips",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'napari_sam2.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
