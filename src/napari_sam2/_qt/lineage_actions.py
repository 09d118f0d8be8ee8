"""The lineage overrides carried out for a session: each runs in the session's task queue (after the work queued
before it, never during a run), writes through the label store (see ``lineage_edits``), then redraws the labels,
lists the objects again and refreshes the Tracks layer. A track split or ended at frame f also ends in the engine
after f - 1 (``Session.end_object``), so a later propagation does not carry it on past frames it was never on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_sam2._qt.lineage_edits import end_track, mark_division, merge_tracks, split_track
from napari_sam2._qt.review import mark_corrected
from napari_sam2._qt.tasks import Task
from napari_sam2.io.errors import LabelStoreError


class LineageActions(QObject):
    """``changed()`` after an override was stored (the lineage changed)."""

    changed = Signal()

    def __init__(self, controller: Any) -> None:
        super().__init__(controller)
        self.controller = controller

    def _run(self, what: str, work: Callable[[], str], touched: tuple[int, ...], after: Callable[[], None] | None = None
             ) -> bool:
        c = self.controller
        if c.propagation.running or c.auto.running:
            c.status.emit(f"{what}: wait for the run to end or cancel it (Shift-C)")
            return False
        message: list[str] = []

        def run() -> None:
            message.append(work())
            mark_corrected(c.store, touched)

        def failed(err: BaseException) -> None:
            if isinstance(err, LabelStoreError):
                c.status.emit(f"{what}: {err}")
            else:
                c.error.emit(f"{what}: {type(err).__name__}: {err}")

        def done() -> None:
            c.layers.refresh_labels()
            c.labels_written.emit(None)
            if message:
                if after is not None:
                    after()
                c.status.emit(message[0])
                self.changed.emit()
            c.objects_changed.emit()

        c.tasks.submit(Task(f"lineage-{what}", run, on_error=failed, on_finish=done))
        c.save_memory()
        return True

    def mark_division(self, parent: int, daughters: tuple[int, int]) -> bool:
        """``parent`` divided into ``daughters``."""
        def work() -> str:
            mark_division(self.controller.store, parent, daughters)
            return f"division recorded: {parent} → {daughters[0]} + {daughters[1]}"

        return self._run("mark division", work, (parent, *daughters))

    def merge(self, keep: int, absorb: int) -> bool:
        """``absorb``'s track continues ``keep``'s: one object, ``keep``."""
        def work() -> str:
            frames = merge_tracks(self.controller.view, keep, absorb)
            return f"object {absorb} merged into {keep} on {len(frames)} {self.controller.propagation.word}s"

        return self._run("merge", work, (keep,), after=lambda: self.controller.delete_object(absorb))

    def _end_in_engine(self, obj_id: int, frame: int) -> None:
        """In the worker: the engine stops tracking ``obj_id`` from ``frame`` on."""
        session = self.controller.session
        if session is not None and frame > 0 and obj_id in session.obj_ids:
            session.end_object(obj_id, frame - 1)
            self.controller.memory.changed()

    def split(self, obj_id: int, frame: int) -> bool:
        """From ``frame`` on, ``obj_id`` is a new object (the next free id)."""
        c = self.controller
        new_id = max([*c.store.objects, *c.book.obj_ids(), c.current]) + 1

        def work() -> str:
            frames = split_track(c.view, obj_id, frame, new_id)
            self._end_in_engine(obj_id, frame)
            return f"object {obj_id} split at {c.propagation.word} {frame}: object {new_id} on {len(frames)} frames"

        return self._run("split", work, (obj_id, new_id))

    def end(self, obj_id: int, frame: int) -> bool:
        """``obj_id`` ends before ``frame``."""
        c = self.controller

        def work() -> str:
            frames = end_track(c.view, obj_id, frame)
            self._end_in_engine(obj_id, frame)
            return f"object {obj_id} ends before {c.propagation.word} {frame} (erased on {len(frames)})"

        return self._run("end track", work, (obj_id,))

    def export(self, kind: str, path: Path) -> bool:
        """Write the store's labels and lineage: ``kind`` "ctc" (a Cell Tracking Challenge result folder: masks,
        res_track.txt with parents, statuses.json) or "geff" (a GEFF graph; ``path`` must not exist)."""
        c = self.controller
        path = Path(path)
        if c.propagation.running or c.auto.running:
            c.status.emit("export: wait for the run to end or cancel it (Shift-C)")
            return False
        message: list[str] = []

        def run() -> None:
            from napari_sam2.io.exports import export_ctc, export_geff

            (export_ctc if kind == "ctc" else export_geff)(c.store, path)
            message.append(f"{'CTC result' if kind == 'ctc' else 'GEFF graph'} written to {path}")

        def failed(err: BaseException) -> None:
            if isinstance(err, (LabelStoreError, OSError, ValueError)):
                c.status.emit(f"export to {path} failed: {err}")
            else:
                c.error.emit(f"export to {path}: {type(err).__name__}: {err}")

        def done() -> None:
            if message:
                c.status.emit(message[0])

        c.tasks.submit(Task(f"export-{kind}", run, on_error=failed, on_finish=done))
        return True
