"""One stack of a ``batch`` run, as a Dask task: ``napari-sam2 segment`` for that stack, in a child process of the
worker.

Why a child process and not a call in the worker: the segment run saves its progress on SIGTERM / SIGINT through
signal handlers, which Python installs only in a main thread (a Dask task runs in a worker thread); a crash or
an out-of-memory kill in torch ends the child, not the worker; each stack starts with a fresh torch and frees its
(GPU) memory at the end. The run is the command itself, so a stack resumes exactly as ``segment`` does.

Outcomes: exit 0 → ``done``; exit 1 or 2 (the stack's own problem: a bad file, bad prompts, a bad option) →
``failed`` with the run's one error line, not retried; killed by a signal or stopped by SIGTERM / SIGINT (its
progress saved) → :class:`StackStopped` is raised, and Dask runs the task again (``retries``), which continues
from the saved state. A lost worker (killed, node preempted) never returns: the scheduler hands its task to
another worker, where the run again continues from the label store.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from napari_sam2.cli.batch_child import PARENT_ENV

LOCK_WAIT_SECONDS = 300.0  # a previous run of this stack (on a lost worker) may still be saving its progress
EVENT_SECONDS = 0.5
PROGRESS_LINE = re.compile(r"(\d+)/(\d+) \[")
SEGMENTING_LINE = re.compile(r"segmenting (\d+) object\(s\) over (\d+) frames")
COMPLETE_LINE = re.compile(r"run of (\d+) object\(s\) over (\d+) frames .* already complete")
RESUMING_LINE = re.compile(r"resuming: (\d+) of (\d+) frames were done")
ERROR_LINE = re.compile(r"^napari-sam2( \w+)?: error: (.*)$")


class StackStopped(RuntimeError):
    """The stack's run was stopped from outside (a signal); its progress is saved and a new run continues it."""


@dataclass(frozen=True)
class StackJob:
    """A stack's ``segment`` run: ``argv`` follows ``napari-sam2``; ``error`` set: it cannot run (reported as is)."""

    name: str
    stack: str
    labels: str
    argv: tuple[str, ...]
    error: str | None = None


@dataclass
class StackResult:
    """A row of the batch summary. ``frames``: the stack's frames along the run's axis; ``resumed_from``: frame
    steps already done when the run that finished it started (0: it ran from the start)."""

    stack: str
    labels: str
    frames: int | None
    objects: int | None
    seconds: float
    status: str  # "done" or "failed"
    error: str
    resumed_from: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed(job: StackJob, error: str, seconds: float = 0.0) -> StackResult:
    return StackResult(job.stack, job.labels, None, None, round(seconds, 2), "failed", error)


class _Reporter:
    """Sends ``{"stack", "done", "total", "resumed"}`` events on ``topic`` from the worker (at most every 0.5 s)."""

    def __init__(self, topic: str | None, name: str) -> None:
        self.topic, self.name, self.last = topic, name, 0.0
        self.worker = None
        if topic:
            with contextlib.suppress(ValueError, ImportError):  # not in a Dask worker: nothing to report to
                from distributed import get_worker

                self.worker = get_worker()

    def __call__(self, done: int, total: int, resumed: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.worker is None or not (force or done == total or now - self.last >= EVENT_SECONDS):
            return
        self.last = now
        self.worker.log_event(self.topic, {"stack": self.name, "done": done, "total": total, "resumed": resumed})


def wait_until_unlocked(labels: Path, timeout: float = LOCK_WAIT_SECONDS) -> None:
    """Wait while another process holds the label store's lock (see ``segment.locked``)."""
    try:
        import fcntl
    except ImportError:
        return
    if not labels.is_dir():
        return
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(labels, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return  # the run itself then says who holds it
        except OSError:
            return
        finally:
            os.close(fd)
        time.sleep(0.5)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({PARENT_ENV: str(os.getpid()), "NAPARI_SAM2_LOG_STEP": "0", "PYTHONUNBUFFERED": "1"})
    return env


def run_stack(job: StackJob, topic: str | None = None) -> StackResult:
    """Run ``napari-sam2 segment`` for ``job`` in a child process; its result (raises :class:`StackStopped` when the
    run was stopped by a signal, so that Dask runs it again)."""
    if job.error is not None:
        return failed(job, job.error)
    wait_until_unlocked(Path(job.labels))
    report = _Reporter(topic, job.name)
    command = [sys.executable, "-m", "napari_sam2.cli.batch_child", *job.argv]
    began = time.monotonic()
    frames = objects = None
    resumed = done = total = 0
    tail: collections.deque[str] = collections.deque(maxlen=40)
    process = subprocess.Popen(command, env=_child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        for line in process.stderr:
            line = line.rstrip("\n")
            tail.append(line)
            if match := PROGRESS_LINE.search(line):
                done, total = int(match[1]), int(match[2])
                report(done, total, resumed)
            elif match := SEGMENTING_LINE.search(line) or COMPLETE_LINE.search(line):
                objects, frames = int(match[1]), int(match[2])
            elif match := RESUMING_LINE.search(line):
                resumed = done = int(match[1])
                total = int(match[2])
                report(done, total, resumed, force=True)
        code = process.wait()
    finally:
        if process.poll() is None:  # this thread was interrupted: do not leave the run behind
            process.terminate()
            process.wait()
    seconds = time.monotonic() - began
    if code == 0:
        report(total, total, resumed, force=True)
        return StackResult(job.stack, job.labels, frames, objects, round(seconds, 2), "done", "", resumed)
    if code in (1, 2):
        return failed(job, error_line(tail, code), seconds)
    how = f"signal {-code}" if code < 0 else f"exit status {code}"
    raise StackStopped(f"the segment run of {job.stack} stopped ({how}); its progress is saved")


def error_line(lines: Iterable[str], code: int) -> str:
    """The run's ``napari-sam2…: error: …`` message, else its last line (a traceback's exception)."""
    lines = [line for line in lines if line.strip()]
    for line in reversed(lines):
        if match := ERROR_LINE.match(line):
            return match[2]
    return lines[-1].strip() if lines else f"segment stopped with exit status {code}"
