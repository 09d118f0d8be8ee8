"""The provenance side of the Labels layer's undo history.

napari keeps the pixels of each stroke so that Ctrl-Z can put them back; :class:`StoreLabels` stores whatever napari
writes, marking the objects it changed as "manual". That is right for a stroke but not for its undo: an object
painted by mistake and undone must be tracked again by propagation, not stay frozen as a hand-made empty mask. So
this keeps, for each stroke, the provenance its changed objects had before it; an undo gives it back, a redo
re-applies what the stroke made.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QTimer

from napari_sam2._qt.label_array import Coords, LabelEdit, StoreLabels

Restore = dict[Coords, dict[int, str | None]]  # per frame: the provenance to give back to each object (None: none)


class EditHistory:
    """Mirrors napari's undo and redo stacks, one entry per stroke (per ``paint`` event of the Labels layer)."""

    def __init__(self, array: StoreLabels) -> None:
        self.array = array
        self._stroke: Restore = {}
        self._undo: list[Restore] = []
        self._redo: list[Restore] = []
        self._replayed: Restore | None = None

    def edited(self, edit: LabelEdit) -> None:
        """A frame was edited (by a stroke, or by an undo or redo being replayed): note what its changed objects
        were before the first change."""
        target = self._replayed if self._replayed is not None else self._stroke
        known = target.setdefault(edit.coords, {})
        for obj_id in edit.changed:
            known.setdefault(obj_id, edit.before.get(obj_id))

    def committed(self, *_: object) -> None:
        """napari committed a stroke to its undo history. A mouse stroke has written everything by then; a
        programmatic ``paint``/``fill`` writes right after the event: close the stroke once this call returns."""
        QTimer.singleShot(0, self._close_stroke)

    def _close_stroke(self) -> None:
        if self._stroke:
            self._undo.append(self._stroke)
            self._redo.clear()
            self._stroke = {}

    def undo(self, action: Callable[[], None]) -> None:
        """Run napari's undo (``action``) and give the objects it changed their provenance of before the stroke."""
        self._replay(action, self._undo, self._redo)

    def redo(self, action: Callable[[], None]) -> None:
        """Run napari's redo (``action``) and give the objects it changed the provenance the stroke gave them."""
        self._replay(action, self._redo, self._undo)

    def _replay(self, action: Callable[[], None], source: list[Restore], target: list[Restore]) -> None:
        self._close_stroke()
        self.array.restore = source[-1] if source else {}
        self._replayed = {}
        try:
            action()
        finally:
            self.array.restore = {}
            replayed, self._replayed = self._replayed, None
        if replayed and source:  # napari replayed a stroke: the one on top of our stack
            source.pop()
            target.append(replayed)
