""""Find all" and "Track all" in the widget: the engine's automatic masklets on the frame on screen, and tracking
every object with re-detection every K frames and the division rule — run through the session's task queue like a
propagation (one task at a time, cancelled between two frames), with results written to the label store as they
come and shown frame by frame.

Objects found automatically become store objects with status "automatic" and a mask prompt on the frame where they
were found (stored, and in the prompt book), so a reopened session replays them like any prompt. Divisions found
by the engine become parent links in the store (``LabelStore.set_object_parent``).

Torch and the engine are imported only inside the worker (the widget's settings travel as :class:`AutoOptions`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_sam2._qt.prompts import FramePrompt, record_prompt
from napari_sam2._qt.review import AUTOMATIC
from napari_sam2._qt.tasks import Task

FIND_KEY, TRACK_KEY = "auto-find", "auto-track"
COVERED_FRACTION = 0.5  # a found mask this much inside objects already in the store is one of them


@dataclass(frozen=True)
class AutoOptions:
    """What the widget's "Find and track" box sets: ``object_diameter`` in frame pixels (None: the engine's default
    for cells), ``min_area``/``max_area`` in pixels (None: the engine's range for the diameter), ``redetect_every``
    K frames (None: never), ``min_quality``/``min_stability``: the predicted IoU and the stability score a candidate
    mask needs (None: the engine's defaults)."""

    object_diameter: float | None = None
    min_area: int | None = None
    max_area: int | None = None
    redetect_every: int | None = None
    min_quality: float | None = None
    min_stability: float | None = None

    def find_settings(self) -> Any:
        """The engine's ``FindSettings`` (imports the engine: call in the worker)."""
        from napari_sam2.engine.find_objects import FindSettings

        scores = {"pred_iou_threshold": self.min_quality, "stability_threshold": self.min_stability}
        return FindSettings(object_diameter=self.object_diameter, min_area=self.min_area, max_area=self.max_area,
                            **{k: v for k, v in scores.items() if v is not None})

    def track_settings(self) -> Any:
        """The engine's ``AutoTrackSettings`` (imports the engine: call in the worker)."""
        from napari_sam2.engine.auto_track import AutoTrackSettings

        return AutoTrackSettings(find=self.find_settings(), redetect_every=self.redetect_every)


@dataclass(frozen=True)
class TrackedFrame:
    """What one step of Track all wrote: ``frame``, the mask prompts of the objects that started there
    (``{obj_id: (H, W) bool}``), the divisions ``[(parent, (daughter, daughter))]`` and the objects that ended."""

    frame: int
    new_masks: dict[int, np.ndarray] = field(default_factory=dict)
    divisions: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


@dataclass
class TrackRun:
    """A Track all as it goes: where it started, its options and id counter, the engine's ``AutoTrackState``
    (made in the worker) and the last frame done (``front``), from which a paused run continues."""

    start: int
    options: AutoOptions
    ids: Iterator[int]
    state: Any = None
    front: int | None = None


def record_new_objects(view: Any, result: Any, obj_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Objects the engine started on ``result.frame`` (from a mask it found): write their masks as prompt results,
    register them with status "automatic" and store their masks as their prompts there. Returns ``{obj_id: mask}``.

    ``view``: the label store's frame view; ``result``: the engine's ``FrameResult`` (``frame``, ``obj_ids``,
    ``logits`` (K, H, W))."""
    ids = [int(o) for o in obj_ids if int(o) in result.obj_ids]
    if not ids:
        return {}
    rows = [list(result.obj_ids).index(o) for o in ids]
    if hasattr(result, "crops"):  # a tiled session's result: crops in boxes, never (K, H, W)
        view.write_sparse_result(result.frame, ids, result.boxes[rows], [result.crops[k] for k in rows],
                                 source="prompt")
        planes = [result.mask(k) for k in rows]
    else:
        logits = np.asarray(result.logits)[rows]
        view.write_result(result.frame, ids, logits, source="prompt")
        planes = [plane > 0 for plane in logits]
    masks = {}
    for obj_id, plane in zip(ids, planes, strict=True):
        view.store.add_object(obj_id)
        view.store.set_object_status(obj_id, AUTOMATIC)
        masks[obj_id] = plane
        if masks[obj_id].any():
            record_prompt(view, FramePrompt(mask=masks[obj_id]), obj_id, result.frame)
    return masks


def covered_in_store(result: Any, obj_ids: Sequence[int], labels: np.ndarray) -> list[int]:
    """Those of ``obj_ids`` whose mask in ``result`` lies mostly (> :data:`COVERED_FRACTION`) on pixels that
    ``labels`` (the stored (H, W) frame) already gives to an object — painted by hand, say, which the engine does not
    know about and so cannot skip itself."""
    taken = np.asarray(labels) > 0
    covered = []
    for obj_id in obj_ids:
        if obj_id not in result.obj_ids:
            continue
        k = list(result.obj_ids).index(obj_id)
        mask = result.mask(k) if hasattr(result, "crops") else np.asarray(result.logits[k]) > 0
        area = int(mask.sum())
        if area and (mask & taken).sum() > COVERED_FRACTION * area:
            covered.append(int(obj_id))
    return covered


class AutoDriver(QObject):
    """Runs Find all and Track all for ``controller`` (a TrackingController) through its task queue.

    ``progress_changed(done, total, text)`` as the propagation's; ``tracked()`` after a Track all ended (the
    lineage changed)."""

    progress_changed = Signal(int, int, str)
    tracked = Signal()

    def __init__(
        self,
        controller: Any,
        on_frame: Callable[[int], None],
        on_error: Callable[[BaseException], None],
        after_run: Callable[[str], None],
    ) -> None:
        super().__init__(controller)
        self.controller = controller
        self._on_frame = on_frame
        self._on_error = on_error
        self._after_run = after_run
        self._running: str | None = None
        self._cancelling = False
        self._done = 0
        self._total = 0
        self._found = 0
        self._divisions = 0
        self._pausing = False
        self._run: TrackRun | None = None

    @property
    def running(self) -> bool:
        return self._running is not None

    def _can_start(self, what: str) -> bool:
        c = self.controller
        if c.session is None:
            c.status.emit(f"{what}: the model is not loaded yet")
            return False
        if self.running or c.propagation.running:
            c.status.emit(f"{what}: a run is going on; cancel it first (Shift-C)")
            return False
        return True

    def _first_free_id(self) -> int:
        c = self.controller
        return max([*c.store.objects, *c.book.obj_ids(), c.current, *c.session.obj_ids, 0]) + 1

    # ------------------------------------------------------------------ Find all
    def find_all(self, frame: int, options: AutoOptions) -> bool:
        """Find every object on ``frame`` that no object covers yet; returns whether the search was queued."""
        if not self._can_start("Find all"):
            return False
        c = self.controller
        first = self._first_free_id()
        word = c.propagation.word

        def run() -> tuple[int, dict[int, np.ndarray]]:
            session = c.session
            if session is None:
                return frame, {}
            stored = c.view.read_frame(frame)
            new_ids = session.find_objects(frame, options.find_settings(), first_id=first)
            result = session.result(frame)
            duplicates = covered_in_store(result, new_ids, stored)
            for obj_id in duplicates:
                session.remove_object(obj_id)
            masks = record_new_objects(c.view, result, [o for o in new_ids if o not in duplicates])
            for obj_id, mask in masks.items():
                c.memory.prompt_applied((obj_id, frame), FramePrompt(mask=mask))
            return frame, masks

        self._running = FIND_KEY
        c.propagating.emit(True)
        c.status.emit(f"finding objects on {word} {frame}…")
        c.tasks.submit(Task(FIND_KEY, run, on_return=self._found_objects, on_error=self._on_error,
                            on_finish=self._find_finished))
        return True

    def _found_objects(self, outcome: tuple[int, dict[int, np.ndarray]]) -> None:
        frame, masks = outcome
        for obj_id, mask in masks.items():
            if mask.any():
                self.controller.book.set_mask(obj_id, frame, mask)
        self._found = len(masks)
        self._on_frame(frame)

    def _find_finished(self) -> None:
        self._running = None
        found, self._found = self._found, 0
        self._after_run(f"Find all: {found} new object{'s' if found != 1 else ''}")

    # ------------------------------------------------------------------ Track all
    def track_all(self, start: int, options: AutoOptions) -> bool:
        """Track every object forward from ``start``, finding new ones every K frames; returns whether it was
        queued. Stops after the frame being computed on :meth:`cancel`; pauses there for a prompt (see
        :meth:`interrupt`)."""
        if not self._can_start("Track all"):
            return False
        c = self.controller
        if getattr(c.session, "layout", None) is not None:  # a tiled session
            c.error.emit("Track all does not work in tiles yet: start the session with Tiles off (Find all and "
                         "propagation do)")
            return False
        self._run = TrackRun(start, options, itertools.count(self._first_free_id()))
        self._running, self._cancelling, self._pausing = TRACK_KEY, False, False
        self._done, self._total = 0, c.num_frames - start
        self._found = self._divisions = 0
        c.propagating.emit(True)
        self._report(f"tracking every object from {c.propagation.word} {start}…")
        c.tasks.submit(self._track_task())
        return True

    def _track_task(self) -> Task:
        return Task(TRACK_KEY, self._steps, on_yield=self._tracked_frame, on_error=self._on_error,
                    on_finish=self._track_finished)

    def _steps(self) -> Iterator[TrackedFrame]:
        """In the worker: the engine's ``track_all`` from where the run stands (its start, or after the last frame
        done, with the run's own state so re-detection and divisions go on exactly), writing every frame."""
        from napari_sam2.engine.auto_track import AutoTrackState, track_all

        c, run = self.controller, self._run
        session = c.session
        if session is None or run is None:
            return
        if run.state is None:
            run.state = AutoTrackState(origin=run.start)
        begin = run.start if run.front is None else run.front + 1
        if begin >= c.num_frames:
            return
        for step in track_all(session, run.options.track_settings(), start=begin, direction="forward",
                              new_id=lambda: next(run.ids), state=run.state):
            yield self._write_step(step)
            c.memory_checkpoint()

    def interrupt(self, frame: int | None = None) -> bool:
        """A prompt on ``frame`` (or a deletion: None) is about to be queued: Track all stops after the frame being
        computed; call :meth:`resume` once the change is queued. Returns whether Track all is going on."""
        if self._running != TRACK_KEY:
            return False
        c = self.controller
        if c.tasks.current_key == TRACK_KEY:
            self._pausing = True
            word = c.propagation.word
            what = f"your prompt on {word} {frame}" if frame is not None else "the deletion"
            c.status.emit(f"{what}: applied after the {word} being computed, then Track all goes on after it")
        c.tasks.cancel(TRACK_KEY)
        return True

    def resume(self) -> None:
        """Queue Track all's continuation after everything queued so far (see :meth:`interrupt`)."""
        if self._running == TRACK_KEY and not self._cancelling:
            self.controller.tasks.submit(self._track_task(), last=True)

    def _write_step(self, step: Any) -> TrackedFrame:
        """In the worker: one ``AutoStep`` into the label store (see the module docstring)."""
        c = self.controller
        result = step.result
        known = c.store.objects  # before the frame is written, which registers every id it carries
        c.view.write_frame_result(result)
        started = set(step.new_objects) | {d for div in step.divisions for d in div.daughters}
        masks = record_new_objects(c.view, result, sorted(o for o in started if o not in known))
        for obj_id, mask in masks.items():
            c.memory.prompt_applied((obj_id, result.frame), FramePrompt(mask=mask))
        for division in step.divisions:
            for daughter in division.daughters:
                c.store.set_object_parent(int(daughter), int(division.parent))
        c.memory.changed()
        divisions = [(int(d.parent), (int(d.daughters[0]), int(d.daughters[1]))) for d in step.divisions]
        return TrackedFrame(int(result.frame), masks, divisions, [int(o) for o in step.ended])

    def _tracked_frame(self, step: TrackedFrame) -> None:
        if self._run is not None:
            self._run.front = step.frame
        for obj_id, mask in step.new_masks.items():
            if mask.any():
                self.controller.book.set_mask(obj_id, step.frame, mask)
        self._done += 1
        self._found += len(step.new_masks)
        self._divisions += len(step.divisions)
        self._on_frame(step.frame)
        if not self._cancelling:
            self._report(f"{self.controller.propagation.word} {step.frame}")

    def _track_finished(self) -> None:
        if self._pausing and self.controller.tasks.waiting(TRACK_KEY):  # paused for a prompt: it goes on after it
            self._pausing = False
            return
        self._pausing = False
        self._running, self._run = None, None
        what = "Track all cancelled" if self._cancelling else "Track all finished"
        self._cancelling = False
        self.progress_changed.emit(0, 0, "")
        word = self.controller.propagation.word
        self._after_run(f"{what}: {self._done} {word}{'s' if self._done != 1 else ''}, {self._found} new objects, "
                        f"{self._divisions} division{'s' if self._divisions != 1 else ''}")
        self.tracked.emit()

    def cancel(self) -> bool:
        """Stop Track all after the frame being computed; returns whether a run was going on."""
        if self._running != TRACK_KEY:
            return False
        self._cancelling = True
        self._pausing = False
        if not self.controller.tasks.cancel(TRACK_KEY) and not self.controller.tasks.waiting(TRACK_KEY):
            self._track_finished()  # paused, its continuation not queued yet: it ends now
            return True
        self._report(f"cancelling after {self.controller.propagation.word} being computed…")
        return True

    def _report(self, where: str) -> None:
        word = self.controller.propagation.word
        self.progress_changed.emit(self._done, max(self._total, 1),
                                   f"{where} · {self._done} of {self._total} {word}s · {self._found} new objects")
