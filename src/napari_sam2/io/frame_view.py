"""``FrameView``: the 2D frames of a label store along one axis, indexed like the matching ``FrameSource``.

A T,Z,Y,X store segmented along z at t=3 is ``store.frame_view(axis="z", position={"t": 3})``; its frame ``i`` is
the plane ``(t=3, z=i)``. Views along different axes share pixels, provenance and prompts (a prompt keeps the
coordinates of its plane on every axis).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sam2.io.errors import LabelStoreError
from napari_sam2.io.session_records import Prompt

if TYPE_CHECKING:
    from napari_sam2.io.label_store import LabelStore
    from napari_sam2.io.merge import RankedResult


def resolve_view(
    names: Sequence[str], shape: Sequence[int], axis: str | int | None, position: Mapping[str | int, int], where: str
) -> tuple[int, dict[int, int]]:
    """``(axis index, {other non-spatial axis index: fixed index})`` for a view; raises :class:`LabelStoreError`."""
    frame_axes = list(range(len(shape) - 2))

    def index_of(key: str | int) -> int:
        if isinstance(key, (int, np.integer)) and int(key) in frame_axes:
            return int(key)
        if isinstance(key, str) and key in names[: len(frame_axes)]:
            return list(names).index(key)
        raise LabelStoreError(f"{where}: {key!r} is not a frame axis of the labels; those are {tuple(names[:-2])}")

    if axis is None:
        sized = [i for i in frame_axes if shape[i] > 1]
        if len(frame_axes) == 1 or len(sized) == 1:
            axis_index = frame_axes[0] if len(frame_axes) == 1 else sized[0]
        else:
            raise LabelStoreError(
                f"{where} has frame axes {tuple(names[:-2])}: say which one frames run along, "
                "e.g. store.frame_view(axis='z', position={'t': 3})"
            )
    else:
        axis_index = index_of(axis)
    fixed: dict[int, int] = {}
    for key, value in position.items():
        i = index_of(key)
        if i == axis_index:
            raise LabelStoreError(f"{where}: position cannot fix the frame axis {names[i]!r}")
        value = operator.index(value)
        if not 0 <= value < shape[i]:
            raise LabelStoreError(f"{where}: position {names[i]}={value} is outside 0..{shape[i] - 1}")
        fixed[i] = value
    for i in frame_axes:
        if i != axis_index and i not in fixed:
            if shape[i] != 1:
                raise LabelStoreError(f"{where}: axis {names[i]!r} has {shape[i]} entries; fix it with position=")
            fixed[i] = 0
    return axis_index, fixed


def _as_points(points: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points if points is not None else np.empty((0, 2)), dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise LabelStoreError("prompt points must be finite (y, x) pixel coordinates")
    lab = np.ones(len(pts), np.int8) if labels is None else np.asarray(labels).astype(np.int8).reshape(-1)
    if lab.shape != (len(pts),) or not np.isin(lab, (0, 1)).all():
        raise LabelStoreError(f"prompt labels must be one 1 (positive) or 0 (negative) per point; got {lab.tolist()}")
    return pts, lab


class FrameView:
    """Frames ``0 … len(view) - 1`` of a :class:`LabelStore` along one axis, other frame axes fixed."""

    def __init__(self, store: LabelStore, axis: int, position: Mapping[int, int]) -> None:
        self.store = store
        self._axis = axis
        self._position = dict(position)
        self._names = store.dimension_names

    @property
    def axis(self) -> str:
        return self._names[self._axis]

    @property
    def position(self) -> dict[str, int]:
        return {self._names[i]: v for i, v in sorted(self._position.items())}

    @property
    def shape2d(self) -> tuple[int, int]:
        return self.store.shape2d

    def __len__(self) -> int:
        return self.store.shape[self._axis]

    def _coords(self, frame: int) -> tuple[int, ...]:
        """Coordinates of frame ``frame``: 0 … len - 1 only (a negative index would write another frame than meant)."""
        if isinstance(frame, bool):
            raise TypeError(f"frames are indexed by an int, got {frame!r}")
        i = operator.index(frame)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} is outside the {len(self)} frames (0 … {len(self) - 1}) along {self.axis!r} "
                             f"of {self.store.path}")
        return tuple(i if d == self._axis else self._position[d] for d in range(len(self.store.shape) - 2))

    def coords(self, frame: int) -> dict[str, int]:
        """Index of frame ``frame`` on every frame axis of the labels, e.g. ``{"t": 3, "z": 12}``."""
        return dict(zip(self._names, self._coords(frame), strict=False))

    def read_frame(self, frame: int) -> np.ndarray:
        """(H, W) uint32 labels of frame ``frame``."""
        return self.store.read_plane(self._coords(frame))

    def provenance(self, frame: int) -> dict[int, str]:
        """``{obj_id: "prompt" | "propagation" | "manual"}`` on frame ``frame``."""
        return self.store.plane_provenance(self._coords(frame))

    def write_result(
        self, frame: int, obj_ids: Sequence[int], logits: np.ndarray | RankedResult, *, source: str = "propagation"
    ) -> np.ndarray:
        """Merge SAM 2's output for ``obj_ids`` — ``logits`` (K, H, W) float, or a ``RankedResult`` of them (an
        engine ``FrameResult``: only its owner map leaves the GPU) — into frame ``frame``.

        Pixel → the carried object with the highest logit > 0; pixels of objects painted by hand on this frame are
        kept; the result replaces the previous pixels of the objects it carries (full rule in ``merge``).
        ``source``: ``"propagation"`` or ``"prompt"``. Returns the new (H, W) frame; one chunk write.
        """
        return self.store.write_result_at(self._coords(frame), obj_ids, logits, source=source)

    def write_sparse_result(
        self, frame: int, obj_ids: Sequence[int], boxes: np.ndarray, crops: Sequence[np.ndarray], *,
        source: str = "propagation",
    ) -> np.ndarray:
        """:meth:`write_result` for logits given as crops: object k's ``crops[k]`` inside ``boxes[k]`` (y0, x0, y1,
        x1), nothing elsewhere (a tiled session's result of a large frame; rule in ``merge.merge_sparse_result``)."""
        return self.store.write_sparse_result_at(self._coords(frame), obj_ids, boxes, crops, source=source)

    def write_frame_result(self, result: Any, *, source: str = "propagation") -> np.ndarray:
        """:meth:`write_result` for an engine ``FrameResult`` (``.frame``, ``.obj_ids``, ``.owners`` or ``.logits``), or
        :meth:`write_sparse_result` for a ``TiledFrameResult`` (``.boxes``, ``.crops``)."""
        if hasattr(result, "crops"):
            return self.write_sparse_result(result.frame, result.obj_ids, result.boxes, result.crops, source=source)
        ranked = result if hasattr(result, "owners") else result.logits  # only the owner map leaves the GPU
        return self.write_result(result.frame, result.obj_ids, ranked, source=source)

    def write_manual(self, frame: int, labels2d: np.ndarray, *, obj_ids: Iterable[int] | None = None) -> np.ndarray:
        """Store hand-painted labels (H, W) for frame ``frame``; objects whose pixels changed (or ``obj_ids``)
        become ``"manual"`` there, so later propagation keeps them. New ids are registered as objects."""
        return self.store.write_manual_at(self._coords(frame), labels2d, obj_ids=obj_ids)

    def add_prompt(
        self,
        obj_id: int,
        frame: int,
        *,
        points: Any = None,
        labels: Any = None,
        box: Sequence[float] | None = None,
        mask: np.ndarray | None = None,
    ) -> Prompt:
        """Store a prompt for ``obj_id`` on frame ``frame``; durable on return.

        ``points``: (N, 2) pixel coordinates (y, x); ``labels``: (N,) 1 positive / 0 negative (default all 1);
        ``box``: (y0, x0, y1, x1); ``mask``: (H, W) bool. At least one of them.
        """
        coords = self._coords(frame)
        pts, lab = _as_points(points, labels)
        if box is not None:
            box = tuple(float(v) for v in box)
            if len(box) != 4 or not np.isfinite(box).all():
                raise LabelStoreError(f"a box is (y0, x0, y1, x1), got {box}")
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            if mask.shape != self.shape2d:
                raise LabelStoreError(f"a mask prompt of shape {mask.shape} does not fit frames of {self.shape2d}")
        if not len(pts) and box is None and mask is None:
            raise LabelStoreError("a prompt needs points, a box or a mask")
        prompt = Prompt(-1, int(obj_id), self.axis, coords[self._axis], self.coords(frame), pts, lab, box, mask)
        return self.store.add_prompt_record(prompt)

    def _on_view(self, prompt: Prompt) -> bool:
        return all(prompt.coords.get(self._names[d]) == v for d, v in self._position.items())

    def prompts(self, obj_id: int | None = None) -> list[Prompt]:
        """Prompts on this view's frames (of ``obj_id`` if given), with ``axis``/``frame`` of this view."""
        return [
            dataclasses.replace(p, axis=self.axis, frame=p.coords[self.axis])
            for p in self.store.prompts(obj_id)
            if self._on_view(p) and self.axis in p.coords
        ]

    def clear_prompts(self, obj_id: int | None = None, frame: int | None = None) -> int:
        """Delete the prompts of this view (of ``obj_id`` / on ``frame`` if given); returns how many."""
        target = self._coords(frame)[self._axis] if frame is not None else None

        def keep(p: Prompt) -> bool:
            hit = self._on_view(p) and (obj_id is None or p.obj_id == int(obj_id))
            return not (hit and (target is None or p.coords.get(self.axis) == target))

        return self.store.remove_prompts(keep)
