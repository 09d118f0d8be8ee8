"""One thread that runs all of a session's model work, inside one long-lived precision context.

torch's inference mode and autocast are per thread, and autocast re-casts every weight to bfloat16 each
time its context is entered: entering them per frame costs hundreds of casts per frame. Running the model
in a dedicated thread that enters them once keeps the cast weights cached, and leaves the caller's thread
(napari's, a consumer of ``propagate``) untouched by either context.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import torch

from .device import compute_context

T = TypeVar("T")


class ComputeThread:
    """Runs callables one at a time in a daemon thread that holds the compute context."""

    def __init__(self, device: torch.device, precision: str = "auto") -> None:
        self.device = device
        self.precision = precision
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` in the compute thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` for the compute thread (after the jobs queued before it); its future."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="napari-sam2-compute", daemon=True)
            self._thread.start()
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=10)
        self._thread = None

    def _loop(self) -> None:
        with compute_context(self.device, self.precision):
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                future, fn, args, kwargs = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as err:  # handed to the caller's thread
                    future.set_exception(err)
