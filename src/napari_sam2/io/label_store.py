"""``LabelStore``: a crash-safe zarr v3 label image written frame by frame, with the session that produced it.

Layout of the group at ``path`` (``zarr.open_group(path)["labels"]`` works with plain zarr)::

    zarr.json        attributes {"napari_sam2": {"format": "label-store", "version": 1}}
    labels/          uint32 array: the image's shape without its channel axis, ``dimension_names`` set,
                     one chunk per 2D frame (the last two axes are the frame's y and x)
    session/         objects, prompts and per-frame provenance (see ``session_records``)

Every file is written through :class:`AtomicLocalStore` (temporary file, fsync, ``os.replace``): a ``kill -9`` at
any moment leaves each frame at its previous or its new content, and each record whole. Writing a frame costs one
chunk write (plus a small provenance record when the provenance changes). A failed write (full disk, read-only
location) raises :class:`StoreWriteError` and leaves what was stored before intact. One writer per store at a time;
the methods are thread-safe within a process. The merge rule for results is documented in ``merge``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from napari_sam2.io.atomic_store import (
    TEMP_SUFFIX,
    AtomicLocalStore,
    make_dirs,
    read_json,
    remove_temp_files,
    remove_tree,
)
from napari_sam2.io.colours import default_colour, normalise_colour
from napari_sam2.io.errors import LabelStoreError, UnfinishedStoreError, write_error
from napari_sam2.io.frame_view import FrameView, resolve_view
from napari_sam2.io.merge import (
    RankedResult,
    check_obj_ids,
    merge_edit,
    merge_manual,
    merge_result,
    merge_sparse_result,
)
from napari_sam2.io.session_records import (
    OBJECT_STATUSES,
    ObjectInfo,
    Prompt,
    SessionRecords,
    frame_crc,
    resolve_provenance,
)

FORMAT_KEY = "napari_sam2"
FORMAT = {"format": "label-store", "version": 1}


def _check_layout(shape: Sequence[int], dimension_names: Sequence[str], chunks: Sequence[int] | None, path: Path):
    shape = tuple(int(s) for s in shape)
    names = tuple(str(n) for n in dimension_names)
    if len(shape) < 3 or any(s < 1 for s in shape):
        raise LabelStoreError(f"{path}: label shape {shape} needs at least 3 positive sizes (frames…, y, x)")
    if len(names) != len(shape) or len(set(names)) != len(names):
        raise LabelStoreError(f"{path}: dimension_names {names} must be {len(shape)} distinct names")
    chunks = tuple(int(c) for c in chunks) if chunks is not None else (1,) * (len(shape) - 2) + shape[-2:]
    if len(chunks) != len(shape) or any(c != 1 for c in chunks[:-2]) or any(c < 1 for c in chunks[-2:]):
        raise LabelStoreError(f"{path}: chunks {chunks} must be 1 on every axis but the last two (one 2D frame)")
    return shape, names, chunks


def _creation_was_cut(path: Path) -> bool:
    """Whether ``path`` holds only what a ``create`` killed before its ``labels`` array was written can leave:
    the store's tagged group document (or not even that), the ``labels`` folder, and temporary files."""
    try:
        doc = read_json(path / "zarr.json") or {"attributes": {FORMAT_KEY: FORMAT}}
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or FORMAT_KEY not in (doc.get("attributes") or {}):
        return False
    allowed = {path / "zarr.json", path / "labels"}
    return all(p in allowed or p.name.endswith(TEMP_SUFFIX) for p in path.rglob("*"))


def _write_layout(path: Path, shape: tuple[int, ...], names: tuple[str, ...], chunks: tuple[int, ...]) -> zarr.Group:
    """Write what a new store needs and ``path`` lacks: the tagged group, the empty ``labels``, the session groups."""
    make_dirs(path)
    zstore = AtomicLocalStore(path)
    if (path / "zarr.json").is_file():
        group = zarr.open_group(store=zstore, mode="r+", zarr_format=3, use_consolidated=False)
    else:
        group = zarr.create_group(store=zstore, zarr_format=3, attributes={FORMAT_KEY: FORMAT})
    if "labels" not in group:
        group.create_array("labels", shape=shape, chunks=chunks, dtype="uint32", fill_value=0, dimension_names=names)
    SessionRecords(path, zstore).initialise()
    return group


class LabelStore:
    """Labels of a stack plus the session's objects, prompts and provenance. Use ``create``, ``open`` or
    ``for_source``; address 2D frames through :meth:`frame_view` (or the store itself when it has one frame axis)."""

    def __init__(self, path: Path, group: zarr.Group, labels: zarr.Array, *, read_only: bool) -> None:
        self.path = Path(path)
        self._group = group
        self._labels = labels
        self.read_only = read_only
        self._records = SessionRecords(self.path, group.store)
        self._lock = threading.RLock()
        self._objects, removing = self._records.load_objects()
        self._prompts, uncommitted = self._records.load_prompts()
        if not read_only:
            self._recover(removing, uncommitted)
        self._next_seq = self._records.next_seq()

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(
        cls,
        path: Path | str,
        shape: Sequence[int],
        *,
        dimension_names: Sequence[str],
        chunks: Sequence[int] | None = None,
    ) -> LabelStore:
        """Create an empty store at ``path`` (which must not exist or be an empty folder)."""
        path = Path(path)
        shape, names, chunks = _check_layout(shape, dimension_names, chunks, path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise LabelStoreError(f"{path} already exists; open it with LabelStore.open or choose a new path")
        existed = path.exists()
        try:
            group = _write_layout(path, shape, names, chunks)
        except OSError as exc:
            with contextlib.suppress(OSError):  # leave the location as it was: no folder, or an empty one
                for leftover in list(path.iterdir()) if existed else [path]:
                    remove_tree(leftover)
            raise write_error("create a label store at", path, exc) from exc
        return cls(path, group, group["labels"], read_only=False)

    @classmethod
    def _finish_creation(cls, path: Path, shape: Sequence[int], dimension_names: Sequence[str]) -> LabelStore:
        """Complete a store whose ``create`` was killed (see :class:`UnfinishedStoreError`)."""
        shape, names, chunks = _check_layout(shape, dimension_names, None, path)
        try:
            remove_temp_files(path)
            group = _write_layout(path, shape, names, chunks)
        except OSError as exc:
            raise write_error("complete the label store at", path, exc) from exc
        return cls(path, group, group["labels"], read_only=False)

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False) -> LabelStore:
        """Open an existing store; with ``read_only`` nothing is written (no recovery of an interrupted removal)."""
        path = Path(path)
        if not path.is_dir():
            raise LabelStoreError(f"{path} does not exist or is not a folder: no label store there")
        store = LocalStore(path, read_only=True) if read_only else AtomicLocalStore(path)
        try:
            group = zarr.open_group(store=store, mode="r" if read_only else "r+", zarr_format=3, use_consolidated=False)
        except Exception as exc:
            if _creation_was_cut(path):
                raise UnfinishedStoreError(f"{path}: the creation of this label store was interrupted") from exc
            raise LabelStoreError(f"{path} is not a zarr v3 group, so not a label store: {exc}") from exc
        if FORMAT_KEY not in group.attrs:
            raise LabelStoreError(f"{path} is a zarr group but not a napari-sam2 label store (no {FORMAT_KEY!r} tag)")
        try:
            labels = group["labels"]
        except KeyError:
            labels = None
        if not isinstance(labels, zarr.Array):
            if _creation_was_cut(path):
                raise UnfinishedStoreError(f"{path}: the creation of this label store was interrupted before its "
                                           "'labels' array was written; opening it for an image completes it")
            raise LabelStoreError(f"{path} has no 'labels' array, but holds other files: a damaged label store")
        if labels.dtype != np.uint32 or labels.ndim < 3:
            raise LabelStoreError(f"{path}: 'labels' is {labels.dtype} {labels.shape}, expected uint32 with ≥3 axes")
        return cls(path, group, labels, read_only=read_only)

    @classmethod
    def for_source(cls, path: Path | str, source: Any) -> LabelStore:
        """Open the store at ``path`` checked against ``source`` (a FrameSource), or create one that fits it (also
        completing one whose creation was interrupted)."""
        path = Path(path)
        if path.exists() and path.is_dir() and any(path.iterdir()):
            try:
                store = cls.open(path)
            except UnfinishedStoreError:
                return cls._finish_creation(path, source.label_shape, source.label_axes)
            store.check_matches(source)
            return store
        return cls.create(path, source.label_shape, dimension_names=source.label_axes)

    def _recover(self, removing: list[int], uncommitted: list[str]) -> None:
        """Finish what a killed writer left: temporary files, uncommitted prompts, interrupted object removals."""
        try:
            remove_temp_files(self.path)
            groups = ("", "objects", "prompts", "frames")
            if not all((self._records.base / rel / "zarr.json").is_file() for rel in groups):
                self._records.initialise()  # a creation killed after its labels array, before the session groups
            for name in uncommitted:
                self._records.delete_prompt(name)
            for obj_id in removing:
                self._finish_removal(obj_id)
        except OSError:
            pass  # a read-only location opened for writing: the first write will say so

    # ----------------------------------------------------------------- description
    @property
    def labels(self) -> zarr.Array:
        """The label array (for a napari Labels layer or any zarr tool)."""
        return self._labels

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._labels.shape)

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(self._labels.metadata.dimension_names)

    @property
    def shape2d(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    def check_matches(self, source: Any) -> None:
        """Raise :class:`LabelStoreError` unless the store fits ``source`` (a FrameSource)."""
        where = getattr(source, "path", None) or "the image"
        if tuple(source.label_shape) != self.shape:
            raise LabelStoreError(
                f"label store {self.path} has shape {self.shape} {self.dimension_names}, but {where} needs "
                f"{tuple(source.label_shape)} {tuple(source.label_axes)}: it belongs to another image"
            )
        if not source.axes_inferred and tuple(source.label_axes) != self.dimension_names:
            raise LabelStoreError(
                f"label store {self.path} has axes {self.dimension_names}, but {where} has {tuple(source.label_axes)}"
            )
        if tuple(source.label_axes)[-2:] != ("y", "x"):
            raise LabelStoreError(f"{where}: y and x must be the last axes of the labels, got {source.label_axes}")

    def frame_view(self, axis: str | int | None = None, position: Mapping[str | int, int] | None = None) -> FrameView:
        """2D frames along ``axis`` (a name or index of a non-spatial axis), other axes fixed by ``position``.

        ``axis=None`` picks the only non-spatial axis (or the only one of size > 1).
        """
        axis_index, fixed = resolve_view(self.dimension_names, self.shape, axis, position or {}, str(self.path))
        return FrameView(self, axis_index, fixed)

    def view_for(self, source: Any) -> FrameView:
        """The frame view matching ``source`` (a FrameSource) — same frame axis and position — after checking it."""
        self.check_matches(source)
        axes = list(source.label_axes)
        position = {axes.index(name): value for name, value in source.position.items()}
        return self.frame_view(axes.index(source.frame_axis), position)

    def __len__(self) -> int:
        return len(self._default_view())

    def __repr__(self) -> str:
        return f"LabelStore({self.path}, shape={self.shape}, dims={self.dimension_names}, objects={len(self._objects)})"

    def _default_view(self) -> FrameView:
        return self.frame_view()

    def _check_writable(self) -> None:
        if self.read_only:
            raise LabelStoreError(f"label store {self.path} was opened read-only")

    # ----------------------------------------------------------------- objects
    @property
    def objects(self) -> dict[int, ObjectInfo]:
        """The session's objects by id."""
        return dict(sorted(self._objects.items()))

    def add_object(
        self, obj_id: int, name: str | None = None, colour: str | Sequence[float] | None = None
    ) -> ObjectInfo:
        """Register object ``obj_id`` (or update the name/colour given); durable on return."""
        (obj_id,) = check_obj_ids([obj_id])
        with self._lock:
            self._check_writable()
            old = self._objects.get(obj_id)
            info = ObjectInfo(
                obj_id,
                name if name is not None else old.name if old else f"object {obj_id}",
                normalise_colour(colour) if colour is not None else old.colour if old else default_colour(obj_id),
                old.status if old else None,
                old.parent if old else None,
            )
            if info != old:
                try:
                    self._records.save_object(info)
                except OSError as exc:
                    raise write_error(f"save object {obj_id} in", self.path, exc) from exc
                self._objects[obj_id] = info
            return info

    def rename_object(self, obj_id: int, name: str) -> ObjectInfo:
        self._known(obj_id)
        return self.add_object(obj_id, name=name)

    def set_object_colour(self, obj_id: int, colour: str | Sequence[float]) -> ObjectInfo:
        self._known(obj_id)
        return self.add_object(obj_id, colour=colour)

    def set_object_status(self, obj_id: int, status: str | None) -> ObjectInfo:
        """Record object ``obj_id``'s review status (one of ``OBJECT_STATUSES``, or None to clear it); durable."""
        if status is not None and status not in OBJECT_STATUSES:
            raise LabelStoreError(f"{self.path}: an object status is one of {OBJECT_STATUSES} or None, not {status!r}")
        return self._update_object(obj_id, "status", status=status)

    def set_object_parent(self, obj_id: int, parent: int | None) -> ObjectInfo:
        """Record that object ``obj_id`` divided from object ``parent`` (None: it has no parent); durable. The parent
        need not be registered yet (objects are registered as results arrive)."""
        if parent is not None:
            (parent,) = check_obj_ids([parent])
            if parent == int(obj_id):
                raise LabelStoreError(f"{self.path}: object {obj_id} cannot be its own parent")
        return self._update_object(obj_id, "parent", parent=parent)

    def _update_object(self, obj_id: int, what: str, **changes: Any) -> ObjectInfo:
        """Change fields of a known object's record, durably (nothing written when nothing changes)."""
        with self._lock:
            self._check_writable()
            info = dataclasses.replace(self._known(obj_id), **changes)
            if info != self._objects[info.id]:
                try:
                    self._records.save_object(info)
                except OSError as exc:
                    raise write_error(f"save the {what} of object {obj_id} in", self.path, exc) from exc
                self._objects[info.id] = info
            return info

    def _known(self, obj_id: int) -> ObjectInfo:
        if int(obj_id) not in self._objects:
            raise LabelStoreError(f"label store {self.path} has no object {obj_id} (objects: {sorted(self._objects)})")
        return self._objects[int(obj_id)]

    def _ensure_objects(self, obj_ids: Iterable[int]) -> None:
        for obj_id in obj_ids:
            if int(obj_id) not in self._objects:
                self.add_object(int(obj_id))

    def remove_object(self, obj_id: int) -> None:
        """Remove object ``obj_id``: its pixels on every frame it was written to, its prompts and provenance.

        Crash-safe: the removal is recorded first and finished on the next ``open`` if interrupted.
        """
        with self._lock:
            self._check_writable()
            info = self._known(obj_id)
            try:
                self._records.save_object(info, removed=True)
                self._finish_removal(info.id)
            except OSError as exc:
                raise write_error(f"remove object {obj_id} from", self.path, exc) from exc

    def _finish_removal(self, obj_id: int) -> None:
        key = str(obj_id)
        for coords, record in self._records.frame_records():
            if key in record.get("objects", {}) or key in (record.get("pending") or {}).get("objects", {}):
                labels, record, provenance = self._load_plane(coords)
                cleared = np.where(labels == obj_id, np.uint32(0), labels)
                self._store_plane(
                    coords, cleared, record, provenance, {k: v for k, v in provenance.items() if k != obj_id}
                )
        for prompt in [p for p in self._prompts if p.obj_id == obj_id]:
            self._records.delete_prompt(prompt.seq)
            self._prompts.remove(prompt)
        self._records.delete_object(obj_id)
        self._objects.pop(obj_id, None)

    # ----------------------------------------------------------------- frames, by coordinates
    def _check_coords(self, coords: Sequence[int]) -> tuple[int, ...]:
        coords = tuple(int(c) for c in coords)
        if len(coords) != len(self.shape) - 2 or any(not 0 <= c < s for c, s in zip(coords, self.shape, strict=False)):
            raise LabelStoreError(f"{self.path}: frame coordinates {coords} are outside the labels {self.shape[:-2]}")
        return coords

    def _load_plane(self, coords: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any] | None, dict[int, str]]:
        labels = np.asarray(self._labels[(*coords, slice(None), slice(None))])
        record = self._records.frame_record(coords)
        return labels, record, resolve_provenance(record, frame_crc(labels))

    def _store_plane(self, coords, labels: np.ndarray, record, old: dict[int, str], new: dict[int, str]) -> None:
        crc = frame_crc(labels)
        if resolve_provenance(record, crc) != new:  # record first (old + pending new), then the chunk
            pending = {"crc": crc, "objects": {str(k): v for k, v in sorted(new.items())}}
            self._records.save_frame_record(
                coords, {"objects": {str(k): v for k, v in sorted(old.items())}, "pending": pending}
            )
        self._labels[(*coords, slice(None), slice(None))] = labels

    def written_planes(self) -> list[tuple[int, ...]]:
        """Coordinates (index on every non-spatial axis) of every frame that has held labels, sorted."""
        return sorted(coords for coords, _ in self._records.frame_records())

    def read_plane(self, coords: Sequence[int]) -> np.ndarray:
        """The (H, W) uint32 frame at ``coords`` (index on every non-spatial axis)."""
        return self._load_plane(self._check_coords(coords))[0]

    def plane_provenance(self, coords: Sequence[int]) -> dict[int, str]:
        """``{obj_id: "prompt" | "propagation" | "manual"}`` for the frame at ``coords``."""
        return self._load_plane(self._check_coords(coords))[2]

    def _modify_plane(self, coords: Sequence[int], change: Callable[[np.ndarray, dict[int, str]], Any]) -> np.ndarray:
        coords = self._check_coords(coords)
        with self._lock:
            self._check_writable()
            labels, record, provenance = self._load_plane(coords)
            new_labels, new_provenance = change(labels, provenance)
            self._ensure_objects(o for o in new_provenance if o not in provenance)
            try:
                self._store_plane(coords, new_labels, record, provenance, new_provenance)
            except OSError as exc:
                raise write_error(f"write frame {coords} of", self.path, exc) from exc
            return new_labels

    def write_result_at(
        self, coords: Sequence[int], obj_ids: Sequence[int], logits: np.ndarray | RankedResult, *,
        source: str = "propagation",
    ) -> np.ndarray:
        """Merge a result — (K, H, W) logits or a ``RankedResult`` — into the frame at ``coords`` (rule in ``merge``);
        returns the new (H, W) frame."""
        return self._modify_plane(coords, lambda lab, prov: merge_result(lab, prov, obj_ids, logits, source))

    def write_sparse_result_at(
        self, coords: Sequence[int], obj_ids: Sequence[int], boxes: np.ndarray, crops: Sequence[np.ndarray], *,
        source: str = "propagation",
    ) -> np.ndarray:
        """:meth:`write_result_at` for logits given as crops in boxes (``merge.merge_sparse_result``)."""
        return self._modify_plane(
            coords, lambda lab, prov: merge_sparse_result(lab, prov, obj_ids, boxes, crops, source))

    def write_manual_at(
        self, coords: Sequence[int], labels2d: np.ndarray, *, obj_ids: Iterable[int] | None = None
    ) -> np.ndarray:
        """Store a hand-painted frame as given; changed (or named) objects become ``"manual"`` there."""
        new_labels = self._modify_plane(coords, lambda lab, prov: merge_manual(lab, prov, labels2d, obj_ids))
        with self._lock:
            self._ensure_objects(o for o in np.unique(new_labels).tolist() if o)  # every painted id is an object
        return new_labels

    def write_edit_at(
        self,
        coords: Sequence[int],
        edit: Callable[[np.ndarray], np.ndarray],
        *,
        restore: Mapping[int, str | None] | None = None,
    ) -> tuple[set[int], dict[int, str]]:
        """Apply a hand edit to the frame at ``coords`` in one step (no result is written between the read and the
        write): ``edit`` gets a copy of the (H, W) frame and returns it edited. Rule in ``merge.merge_edit``: objects
        whose pixels changed become ``"manual"``, or take their provenance from ``restore``. Returns ``(ids of the
        changed objects, the frame's provenance before the edit)``."""
        outcome: dict[str, Any] = {}

        def change(labels: np.ndarray, provenance: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
            edited, new_provenance, changed = merge_edit(labels, provenance, edit(labels.copy()), restore)
            outcome.update(changed=changed, before=dict(provenance))
            return edited, new_provenance

        with self._lock:
            new_labels = self._modify_plane(coords, change)
            self._ensure_objects(o for o in outcome["changed"] if (new_labels == o).any())
        return outcome["changed"], outcome["before"]

    # ----------------------------------------------------------------- prompts
    def add_prompt_record(self, prompt: Prompt) -> Prompt:
        """Store ``prompt`` (its ``seq`` is replaced by the next free one); durable on return."""
        with self._lock:
            self._check_writable()
            self._ensure_objects([prompt.obj_id])
            prompt = Prompt(
                self._next_seq,
                prompt.obj_id,
                prompt.axis,
                prompt.frame,
                dict(prompt.coords),
                prompt.points,
                prompt.labels,
                prompt.box,
                prompt.mask,
            )
            try:
                self._records.save_prompt(prompt)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self._records.delete_prompt(prompt.seq)
                raise write_error(f"save a prompt of object {prompt.obj_id} in", self.path, exc) from exc
            self._next_seq += 1
            self._prompts.append(prompt)
            return prompt

    def prompts(self, obj_id: int | None = None) -> list[Prompt]:
        """Every stored prompt (of ``obj_id`` only, if given), oldest first."""
        return [p for p in self._prompts if obj_id is None or p.obj_id == int(obj_id)]

    def remove_prompts(self, keep: Callable[[Prompt], bool]) -> int:
        """Delete every prompt for which ``keep`` is False; returns how many."""
        with self._lock:
            self._check_writable()
            doomed = [p for p in self._prompts if not keep(p)]
            try:
                for prompt in doomed:
                    self._records.delete_prompt(prompt.seq)
                    self._prompts.remove(prompt)
            except OSError as exc:
                raise write_error("remove prompts from", self.path, exc) from exc
            return len(doomed)

    # ----------------------------------------------------------------- the single frame axis
    def read_frame(self, frame: int) -> np.ndarray:
        """Frame ``frame`` along the store's only frame axis (see :meth:`frame_view` otherwise)."""
        return self._default_view().read_frame(frame)

    def provenance(self, frame: int) -> dict[int, str]:
        return self._default_view().provenance(frame)

    def write_result(
        self, frame: int, obj_ids: Sequence[int], logits: np.ndarray, *, source: str = "propagation"
    ) -> np.ndarray:
        return self._default_view().write_result(frame, obj_ids, logits, source=source)

    def write_frame_result(self, result: Any, *, source: str = "propagation") -> np.ndarray:
        return self._default_view().write_frame_result(result, source=source)

    def write_manual(self, frame: int, labels2d: np.ndarray, *, obj_ids: Iterable[int] | None = None) -> np.ndarray:
        return self._default_view().write_manual(frame, labels2d, obj_ids=obj_ids)

    def add_prompt(self, obj_id: int, frame: int, **prompt: Any) -> Prompt:
        """See :meth:`FrameView.add_prompt`."""
        return self._default_view().add_prompt(obj_id, frame, **prompt)
