"""Training stacks from image/label pairs (TIFF, zarr, OME-Zarr, .npz) and from our label stores.

A stack with axes beyond the frame axis and y, x (a T,Z,Y,X movie of volumes) gives one ``LabeledStack`` per index
of the other axes. Frames run along ``z`` by default when there is a depth axis (each time point's volume along
depth), else along ``t``. Multi-channel images are read as RGB (3 or 4 channels) or as their colour composite;
colour that is not 8-bit becomes its grey mean.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_sam2.io import FrameSource, LabelStore, LabelStoreError, StackError
from napari_sam2.io.atomic_store import read_json
from napari_sam2.io.axes import CHANNEL, SPATIAL, AxesInfo
from napari_sam2.io.stack_formats import RawStack, open_raw
from napari_sam2.train.labeled_stack import LabeledStack, TrainingDataError, contiguous_runs

TRAINABLE_STATUSES = ("verified", "corrected")
IMAGE_KEYS = ("images", "image", "frames", "raw", "img", "x")
LABEL_KEYS = ("labels", "label", "masks", "mask", "seg", "y")


@contextlib.contextmanager
def training_errors() -> Iterator[None]:
    """Re-raise the I/O layer's one-line errors (which name their path) as :class:`TrainingDataError`."""
    try:
        yield
    except (StackError, LabelStoreError) as exc:
        raise TrainingDataError(str(exc)) from exc


def default_frame_axis(names: tuple[str, ...], shape: tuple[int, ...]) -> str:
    """``z`` if the stack has a depth axis longer than 1, else ``t``, else its first other non-spatial axis."""
    candidates = [n for n in names if n not in (*SPATIAL, CHANNEL)]
    if "z" in candidates and shape[names.index("z")] > 1:
        return "z"
    if "t" in candidates or not candidates:
        return "t"
    return candidates[0]


def _npz_array(path: Path, role: str) -> np.ndarray:
    """The image (``role="image"``) or label array of an .npz/.npy file: its only array or a conventional key."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path} is not a readable .npz/.npy file: {exc}") from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    keys = IMAGE_KEYS if role == "image" else LABEL_KEYS
    with loaded:
        if len(loaded.files) == 1:
            return loaded[loaded.files[0]]
        for key in keys:
            if key in loaded.files:
                return loaded[key]
        raise TrainingDataError(f"{path} holds arrays {loaded.files}; its {role} must be under one of {keys}")


def npz_has_pair(path: Path) -> bool:
    """Whether an .npz file holds both an image and a label array under conventional keys."""
    try:
        with np.load(path, allow_pickle=False) as loaded:
            files = set(loaded.files)
    except (OSError, ValueError, AttributeError):
        return False
    return bool(files & set(IMAGE_KEYS)) and bool(files & set(LABEL_KEYS))


def _open(path: Path | str, role: str) -> RawStack:
    """``path`` opened lazily (an .npz/.npy file is read into memory)."""
    path = Path(path)
    if not path.exists():
        raise TrainingDataError(f"{path} does not exist")
    source = _npz_array(path, role) if path.suffix.lower() in (".npz", ".npy") else path
    with training_errors():
        raw = open_raw(source)
    raw.path = path
    return raw


def _read_frames(source: FrameSource, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames ``[start, stop)`` of a FrameSource, (N, H, W) or (N, H, W, 3); colour not 8-bit becomes grey."""
    frames = np.stack([np.asarray(source[i]) for i in range(start, len(source) if stop is None else stop)])
    if frames.ndim == 4 and frames.dtype != np.uint8:
        frames = frames.astype(np.float32).mean(axis=-1)
    return frames


def _read_labels(source: FrameSource, where: Path) -> np.ndarray:
    if np.dtype(source.dtype).kind not in "iu":
        raise TrainingDataError(f"{where} holds {source.dtype} values: labels must be integers")
    return np.stack([np.asarray(source[i]) for i in range(len(source))])


def _channel_of(raw: RawStack) -> str | None:
    names, shape = raw.axes.names, raw.array.shape
    return "rgb" if CHANNEL in names and shape[names.index(CHANNEL)] > 1 else None


def other_positions(names: tuple[str, ...], shape: tuple[int, ...], axis: str) -> list[dict[str, int]]:
    """Every combination of indices on the non-spatial, non-channel axes other than ``axis``."""
    others = [(n, int(s)) for n, s in zip(names, shape, strict=True) if n not in (*SPATIAL, CHANNEL, axis)]
    combos = itertools.product(*(range(s) for _, s in others))
    return [dict(zip([n for n, _ in others], combo, strict=True)) for combo in combos]


def describe(name: str, axis: str, position: dict[str, int]) -> str:
    """``"movie.tif along z at t=3"``."""
    where = ",".join(f"{k}={v}" for k, v in position.items())
    return f"{name} along {axis}" + (f" at {where}" if where else "")


def load_pair(image: Path | str, labels: Path | str, axis: str | None = None) -> list[LabeledStack]:
    """An image stack and its label stack (TIFF, zarr, OME-Zarr or .npz/.npy), labels linked over ``axis``.

    ``axis``: the frame axis (default ``z`` when there is one, else ``t``); every index of the other non-spatial axes
    gives its own stack. The labels have the image's shape without its channel axis. Every frame is used.
    """
    image_raw = _open(image, "image")
    try:
        label_raw = _open(labels, "labels")
        try:
            return _pair_stacks(image_raw, label_raw, axis)
        finally:
            label_raw.close()
    finally:
        image_raw.close()


def _pair_stacks(image: RawStack, labels: RawStack, axis: str | None) -> list[LabeledStack]:
    names, shape = image.axes.names, tuple(int(s) for s in image.array.shape)
    label_names = image.axes.without_channel()
    label_shape = tuple(s for n, s in zip(names, shape, strict=True) if n != CHANNEL)
    if tuple(labels.array.shape) != label_shape:
        raise TrainingDataError(
            f"{labels.path} has shape {tuple(labels.array.shape)}, but the image {image.path} ({''.join(names)} "
            f"{shape}) needs labels of shape {label_shape}"
        )
    labels.axes = AxesInfo(label_names, False, "the image's axes")
    frame_axis = axis or default_frame_axis(names, shape)
    stacks = []
    with training_errors():
        for position in other_positions(names, shape, frame_axis):
            frames = _read_frames(FrameSource(image, axis=frame_axis, position=position, channel=_channel_of(image)))
            label_frames = _read_labels(FrameSource(labels, axis=frame_axis, position=position), labels.path)
            stacks.append(LabeledStack(frames, label_frames, describe(str(image.path), frame_axis, position)))
    return stacks


def _label_names(labels_group: Path) -> list[str]:
    """The label images an OME-Zarr lists in ``labels/`` (NGFF 0.4 ``.zattrs`` or 0.5 ``zarr.json``)."""
    attrs = read_json(labels_group / ".zattrs") or (read_json(labels_group / "zarr.json") or {}).get("attributes", {})
    listed = attrs.get("labels") or (attrs.get("ome") or {}).get("labels") or []
    if not listed and labels_group.is_dir():
        listed = sorted(p.name for p in labels_group.iterdir() if p.is_dir())
    return [str(n) for n in listed]


def has_ome_labels(path: Path) -> bool:
    return path.is_dir() and bool(_label_names(path / "labels"))


def load_ome_zarr(path: Path | str, *, label_name: str | None = None, axis: str | None = None) -> list[LabeledStack]:
    """An OME-Zarr image with its label image ``labels/<label_name>`` (default: the only one listed)."""
    path = Path(path)
    names = _label_names(path / "labels")
    if not names:
        raise TrainingDataError(f"{path} has no label images (no labels/ group listing any)")
    if label_name is None:
        if len(names) > 1:
            raise TrainingDataError(f"{path} has several label images {names}: say which one (label_name=...)")
        label_name = names[0]
    elif label_name not in names:
        raise TrainingDataError(f"{path} has no label image {label_name!r}; it has {names}")
    return load_pair(path, path / "labels" / label_name, axis)


def trainable_objects(store: LabelStore) -> tuple[int, ...] | None:
    """Objects of a store that may train: verified, corrected, and those with no status (made by hand or from
    prompts); never "automatic" (not yet reviewed) or "rejected" masklets. None: every object may."""
    statuses = {obj_id: info.status for obj_id, info in store.objects.items()}
    if not any(s is not None for s in statuses.values()):
        return None
    allowed = tuple(obj_id for obj_id, s in statuses.items() if s is None or s in TRAINABLE_STATUSES)
    if not allowed:
        raise TrainingDataError(
            f"label store {store.path} holds only unreviewed or rejected masklets: "
            "verify or correct some objects first"
        )
    return allowed


def _store_axis(store: LabelStore) -> str:
    """The frame axis of a store: its only frame axis longer than 1, else the one most of its prompts used."""
    frame_axes = [(n, s) for n, s in zip(store.dimension_names[:-2], store.shape[:-2], strict=True)]
    long_axes = [n for n, s in frame_axes if s > 1]
    if len(long_axes) <= 1:
        return long_axes[0] if long_axes else frame_axes[0][0]
    used = Counter(p.axis for p in store.prompts() if p.axis in long_axes)
    return used.most_common(1)[0][0] if used else default_frame_axis(store.dimension_names, store.shape)


def load_label_store(store: Path | str, image: Path | str, *, axis: str | None = None) -> list[LabeledStack]:
    """Our label store with the image it labels: the frames that were ever labelled, in runs of consecutive frames.

    Objects: verified, corrected and unreviewed-by-design ones (no status); see :func:`trainable_objects`.
    """
    with training_errors():
        label_store = LabelStore.open(store, read_only=True)
    allowed = trainable_objects(label_store)
    image_raw = _open(image, "image")
    try:
        with training_errors():
            names = label_store.dimension_names
            frame_axis = axis or _store_axis(label_store)
            if frame_axis not in names[:-2]:
                raise TrainingDataError(f"label store {label_store.path} has no frame axis {frame_axis!r}: {names}")
            written = label_store.written_planes()
            stacks = []
            for position in other_positions(names, label_store.shape, frame_axis):
                source = FrameSource(image_raw, axis=frame_axis, position=position, channel=_channel_of(image_raw))
                label_store.check_matches(source)
                view = label_store.frame_view(frame_axis, position)
                frames_written = sorted(
                    view_coords[names.index(frame_axis)]
                    for view_coords in written
                    if all(view_coords[names.index(k)] == v for k, v in position.items())
                )
                for start, stop in contiguous_runs(frames_written):
                    labels = np.stack([view.read_frame(i) for i in range(start, stop)]).astype(np.int64)
                    name = f"{describe(str(label_store.path), frame_axis, position)} frames {start}-{stop - 1}"
                    stacks.append(LabeledStack(_read_frames(source, start, stop), labels, name, allowed))
            if not stacks:
                raise TrainingDataError(f"label store {label_store.path} has no labelled frames")
            return stacks
    finally:
        image_raw.close()
