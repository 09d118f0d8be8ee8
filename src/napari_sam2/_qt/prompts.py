"""The prompts of a session as the user gave them: per object and frame, clicks, a box and a mask.

:class:`PromptBook` is the one owner of that state on the main thread. It is rebuilt from the Points and Shapes
layers when the user edits them, saved to the label store, and replayed into the engine — always as the whole
prompt of an (object, frame), so replaying the stored prompts reproduces the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Key = tuple[int, int]  # (obj_id, frame)


@dataclass(frozen=True)
class FramePrompt:
    """One object's prompt on one frame: ``points`` (N, 2) as (y, x) frame pixels with ``labels`` (N,) 1/0,
    ``box`` (y0, x0, y1, x1) or None, ``mask`` (H, W) bool or None."""

    points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return not len(self.points) and self.box is None and self.mask is None

    def same_as(self, other: FramePrompt | None) -> bool:
        if other is None:
            return self.empty
        same_mask = (self.mask is None) == (other.mask is None) and (
            self.mask is None or np.array_equal(self.mask, other.mask)
        )
        return (
            self.box == other.box
            and same_mask
            and np.array_equal(self.points, other.points)
            and np.array_equal(self.labels, other.labels)
        )


def apply_prompt(session: Any, frame: int, obj_id: int, prompt: FramePrompt) -> Any:
    """Give ``prompt`` to the engine session (replacing the object's earlier prompt on ``frame``); returns the
    engine's ``FrameResult``. A mask comes first, so clicks given with it refine it."""
    result = None
    if prompt.mask is not None:
        result = session.add_mask(frame, obj_id, prompt.mask)
    if prompt.box is not None:
        points = prompt.points if len(prompt.points) else None
        labels = prompt.labels if len(prompt.points) else None
        result = session.add_box(frame, obj_id, prompt.box, points=points, labels=labels)
    elif len(prompt.points):
        result = session.add_points(frame, obj_id, prompt.points, prompt.labels, clear=True)
    if result is None:
        raise ValueError(f"an empty prompt for object {obj_id} on frame {frame}")
    return result


def record_prompt(view: Any, prompt: FramePrompt | None, obj_id: int, frame: int) -> None:
    """Store ``prompt`` as the object's prompt on ``frame`` in the label store ``view`` (None: it has none now)."""
    view.clear_prompts(obj_id, frame)
    if prompt is not None:
        view.add_prompt(obj_id, frame, points=prompt.points, labels=prompt.labels, box=prompt.box, mask=prompt.mask)


def segment_prompt(session: Any, view: Any, prompt: FramePrompt | None, obj_id: int, frame: int) -> Any:
    """Give ``prompt`` (None: the object has no prompt on ``frame`` any more) to the engine and write the object's
    new mask into the label store ``view``. Returns the engine's ``FrameResult``. (The prompt itself is stored
    by :func:`record_prompt`, after the labels are on screen.)

    Removing an object's last prompt removes the object from the engine and clears its pixels on that frame.
    """
    if prompt is not None:
        result = apply_prompt(session, frame, obj_id, prompt)
    elif obj_id in session.obj_ids and frame in session.prompted_frames(obj_id):
        result = session.clear_frame(frame, obj_id)
        if not session.prompted_frames(obj_id):
            session.remove_object(obj_id)
            result = session.result(frame)
    else:
        result = session.result(frame)
    if obj_id in result.obj_ids and hasattr(result, "crops"):  # a tiled session's result: crops, not (K, H, W)
        k = result.obj_ids.index(obj_id)
        view.write_sparse_result(frame, [obj_id], result.boxes[k : k + 1], result.crops[k : k + 1], source="prompt")
    elif obj_id in result.obj_ids:
        k = result.obj_ids.index(obj_id)
        view.write_result(frame, [obj_id], result.logits[k : k + 1], source="prompt")
    elif obj_id in view.store.objects:
        view.write_result(frame, [obj_id], np.full((1, *view.shape2d), -1.0, np.float32), source="prompt")
    return result


def group_points(
    data: np.ndarray, obj_ids: Iterable[int], labels: Iterable[int], frame_dim: int, yx_dims: tuple[int, int]
) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
    """Points layer content → ``{(obj_id, frame): (points (N, 2) y, x, labels (N,))}``."""
    grouped: dict[Key, tuple[list, list]] = {}
    rows = np.asarray(data).reshape(len(data), -1) if len(data) else []  # no clicks left: reshape can't say -1
    for row, obj_id, label in zip(rows, obj_ids, labels, strict=True):
        key = (int(obj_id), int(round(float(row[frame_dim]))))
        pts, labs = grouped.setdefault(key, ([], []))
        pts.append((float(row[yx_dims[0]]), float(row[yx_dims[1]])))
        labs.append(int(label))
    return {k: (np.asarray(p, np.float64).reshape(-1, 2), np.asarray(lab, np.int8)) for k, (p, lab) in grouped.items()}


def group_boxes(
    shapes: Iterable[np.ndarray], obj_ids: Iterable[int], frame_dim: int, yx_dims: tuple[int, int]
) -> dict[Key, tuple[float, float, float, float]]:
    """Rectangles of a Shapes layer → ``{(obj_id, frame): (y0, x0, y1, x1)}``; a later box of the same object on
    the same frame replaces an earlier one."""
    boxes: dict[Key, tuple[float, float, float, float]] = {}
    for vertices, obj_id in zip(shapes, obj_ids, strict=True):
        vertices = np.asarray(vertices, np.float64)
        frame = int(round(float(vertices[0, frame_dim])))
        ys, xs = vertices[:, yx_dims[0]], vertices[:, yx_dims[1]]
        boxes[(int(obj_id), frame)] = (float(ys.min()), float(xs.min()), float(ys.max()), float(xs.max()))
    return boxes


class PromptBook:
    """``{(obj_id, frame): FramePrompt}``, with the changes since a given state."""

    def __init__(self) -> None:
        self._prompts: dict[Key, FramePrompt] = {}

    def get(self, obj_id: int, frame: int) -> FramePrompt | None:
        return self._prompts.get((obj_id, frame))

    def items(self) -> list[tuple[Key, FramePrompt]]:
        return sorted(self._prompts.items())

    def frames(self, obj_id: int) -> list[int]:
        """Frames on which ``obj_id`` has a prompt, in order."""
        return sorted(f for (o, f) in self._prompts if o == obj_id)

    def obj_ids(self) -> list[int]:
        return sorted({o for (o, _) in self._prompts})

    def set(self, obj_id: int, frame: int, prompt: FramePrompt) -> None:
        if prompt.empty:
            self._prompts.pop((obj_id, frame), None)
        else:
            self._prompts[(obj_id, frame)] = prompt

    def remove_object(self, obj_id: int) -> None:
        for key in [k for k in self._prompts if k[0] == obj_id]:
            del self._prompts[key]

    def update_from_layers(
        self, points: Mapping[Key, tuple[np.ndarray, np.ndarray]], boxes: Mapping[Key, tuple[float, ...]]
    ) -> list[Key]:
        """Take clicks and boxes from the layers (masks are kept); returns the (object, frame) pairs that changed."""
        changed = []
        keys = set(self._prompts) | set(points) | set(boxes)
        for key in sorted(keys):
            old = self._prompts.get(key)
            pts, labs = points.get(key, (np.empty((0, 2)), np.empty(0, np.int8)))
            new = FramePrompt(pts, labs, boxes.get(key), old.mask if old is not None else None)
            if not new.same_as(old):
                self.set(*key, new)
                changed.append(key)
        return changed

    def set_mask(self, obj_id: int, frame: int, mask: np.ndarray) -> None:
        """A mask prompt for ``obj_id`` on ``frame`` (clicks and box there are kept, and refine it)."""
        old = self._prompts.get((obj_id, frame)) or FramePrompt()
        self.set(obj_id, frame, replace(old, mask=np.asarray(mask, bool)))

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> PromptBook:
        """From the label store's prompt records (newest per object and frame wins)."""
        book = cls()
        for record in records:
            box = tuple(record.box) if record.box is not None else None
            book.set(record.obj_id, record.frame, FramePrompt(
                np.asarray(record.points, np.float64).reshape(-1, 2), np.asarray(record.labels, np.int8), box,
                None if record.mask is None else np.asarray(record.mask, bool),
            ))
        return book
