"""Training data in: every source becomes a list of :class:`LabeledStack` (frames + labels linked over frames).

- :func:`open_training_data` takes paths and dispatches by what each one is: a label store (ours, beside its image),
  a Cell Tracking Challenge folder, an OME-Zarr with ``labels/``, an .npz holding images and labels, an image with
  its label store beside it, or an ``(image, labels)`` pair (a tuple or ``"IMAGE:LABELS"``).
- :func:`open_starter_data` gives the training part of the openly licensed stacks in ``shared/data`` (see
  :mod:`napari_sam2.train.splits`); never the held-out frames, never the Cell Tracking Challenge sets.

Every problem is a :class:`TrainingDataError` with one line naming the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_sam2.io import LabelStore, LabelStoreError
from napari_sam2.io.stack_formats import is_zarr_path
from napari_sam2.train.ctc import ctc_sequences, load_ctc
from napari_sam2.train.labeled_stack import LabeledStack, TrainingDataError, link_by_overlap
from napari_sam2.train.loaders import has_ome_labels, load_label_store, load_ome_zarr, load_pair, npz_has_pair
from napari_sam2.train.splits import OPEN_SPLITS

__all__ = [
    "LabeledStack",
    "TrainingDataError",
    "link_by_overlap",
    "load_ctc",
    "load_label_store",
    "load_ome_zarr",
    "load_pair",
    "open_starter_data",
    "open_training_data",
]

STORE_SUFFIX = ".sam2.zarr"
IMAGE_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr", ".tif", ".tiff", ".zarr", ".npz", ".npy")

TrainingPath = str | Path | tuple[str | Path, str | Path]


def _is_label_store(path: Path) -> bool:
    if not is_zarr_path(path):
        return False
    try:
        LabelStore.open(path, read_only=True)
    except LabelStoreError:
        return False
    return True


def _image_beside(store: Path) -> Path:
    """The image a label store ``<stem>.sam2.zarr`` was made for: ``<stem>.<tif, zarr, …>`` in the same folder."""
    stem = store.name[: -len(STORE_SUFFIX)] if store.name.endswith(STORE_SUFFIX) else store.stem
    for suffix in IMAGE_SUFFIXES:
        candidate = store.parent / f"{stem}{suffix}"
        if candidate.exists() and candidate != store:
            return candidate
    raise TrainingDataError(
        f"label store {store}: no image {stem}.tif/.zarr/… beside it; give the pair (image, store) instead"
    )


def _store_beside(image: Path) -> Path | None:
    name = image.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            store = image.parent / f"{name[: -len(suffix)]}{STORE_SUFFIX}"
            return store if store.is_dir() else None
    return None


def _as_pair(entry: TrainingPath) -> tuple[Path, Path] | None:
    """``(image, labels)`` for a tuple or an ``"IMAGE:LABELS"`` string naming two existing paths, else None."""
    if isinstance(entry, tuple):
        image, labels = entry
        return Path(image), Path(labels)
    text = str(entry)
    if ":" not in text or Path(text).exists():
        return None
    image, labels = text.rsplit(":", 1)
    if not Path(image).exists() or not Path(labels).exists():
        missing = image if not Path(image).exists() else labels
        raise TrainingDataError(f"{missing} does not exist (from the pair {text!r}, IMAGE:LABELS)")
    return Path(image), Path(labels)


def open_training_data(
    paths: Sequence[TrainingPath], *, image: str | Path | None = None, axis: str | None = None
) -> list[LabeledStack]:
    """Every stack of every path (see the module docstring). A pair is a tuple or a string ``"IMAGE:LABELS"``.

    ``image``: the image of the label stores among ``paths`` (default: the ``<stem>.<tif, zarr, …>`` beside each
    ``<stem>.sam2.zarr``). ``axis``: the frame axis where there is a choice (default: a label store's own, else ``z``
    when there is a depth axis, else ``t``).
    """
    stacks: list[LabeledStack] = []
    for entry in paths:
        pair = _as_pair(entry)
        if pair is not None:
            if _is_label_store(pair[1]):
                stacks += load_label_store(pair[1], pair[0], axis=axis)
            else:
                stacks += load_pair(pair[0], pair[1], axis)
            continue
        path = Path(entry)
        if not path.exists():
            raise TrainingDataError(f"{path} does not exist")
        if _is_label_store(path):
            stacks += load_label_store(path, Path(image) if image is not None else _image_beside(path), axis=axis)
        elif has_ome_labels(path):
            stacks += load_ome_zarr(path, axis=axis)
        elif ctc_sequences(path):
            stacks += load_ctc(path)
        elif path.suffix.lower() == ".npz" and npz_has_pair(path):
            stacks += load_pair(path, path, axis)
        elif (store := _store_beside(path)) is not None:
            stacks += load_label_store(store, path, axis=axis)
        else:
            raise TrainingDataError(
                f"{path} is not training data: expected a label store, a Cell Tracking Challenge folder, an OME-Zarr "
                f"with labels/, an .npz with images and labels, an image with its {STORE_SUFFIX} beside it, "
                "or an (image, labels) pair"
            )
    return stacks


# where each openly licensed stack of shared/data lives: (image, labels, whether its labels need linking)
_STARTER_FILES = {
    "cancer_cell_migration": (
        "cancer_cell_migration_bian/cancer_cell_migration_crop.tif",
        "cancer_cell_migration_bian/cancer_cell_migration_voronoi_otsu_labeling_crop.tif",
        True,
    ),
    "c2c12": ("c2c12_laptrack/data_small.npz", "c2c12_laptrack/data_small.npz", True),
    "qcanet_embryo_8cell": (
        "qcanet_mouse_embryo_3d/images_raw/8_cell_stage.tif",
        "qcanet_mouse_embryo_3d/derived/8_cell_stage_instances.tif",
        False,
    ),
    "qcanet_embryo_16cell": (
        "qcanet_mouse_embryo_3d/images_raw/16_cell_stage.tif",
        "qcanet_mouse_embryo_3d/derived/16_cell_stage_instances.tif",
        False,
    ),
}


def open_starter_data(shared_data_dir: Path | str) -> list[LabeledStack]:
    """The training frames ``[0, train_end)`` of each open stack in ``shared_data_dir`` (``OPEN_SPLITS``), labels
    linked over frames (per-frame labels by overlap, after the cut); stacks with no training frames are left out."""
    root = Path(shared_data_dir)
    if not root.is_dir():
        raise TrainingDataError(f"{root} is not a folder: no shared data there")
    stacks = []
    for name, split in OPEN_SPLITS.items():
        if split.train_end <= 0:
            continue
        image, labels, link = _STARTER_FILES[name]
        (stack,) = load_pair(root / image, root / labels, split.axis)
        frames = np.array(stack.frames[: split.train_end])  # copies: nothing of the held-out frames stays
        train_labels = np.array(stack.labels[: split.train_end])
        stacks.append(LabeledStack(frames, link_by_overlap(train_labels) if link else train_labels, name))
    return stacks
