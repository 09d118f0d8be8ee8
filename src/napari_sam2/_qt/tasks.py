"""One background task at a time, in order, each in a napari ``thread_worker``.

The engine's session is not thread-safe, and a click must see the session as the previous click left it, so every
piece of work on it — loading the model, segmenting a click, precomputing a frame's features, propagating — goes
through one :class:`TaskQueue`. A task submitted under a key already waiting in the queue replaces it (a burst of
clicks on one frame costs one computation, which reads the newest prompts when it runs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal


class TaskFailed(Exception):
    """Carries a task's RuntimeError to the main thread: superqt's generator workers take a RuntimeError for a
    deleted worker and drop it silently (no ``errored``, no ``finished``), and torch raises many of them."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _shielded(gen: Generator) -> Callable[[], Generator]:
    def run() -> Generator:
        try:
            return (yield from gen)
        except RuntimeError as err:
            raise TaskFailed(err) from err

    return run


def _shielded_call(func: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return func()
        except RuntimeError as err:
            raise TaskFailed(err) from err

    return run


@dataclass
class Task:
    """Work for the queue: ``func`` (a function, or a generator function whose yields are progress and chances to
    cancel) and the main-thread callbacks for its yields, its return value, its error and its end (always called)."""

    key: str
    func: Callable[[], Any]
    on_yield: Callable[[Any], None] | None = None
    on_return: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    on_finish: Callable[[], None] | None = None


class TaskQueue(QObject):
    """Runs submitted tasks one after the other in worker threads; callbacks run on the main thread."""

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: list[Task] = []
        self._current: Task | None = None
        self._worker: Any = None
        self._generator: Generator | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """Whether a task runs or waits."""
        return self._current is not None or bool(self._queue)

    @property
    def current_key(self) -> str | None:
        return self._current.key if self._current is not None else None

    def waiting(self, key: str) -> bool:
        return any(t.key == key for t in self._queue)

    def submit(self, task: Task, *, last: bool = False) -> None:
        """Queue ``task``; one already waiting under the same key is replaced in place (with ``last``: dropped, and
        ``task`` goes to the end of the queue — for work that must follow everything queued so far)."""
        if self._closed:
            return
        was_busy = self.busy
        for i, queued in enumerate(self._queue):
            if queued.key == task.key:
                if last:
                    del self._queue[i]
                    self._queue.append(task)
                else:
                    self._queue[i] = task
                break
        else:
            self._queue.append(task)
        if not was_busy:
            self.busy_changed.emit(True)
        self._start_next()

    def cancel(self, prefix: str = "") -> bool:
        """Drop waiting tasks whose key starts with ``prefix`` and stop the running one if its key does (a generator
        task stops at its next yield). Returns whether a running task was asked to stop."""
        self._queue = [t for t in self._queue if not t.key.startswith(prefix)]
        if self._current is not None and self._current.key.startswith(prefix) and self._worker is not None:
            self._worker.quit()
            return True
        return False

    def close(self, final: Task | None = None) -> None:
        """Drop waiting tasks and stop the running one, then run ``final`` (if given); nothing is accepted after."""
        self.cancel()
        if final is not None:
            self.submit(final)
        self._closed = True

    def _start_next(self) -> None:
        if self._current is not None or not self._queue:
            return
        task = self._current = self._queue.pop(0)
        if inspect.isgeneratorfunction(task.func):
            self._generator = task.func()
            worker = create_worker(_shielded(self._generator), _ignore_errors=True)
        else:
            worker = create_worker(_shielded_call(task.func), _ignore_errors=True)
        self._worker = worker
        if task.on_yield is not None and hasattr(worker, "yielded"):
            worker.yielded.connect(task.on_yield)
        if task.on_return is not None:
            worker.returned.connect(task.on_return)
        on_error = task.on_error
        if on_error is not None:
            worker.errored.connect(lambda err: on_error(err.original if isinstance(err, TaskFailed) else err))
        worker.finished.connect(self._finished)
        worker.start()

    def _finished(self) -> None:
        task, self._current, self._worker = self._current, None, None
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.close()  # a cancelled generator ends here, now, before the next task starts
        if task is not None and task.on_finish is not None:
            task.on_finish()
        if self._queue:
            self._start_next()
        elif not self.busy:
            self.busy_changed.emit(False)
