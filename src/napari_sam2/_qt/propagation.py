"""Planning a propagation run from the widget's settings, and the "lost for k frames" stopping rule.

No Qt and no torch: the plan is a list of engine ``propagate`` calls, the rule a filter on their results.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ABSENT_LOGIT = -1024.0


@dataclass(frozen=True)
class PropagationPlan:
    """Engine calls ``propagate(start=..., direction=..., max_frames=...)``, one per pass, run in order."""

    passes: tuple[tuple[str, int | None, int], ...]

    @property
    def total_frames(self) -> int:
        """Frames the passes yield at most (the progress bar's length)."""
        return sum(n + 1 for _, _, n in self.passes)


def plan_propagation(
    direction: str,
    num_frames: int,
    prompted: list[int],
    *,
    start: int | None = None,
    frame_range: tuple[int, int] | None = None,
) -> PropagationPlan:
    """The passes for ``direction`` ("forward", "backward", "both").

    ``start``: the frame to propagate from ("from here"); None: from the earliest prompted frame (forward, both) or
    the latest (backward), as the whole masklet. ``frame_range``: (first, last) frames the run may write, inclusive.
    """
    if direction not in ("forward", "backward", "both"):
        raise ValueError(f"direction must be forward, backward or both, got {direction!r}")
    first, last = frame_range if frame_range is not None else (0, num_frames - 1)
    first, last = max(0, min(first, last)), min(num_frames - 1, max(first, last))
    if start is None:
        if not prompted:
            raise ValueError("no prompts yet: click on an object or draw a box first")
        inside = [f for f in prompted if first <= f <= last] or prompted
        start = max(inside) if direction == "backward" else min(inside)
    start = min(max(start, first), last)
    passes: list[tuple[str, int | None, int]] = []
    if direction in ("forward", "both"):
        passes.append(("forward", start, last - start))
    if direction in ("backward", "both"):
        passes.append(("backward", start, start - first))
    return PropagationPlan(tuple(passes))


def engine_supports_patience(session: Any) -> bool:
    """Whether the engine's ``propagate`` takes ``lost_patience`` (stop tracking an object lost k frames in a row)."""
    try:
        return "lost_patience" in inspect.signature(session.propagate).parameters
    except (TypeError, ValueError):
        return False


def propagation_steps(
    session: Any, view: Any, plan: PropagationPlan, patience: int = 0
) -> Iterator[tuple[int, int]]:
    """Run ``plan`` on the engine session, writing each frame's result to the label store ``view`` before yielding
    ``(pass index, frame)`` (so stopping at a yield leaves exactly the yielded frames written). ``patience``: see
    LostObjects."""
    native = engine_supports_patience(session)
    for index, (direction, start, max_frames) in enumerate(plan.passes):
        extra = {"lost_patience": patience} if native and patience > 0 else {}
        rule = LostObjects(0 if native else patience)
        for result in session.propagate(start=start, direction=direction, max_frames=max_frames, **extra):
            result, all_lost = rule.apply(result)
            view.write_frame_result(result)
            yield index, result.frame
            if all_lost:
                break


@dataclass
class PropagationRun:
    """A propagation as it goes (main-thread bookkeeping): the passes left, where the pass under way stands, how
    many frames were done and how long they took.

    A prompt given during the run pauses it between two frames; :meth:`resume_plan` then plans the rest: the pass
    under way starts again at the earliest corrected frame it had already gone through (so the frames after a
    correction follow it), else goes on after the last frame it computed; the passes after it are unchanged.
    """

    plan: PropagationPlan
    done: int = 0
    pass_index: int = 0
    front: int | None = None  # the last frame the pass under way yielded
    corrected: set[int] = field(default_factory=set)
    continued: bool = False  # the current plan's first pass continues the pass that was paused, after its front
    seconds: float = 0.0  # time spent on the frames counted in ``timed``
    timed: int = 0
    _last_yield: float | None = None

    def frame_done(self, pass_index: int, frame: int, now: float) -> None:
        """The pass ``pass_index`` of the current plan yielded ``frame`` at time ``now`` (seconds)."""
        if pass_index != self.pass_index:
            self.pass_index, self.front = pass_index, None
        if self._last_yield is not None:  # the first frame of a start also pays for the prompts' memories
            self.seconds += now - self._last_yield
            self.timed += 1
        self._last_yield = now
        self.front = frame
        self.done += 1

    def paused(self) -> None:
        """The run stopped between frames (the next yield starts a new timing interval)."""
        self._last_yield = None

    def remaining(self) -> int:
        """Frames still to compute by the current plan."""
        left = 0
        for i, (direction, start, count) in enumerate(self.plan.passes[self.pass_index :]):
            if i == 0 and self.front is not None:
                left += abs(_pass_end(direction, start, count) - self.front)
            else:
                left += count + 1
        return left

    def seconds_left(self) -> float | None:
        """Estimated time to finish, from the mean time per frame so far (None until one frame was timed)."""
        return self.seconds / self.timed * self.remaining() if self.timed else None

    def resume_plan(self) -> PropagationPlan:
        """The plan that continues this run after a pause (see the class docstring); it becomes the current one."""
        passes = list(self.plan.passes[self.pass_index :])
        self.continued = False
        if passes and self.front is not None:
            direction, start, count = passes[0]
            end = _pass_end(direction, start, count)
            step = 1 if direction == "forward" else -1
            behind = [f for f in self.corrected if 0 <= (f - start) * step <= (self.front - start) * step]
            if behind:
                begin = min(behind, key=lambda f: (f - start) * step)
            elif self.front == end:
                begin = None
            else:
                begin = self.front + step
                self.continued = True
            passes = passes[1:] if begin is None else [(direction, begin, abs(end - begin)), *passes[1:]]
        self.plan = PropagationPlan(tuple(passes))
        self.pass_index, self.front = 0, None
        self.corrected.clear()
        self.paused()
        return self.plan


def _pass_end(direction: str, start: int, count: int) -> int:
    return start + count if direction == "forward" else start - count


@dataclass
class LostObjects:
    """The stopping rule applied to one pass's results when the engine does not: an object whose object score is
    negative ``patience`` frames in a row is lost; from then on this pass writes it as absent (no false positives
    after it left), and the pass stops once every object is lost. ``patience`` 0: never."""

    patience: int
    streak: dict[int, int] = field(default_factory=dict)

    def lost(self, obj_id: int) -> bool:
        return self.patience > 0 and self.streak.get(obj_id, 0) >= self.patience

    def apply(self, result: Any) -> tuple[Any, bool]:
        """``(result with lost objects absent, whether every object is now lost)``."""
        if self.patience <= 0 or not len(result.obj_ids):
            return result, False
        logits = result.logits
        for k, obj_id in enumerate(result.obj_ids):
            if self.lost(obj_id):
                if logits is result.logits:
                    logits = logits.copy()
                logits[k] = ABSENT_LOGIT
                continue
            visible = float(result.object_scores[k]) > 0 and bool((result.logits[k] > 0).any())
            self.streak[obj_id] = 0 if visible else self.streak.get(obj_id, 0) + 1
        all_lost = all(self.lost(o) for o in result.obj_ids)
        if logits is not result.logits:
            result = PassResult(result.frame, tuple(result.obj_ids), np.asarray(logits), result.object_scores)
        return result, all_lost


@dataclass(frozen=True)
class PassResult:
    """A frame's result after the stopping rule (same fields as the engine's ``FrameResult``)."""

    frame: int
    obj_ids: tuple[int, ...]
    logits: np.ndarray
    object_scores: np.ndarray
