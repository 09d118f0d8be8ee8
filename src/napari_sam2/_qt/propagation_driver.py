"""A propagation in the widget, from start to end: shown frame by frame with a counter and the time left, paused
between two frames when the user gives a prompt or deletes an object (the change is applied at once, then the run
goes on — :meth:`PropagationRun.resume_plan` says from where), cancelled between two frames.

The engine cannot take a prompt while one of its propagation passes is under way, so a click during a run stops the
pass at the next frame boundary, is applied (its mask is shown), and a new pass continues the run: the user never
waits for the whole run to see a correction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from napari.utils import progress
from qtpy.QtCore import QObject, Signal

from napari_sam2._qt.propagation import PropagationPlan, PropagationRun, propagation_steps
from napari_sam2._qt.tasks import Task

KEY = "propagate"


def frame_word(axis: str) -> str:
    """What the user calls one 2D frame of a stack along ``axis``: a slice along z, a frame otherwise."""
    return "slice" if axis == "z" else "frame"


def describe_seconds(seconds: float | None) -> str:
    """``"about 2 min 10 s left"``; None: not known yet."""
    if seconds is None:
        return "estimating the time left…"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"about {minutes} min {seconds:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


class PropagationDriver(QObject):
    """Runs propagations for ``controller`` (a TrackingController) through its task queue.

    ``progress_changed(done, total, text)``: frames computed, frames of the run, a line for the widget (the current
    frame, the counts and the time left); ``text`` is empty once no run is going on."""

    progress_changed = Signal(int, int, str)

    def __init__(
        self,
        controller: Any,
        on_step: Callable[[int], None],
        on_error: Callable[[BaseException], None],
        after_run: Callable[[str], None],
    ) -> None:
        super().__init__(controller)
        self.controller = controller
        self.word = frame_word(controller.choice.frame_axis)
        self.run: PropagationRun | None = None
        self._on_step = on_step
        self._on_error = on_error
        self._after_run = after_run
        self._lock = threading.Lock()  # the run's plan is read by the worker when a pass (re)starts
        self._patience = 0
        self._pausing = False
        self._cancelling = False
        self._bar: Any = None

    @property
    def running(self) -> bool:
        """Whether a run was started and has not ended (it may be paused for a correction)."""
        return self.run is not None

    def start(self, plan: PropagationPlan, direction: str, patience: int) -> None:
        """Start propagating by ``plan`` (after the tasks already queued)."""
        self._close_bar()
        self.run = PropagationRun(plan)
        self._patience = patience
        self._pausing = self._cancelling = False
        self._bar = progress(total=plan.total_frames, desc=f"SAM 2: propagating {direction}")
        self.controller.tasks.submit(self._task())
        self._report(f"propagating {direction}: starting…")

    def interrupt(self, frame: int | None = None) -> bool:
        """A prompt on ``frame`` (or an object deletion: None) is about to be queued: stop the run's pass at the
        next frame boundary. Call :meth:`resume` once the change is queued. Returns whether a run is going on."""
        if self.run is None:
            return False
        with self._lock:
            if frame is not None:
                self.run.corrected.add(frame)
        tasks = self.controller.tasks
        if tasks.current_key == KEY:
            self._pausing = True
            what = f"your click on {self.word} {frame}" if frame is not None else "the deletion"
            self._report(f"{what}: applied after the {self.word} being computed, then propagation goes on",
                         status=True)
        tasks.cancel(KEY)  # stops the pass under way after its frame, or drops a waiting continuation
        return True

    def resume(self) -> None:
        """Queue the run's continuation after everything queued so far (see :meth:`interrupt`)."""
        if self.run is not None and not self._cancelling:
            self.controller.tasks.submit(self._task(), last=True)

    def cancel(self) -> None:
        """Stop the run after the frame being computed; a run waiting for a correction ends at once."""
        if self.run is None:
            return
        self._cancelling = True
        self._pausing = False
        if self.controller.tasks.cancel(KEY):
            done = self.run.front
            after = f" after {self.word} {done}" if done is not None else ""
            self._report(f"cancelling{after}…", status=True)
        else:
            self._ended("propagation cancelled")

    # ------------------------------------------------------------------ the task
    def _task(self) -> Task:
        return Task(KEY, self._steps, on_yield=self._stepped, on_error=self._on_error, on_finish=self._finished)

    def _steps(self) -> Iterator[tuple[int, int]]:
        """In the worker: the run's passes from where it stands, writing every frame's labels."""
        session = self.controller.session
        if session is None or self.run is None:
            return
        with self._lock:
            plan = self.run.resume_plan()
            continued = self.run.continued
        if continued and self._patience > 0 and plan.passes:  # the paused pass goes on: keep its absence counts
            direction, begin, _ = plan.passes[0]
            session.resume_absent_counts = (begin, direction == "backward", dict(session.absent_counts))
        for step in propagation_steps(session, self.controller.view, plan, self._patience):
            yield step
            self.controller.memory_checkpoint()

    def _stepped(self, step: tuple[int, int]) -> None:
        run = self.run
        if run is None:
            return
        pass_index, frame = step
        with self._lock:
            run.frame_done(pass_index, frame, time.monotonic())
        self._on_step(frame)
        if self._cancelling:
            return
        self._report(f"{self.word} {frame}")
        bar = self._bar  # napari's progress bar processes Qt events while updating: this may re-enter (and end)
        if bar is not None:
            with self._lock:
                bar.total = run.done + run.remaining()
            bar.set_description(f"SAM 2: propagated {self.word} {frame}")
            bar.update(1)

    def _finished(self) -> None:
        if self.run is None:
            return
        if self._pausing and self.controller.tasks.waiting(KEY):
            self._pausing = False
            with self._lock:
                self.run.paused()
            return
        self._pausing = False
        self._ended("propagation cancelled" if self._cancelling else "propagation finished")

    def _ended(self, what: str) -> None:
        run, self.run = self.run, None
        self._close_bar()
        self._cancelling = False
        self.progress_changed.emit(0, 0, "")
        done = run.done if run is not None else 0
        self._after_run(f"{what}: {done} {self.word}{'s' if done != 1 else ''} computed")

    def _report(self, where: str, status: bool = False) -> None:
        run = self.run
        if run is None:
            return
        with self._lock:
            done, total, left = run.done, run.done + run.remaining(), run.seconds_left()
        self.progress_changed.emit(done, total, f"{where} · {done} of {total} {self.word}s · {describe_seconds(left)}")
        if status:
            self.controller.status.emit(where)

    def _close_bar(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
