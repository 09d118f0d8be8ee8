"""``TrackingController``: one annotation session on one image — the label store, the three layers, the prompt book
and the engine session — and every user action on them.

The main thread owns the layers and the prompt book; the engine session is touched only inside tasks of one
:class:`TaskQueue`, in worker threads, which also write results to the label store (thread-safe) before the main
thread redraws. Torch is imported only in those workers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from threading import Thread
from typing import Any

import numpy as np
from napari.layers.base import ActionType
from napari.utils import progress
from qtpy.QtCore import QObject, QTimer, Signal

from napari_sam2._qt.auto_driver import AutoDriver
from napari_sam2._qt.edit_history import EditHistory
from napari_sam2._qt.label_array import LabelEdit, StoreLabels
from napari_sam2._qt.layer_stack import StackChoice
from napari_sam2._qt.layers import SessionLayers
from napari_sam2._qt.memory_keeper import EngineMemory, image_fingerprint, keeper_for, weights_identity
from napari_sam2._qt.model_loading import LoadProgress, ModelChoice, load_failure_message, session_steps
from napari_sam2._qt.prompts import FramePrompt, Key, PromptBook, apply_prompt, record_prompt, segment_prompt
from napari_sam2._qt.propagation import PropagationPlan, plan_propagation
from napari_sam2._qt.propagation_driver import PropagationDriver
from napari_sam2._qt.review import mark_corrected
from napari_sam2._qt.tasks import Task, TaskQueue
from napari_sam2.io.colours import default_colour
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.session_memory import memory_view_key
from napari_sam2.io.sources import open_stack

_DONE = (ActionType.ADDED, ActionType.REMOVED, ActionType.CHANGED)
NEGATIVE_MODIFIERS = ("Shift", "Control")
UNDO_KEY, REDO_KEY = "Control-Z", "Control-Shift-Z"  # napari's own keys for the Labels layer (Command on macOS)


class TrackingController(QObject):
    """Prompt, see, propagate, correct — on ``image`` (a napari Image layer) as described by ``choice``."""

    objects_changed = Signal()
    status = Signal(str)
    error = Signal(str)
    ready = Signal()  # the model is loaded and stored prompts are replayed
    current_changed = Signal(int)
    propagating = Signal(bool)
    propagation_progress = Signal(int, int, str)  # frames done, frames of the run, a line for the widget ("": none)
    load_failed = Signal(str)  # the model could not be loaded: the session cannot go on (message says what works)
    labels_written = Signal(object)  # frames whose labels changed (a list), or None: any frame may have

    def __init__(
        self, viewer: Any, image: Any, choice: StackChoice, store_path: Path, model: ModelChoice, device: str = "auto"
    ) -> None:
        super().__init__()
        self.viewer = viewer
        self.choice = choice
        self.source = open_stack(choice.frames_of(image), axis=choice.frame_axis, channel=choice.channel,
                                 position=choice.position, axes=list(choice.axes))
        self.store = LabelStore.for_source(store_path, self.source)
        self.view = self.store.view_for(self.source)
        self.num_frames = len(self.source)
        self.book = PromptBook.from_records(self.view.prompts())
        self.hidden: set[int] = set()
        self.positive = True
        self.session: Any = None
        self.model = model
        self.last_latency_ms: float | None = None
        self._syncing = 0
        self._click_started: dict[tuple[int, int], float] = {}
        self._hand_edited = False
        self._dragging_box = False
        self._progress: Any = None
        self._closed = False
        self.tasks = TaskQueue(self)
        view_key = memory_view_key(self.view.axis, self.view.position)
        # the engine's memory, saved into the label store after every change (see memory_keeper)
        self.memory = EngineMemory(keeper_for(self.store.path, view_key))
        self.memory.keeper.on_error = self.status.emit
        self.propagation = PropagationDriver(self, on_step=self._propagated_frame, on_error=self._failed,
                                             after_run=self._propagation_finished)
        self.propagation.progress_changed.connect(self.propagation_progress)
        self.auto = AutoDriver(self, on_frame=self._propagated_frame, on_error=self._failed,
                               after_run=self._propagation_finished)  # Find all and Track all
        self.auto.progress_changed.connect(self.propagation_progress)
        self._edited_ids: set[int] = set()
        self._coloured_objects = -1  # how many stored objects the labels colormap was last built for
        self.edits = StoreLabels(self.store, on_edit=self._on_hand_edit)  # napari's writes go through the store
        self.history = EditHistory(self.edits)
        self.layers = SessionLayers(viewer, image, choice, self.edits, self.source.shape2d,
                                    tag=str(self.store.path.resolve()))
        self._keep_painting(self.layers.replaced_labels)
        self.current = max([*self.store.objects, *self.book.obj_ids(), 0]) or 1
        with self._quiet():
            self.layers.show_prompts(self.book)
        self._connect()
        self.set_current(self.current)
        self._load(model, device)

    def _keep_painting(self, previous: Any) -> None:
        """A labels layer taken over from an earlier session (its dock closed) showed ``previous``. Strokes made
        meanwhile went into that session's store as hand edits; if the layer showed anything else (its data was
        replaced), every frame where it differs from the store is stored now as painted by hand."""
        same = isinstance(previous, StoreLabels) and previous.store.path.resolve() == self.store.path.resolve()
        if previous is None or same:
            return
        if tuple(previous.shape) != self.store.shape:
            return
        for coords in np.ndindex(*self.store.shape[:-2]):
            plane = np.asarray(previous[coords])
            if not np.array_equal(plane, self.store.read_plane(coords)):
                self.store.write_manual_at(coords, plane)

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        self.layers.points.events.data.connect(self._on_prompt_layer)
        self.layers.shapes.events.data.connect(self._on_boxes_layer)
        self.layers.labels.events.paint.connect(self.history.committed)
        self.layers.labels.events.selected_label.connect(self._on_selected_label)
        self.layers.labels.bind_key(UNDO_KEY, lambda layer: self.history.undo(layer.undo), overwrite=True)
        self.layers.labels.bind_key(REDO_KEY, lambda layer: self.history.redo(layer.redo), overwrite=True)
        self.layers.points.mouse_drag_callbacks.insert(0, self._click_polarity)
        self.layers.shapes.mouse_drag_callbacks.insert(0, self._box_drag)
        self.viewer.dims.events.current_step.connect(self._on_step)

    def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            self.viewer.dims.events.current_step.disconnect(self._on_step)
        for event, handler in ((self.layers.points.events.data, self._on_prompt_layer),
                               (self.layers.shapes.events.data, self._on_boxes_layer),
                               (self.layers.labels.events.paint, self.history.committed),
                               (self.layers.labels.events.selected_label, self._on_selected_label)):
            with contextlib.suppress(Exception):
                event.disconnect(handler)
        for callbacks, callback in ((self.layers.points.mouse_drag_callbacks, self._click_polarity),
                                    (self.layers.shapes.mouse_drag_callbacks, self._box_drag)):
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)
        for key in (UNDO_KEY, REDO_KEY):
            self.layers.labels.bind_key(key, None)
        self.edits.on_edit = None  # painting after the session still goes to the store, as manual

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Change the layers without treating the change as a user edit."""
        self._syncing += 1
        try:
            yield
        finally:
            self._syncing -= 1

    def close(self, remove_layers: bool = True) -> None:
        """End the session: stop the work in progress, save the engine's memory if it changed since its last save,
        release the engine (labels and prompts are already saved)."""
        if self._closed:
            return
        self._closed = True
        self.auto.cancel()
        self.propagation.cancel()  # ends a run (and its progress bar) at the next frame, or now if it is paused
        self._disconnect()
        session, self.session = self.session, None
        self.memory.hold()

        def end() -> None:
            try:
                if session is not None:
                    self.memory.save(session)
            finally:
                self.memory.release()
                if session is not None:
                    session.close()

        self.tasks.close(Task("close", end))
        if remove_layers:
            self.layers.remove()

    @property
    def busy(self) -> bool:
        return self.tasks.busy

    @property
    def image_size(self) -> int:
        """The model's input size: the running session's model, else the chosen model."""
        return self.session.model.image_size if self.session is not None else self.model.image_size

    # ------------------------------------------------------------------ model
    def _load(self, model: ModelChoice, device: str) -> None:
        def load() -> Iterator[LoadProgress]:
            return (yield from session_steps(model, self.source, device))

        self._progress = progress(total=0, desc=f"SAM 2: loading {model.describe()}")
        self.tasks.submit(Task("load", load, on_yield=self._load_step, on_return=self._loaded,
                               on_error=self._load_failed, on_finish=self._close_progress))
        prompts = self.book.items()  # replayed as they are now: later clicks go through their own tasks

        def restore() -> str:
            return self._restore(prompts)

        self._restore_message = ""
        self.tasks.submit(Task("restore", restore, on_return=self._restore_note, on_error=self._failed,
                               on_finish=self._restored))

    def _load_step(self, step: LoadProgress) -> None:
        self.status.emit(step.message)
        bar = self._progress
        if bar is not None:
            bar.set_description(f"SAM 2: {step.message}")
            if step.total:
                bar.total = step.total
                bar.n = step.done
                bar.refresh()

    def _loaded(self, session: Any) -> None:
        if self._closed:  # stopped while the model was loading
            Thread(target=session.close, daemon=True).start()
            return
        self.session = session
        self.status.emit(f"model ready on {session.device}, image size {session.model.image_size}")

    def _restore(self, prompts: list[tuple[Key, FramePrompt]]) -> str:
        """In the worker: bring back the engine's memory of a reopened session, saved in the label store; if there
        is none that fits this model, image and these prompts, replay the prompts instead. Returns a note."""
        session = self.session
        if session is None:
            return ""
        about = {"weights": weights_identity(self.model), "image": image_fingerprint(self.source),
                 "channel": str(self.choice.channel)}
        restored = self.memory.restore(session, prompts, about)
        if restored.loaded:
            return f"{restored.note} ({len(session.obj_ids)} objects): corrections continue the tracking as before"
        if not prompts:
            return ""
        for (obj_id, frame), prompt in prompts:
            apply_prompt(session, frame, obj_id, prompt)
        why = restored.note or "no saved tracking memory"
        return (f"{why}: the prompts were replayed instead; a correction on a frame tracked before may differ "
                "from the last session's until you propagate again")

    def _restore_note(self, note: str) -> None:
        self._restore_message = note

    def _restored(self) -> None:
        if self.session is not None:
            self.ready.emit()
            if self._restore_message:
                self.status.emit(f"{self._restore_message}. Ready.")
            self.prefetch()

    def _close_progress(self) -> None:
        bar, self._progress = self._progress, None
        if bar is not None:
            bar.close()

    def _load_failed(self, err: BaseException) -> None:
        self.load_failed.emit(load_failure_message(self.model, err))

    def _failed(self, err: BaseException, hint: str = "") -> None:
        message = f"{type(err).__name__}: {err}{hint}"
        self.status.emit(message)
        self.error.emit(message)

    # ------------------------------------------------------------------ objects
    def colours(self) -> dict[int, str]:
        colours = {i: info.colour for i, info in self.store.objects.items()}
        for obj_id in [*self.book.obj_ids(), self.current]:
            colours.setdefault(obj_id, default_colour(obj_id))
        return colours

    def set_current(self, obj_id: int) -> None:
        """Clicks, boxes and paint now go to ``obj_id``."""
        self.current = int(obj_id)
        self.layers.set_current(self.current, self.positive)
        self._recolour()
        self.current_changed.emit(self.current)

    def new_object(self) -> int:
        """Start the next object id."""
        self.set_current(max([*self.store.objects, *self.book.obj_ids(), self.current]) + 1)
        self.status.emit(f"new object {self.current}: click on it or draw a box")
        return self.current

    def toggle_polarity(self) -> bool:
        """Switch plain clicks between positive and negative; returns whether they are now positive."""
        self.positive = not self.positive
        self.layers.set_current(self.current, self.positive)
        self.status.emit("clicks are " + ("positive" if self.positive else "negative"))
        return self.positive

    def set_visible(self, obj_id: int, visible: bool) -> None:
        (self.hidden.discard if visible else self.hidden.add)(obj_id)
        self._recolour()

    def set_status(self, obj_id: int, status: str | None) -> None:
        """Record ``obj_id``'s review status (see ``review``) in the store."""
        self.store.set_object_status(obj_id, status)
        self.objects_changed.emit()

    def _edited(self, obj_ids: Iterable[int]) -> None:
        """The user edited ``obj_ids`` (clicks, a box, a mask, paint): rejected ones become corrected."""
        if mark_corrected(self.store, obj_ids):
            self.objects_changed.emit()

    def rename(self, obj_id: int, name: str) -> None:
        self.store.add_object(obj_id, name=name)
        self.objects_changed.emit()

    def prompted_frames(self, obj_id: int) -> list[int]:
        return self.book.frames(obj_id)

    def delete_object(self, obj_id: int) -> None:
        """Delete ``obj_id``: its clicks and boxes, its prompts and labels in the store, its track in the engine."""
        self.book.remove_object(obj_id)
        with self._quiet():
            self.layers.remove_object_prompts(obj_id)
        self.hidden.discard(obj_id)

        def delete() -> None:
            if self.session is not None and obj_id in self.session.obj_ids:
                self.session.remove_object(obj_id)
                self.memory.object_removed(obj_id)
            if obj_id in self.store.objects:
                self.store.remove_object(obj_id)

        def done() -> None:
            self.layers.refresh_labels()
            self.labels_written.emit(None)
            self._recolour()
            self.objects_changed.emit()

        paused = self.propagation.interrupt()
        tracking = self.auto.interrupt()
        self.tasks.submit(Task(f"delete-{obj_id}", delete, on_error=self._failed, on_finish=done))
        self._save_memory()
        if paused:
            self.propagation.resume()
        if tracking:
            self.auto.resume()

    def go_to_frame(self, frame: int) -> None:
        self.layers.go_to_frame(frame)

    def _recolour(self) -> None:
        with self._quiet():
            self.layers.recolour(self.colours(), self.hidden)
        self._coloured_objects = len(self.store.objects)

    # ------------------------------------------------------------------ prompts
    def _click_polarity(self, layer: Any, event: Any) -> Iterator[None]:
        """Mouse press on the clicks layer: a click with Shift or Control held is negative (positive in negative
        mode). Runs before napari adds the point; the default is restored once the click is handled."""
        negative = any(m in event.modifiers for m in NEGATIVE_MODIFIERS)
        layer.feature_defaults = {"obj_id": self.current, "label": int(self.positive != negative)}
        yield
        while event.type == "mouse_move":
            yield
        QTimer.singleShot(0, lambda: self.layers.set_current(self.current, self.positive))

    def _on_prompt_layer(self, event: Any) -> None:
        if self._syncing or getattr(event, "action", None) not in _DONE:
            return
        self.sync_prompts()

    def _on_boxes_layer(self, event: Any) -> None:
        if not self._dragging_box:  # a box being drawn, moved or resized is taken once the mouse is released
            self._on_prompt_layer(event)

    def _box_drag(self, layer: Any, event: Any) -> Iterator[None]:
        """Mouse press on the boxes layer: napari reports a box while it is drawn (R, then drag); segment it when the
        mouse is released — after napari's own release handler, which finishes the box, has run."""
        self._dragging_box = True
        yield
        while event.type == "mouse_move":
            yield
        QTimer.singleShot(0, self._box_released)

    def _box_released(self) -> None:
        self._dragging_box = False
        if not self._closed:
            self.sync_prompts()

    def sync_prompts(self) -> None:
        """Take the clicks and boxes from the layers; segment every (object, frame) whose prompt changed."""
        changed = self.book.update_from_layers(self.layers.read_points(), self.layers.read_boxes())
        with self._quiet():
            self.layers.drop_replaced_boxes()
        for obj_id, frame in changed:
            self._click_started[(obj_id, frame)] = time.perf_counter()
            self._submit_prompt(obj_id, frame)
        self._recolour()
        if changed:
            self._edited(o for o, _ in changed)
            self.objects_changed.emit()

    def use_painted_mask(self, obj_id: int | None = None, frame: int | None = None) -> bool:
        """Make the pixels painted for ``obj_id`` (default: the current object) on ``frame`` (default: the frame on
        screen) its mask prompt there. Returns False (and says why) when there are none."""
        obj_id = self.current if obj_id is None else obj_id
        frame = self.layers.current_frame() if frame is None else frame
        mask = self.view.read_frame(frame) == obj_id
        if not mask.any():
            self.status.emit(f"object {obj_id} has no pixels on frame {frame}: paint it first")
            return False
        self.book.set_mask(obj_id, frame, mask)
        self._click_started[(obj_id, frame)] = time.perf_counter()
        self._submit_prompt(obj_id, frame)
        self._edited([obj_id])
        self.objects_changed.emit()
        return True

    def _submit_prompt(self, obj_id: int, frame: int) -> None:
        """Queue the prompt of (object, frame): segmented, then recorded, then the engine's memory saved. During a
        propagation, the pass under way stops after its frame, the prompt is applied, and the run goes on."""
        def run() -> int | None:
            return self._run_prompt(obj_id, frame)

        def record() -> None:
            if self.session is not None:
                record_prompt(self.view, self.book.get(obj_id, frame), obj_id, frame)

        paused = self.propagation.interrupt(frame)
        tracking = self.auto.interrupt(frame)
        self.tasks.submit(Task(f"prompt-{obj_id}-{frame}", run, on_return=self._prompt_done, on_error=self._failed))
        self.tasks.submit(Task(f"record-{obj_id}-{frame}", record, on_error=self._failed,
                               on_finish=self.objects_changed.emit))
        self._save_memory()
        if paused:
            self.propagation.resume()
        if tracking:
            self.auto.resume()

    def _run_prompt(self, obj_id: int, frame: int) -> int | None:
        """In the worker: segment the (object, frame) prompt as the book has it now; write the labels."""
        if self.session is None:
            return None
        prompt = self.book.get(obj_id, frame)
        segment_prompt(self.session, self.view, prompt, obj_id, frame)
        self.memory.prompt_applied((obj_id, frame), prompt)
        return frame

    def _prompt_done(self, frame: int | None) -> None:
        if frame is None:
            return
        self.layers.refresh_labels([frame])
        self.labels_written.emit([frame])
        started = [t for (o, f), t in self._click_started.items() if f == frame]
        if started:  # from the click's layer event to the labels redrawn
            self.last_latency_ms = 1000 * (time.perf_counter() - min(started))
            self._click_started = {k: t for k, t in self._click_started.items() if k[1] != frame}
        shown = f" in {self.last_latency_ms:.0f} ms" if self.last_latency_ms is not None else ""
        self.status.emit(f"{self.propagation.word} {frame} segmented{shown}")

    # ------------------------------------------------------------------ painting
    def _on_hand_edit(self, edit: LabelEdit) -> None:
        """A frame was edited by hand (stroke, fill, erase, undo, redo): already stored, with the changed objects
        marked manual (see StoreLabels); keep the undo history's provenance and show new objects."""
        self.history.edited(edit)
        self._edited_ids |= edit.changed
        if not self._hand_edited:
            self._hand_edited = True
            QTimer.singleShot(0, self._hand_edits_shown)

    def _hand_edits_shown(self) -> None:
        self._hand_edited = False
        if self._closed:
            return
        edited, self._edited_ids = self._edited_ids, set()
        mark_corrected(self.store, edited)
        self.labels_written.emit(None)
        self._recolour()
        self.objects_changed.emit()

    def _on_selected_label(self, event: Any) -> None:
        value = int(self.layers.labels.selected_label)
        if value > 0 and value != self.current:
            self.set_current(value)

    # ------------------------------------------------------------------ features of the frame on screen
    def _on_step(self, event: Any = None) -> None:
        self.prefetch()

    def prefetch(self) -> None:
        """Compute the image features of the frame on screen in the background, so a click there is fast."""
        if self.session is None:
            return
        frame = self.layers.current_frame()
        if not 0 <= frame < self.num_frames:
            return

        def run() -> None:
            session = self.session
            if session is not None:
                session.prepare_frame(frame)

        self.tasks.submit(Task("prefetch", run, on_error=self._failed))

    # ------------------------------------------------------------------ propagation
    def propagate(
        self,
        direction: str = "forward",
        *,
        from_frame: int | None = None,
        frame_range: tuple[int, int] | None = None,
        patience: int = 0,
    ) -> PropagationPlan | None:
        """Propagate every object (``from_frame``: only from there on, the "from here" mode); labels are written
        and shown frame by frame; a prompt given meanwhile is applied between two frames and the run goes on;
        :meth:`cancel` stops it."""
        if self.propagation.running or self.auto.running:
            self.status.emit("a propagation is already running: cancel it first")
            return None
        prompted = sorted({f for (_, f), _ in self.book.items()})
        try:
            plan = plan_propagation(direction, self.num_frames, prompted, start=from_frame, frame_range=frame_range)
        except ValueError as err:
            self.status.emit(str(err))
            return None
        self.propagating.emit(True)
        self.status.emit(f"propagating {direction}…")
        self.propagation.start(plan, direction, patience)
        return plan

    def cancel(self) -> None:
        """Stop a propagation in progress after the frame being computed (frames already shown stay written)."""
        if not self.auto.cancel():
            self.propagation.cancel()

    def _propagated_frame(self, frame: int) -> None:
        self.memory.changed()
        if len(self.store.objects) != self._coloured_objects:  # Find all / Track all added objects: their colours
            self._recolour()
        self.layers.refresh_labels([frame])
        self.labels_written.emit([frame])

    def _propagation_finished(self, message: str) -> None:
        if self._closed:
            return
        self._recolour()
        self.layers.refresh_labels()
        self.labels_written.emit(None)
        self.propagating.emit(False)
        self.objects_changed.emit()
        self.status.emit(message)
        self._save_memory()
        self.prefetch()

    # ------------------------------------------------------------------ the engine's memory in the label store
    def _save_memory(self) -> None:
        """Queue a snapshot of the engine's memory after everything queued so far (a burst of changes: one)."""
        def save() -> None:
            if self.session is not None:
                self.memory.save(self.session)

        self.tasks.submit(Task("save-memory", save, on_error=self._failed), last=True)

    def save_memory(self) -> None:
        """Queue a snapshot of the engine's memory after everything queued so far (if it changed)."""
        self._save_memory()

    def memory_checkpoint(self) -> None:
        """In the worker, between two propagated frames (see ``EngineMemory.checkpoint``)."""
        if self.session is not None:
            self.memory.checkpoint(self.session)
