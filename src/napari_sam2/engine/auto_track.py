"""Track everything: all objects propagated together, re-detection of new ones, and the division rule.

``track_all`` drives the session's own propagation (all objects of a frame in batches, memory as usual) and adds,
frame by frame in the forward direction:

* **re-detection** on the first frame and every ``redetect_every`` frames after it: ``find_objects.find_masks``
  skipping what the tracked objects cover; each new mask becomes an object with a mask prompt on that frame (in
  SAM 2 an object may get its first prompt on any frame), so cells that enter, appear or are born get tracks;
* **leaks cut**: a tracked mask that grows a part away from where the object was on the frame before (no pixel
  within ``leak_margin`` × its diameter of its previous mask) — SAM 2 jumping onto a cell that just entered — is cut
  back to the parts near its previous mask (a mask prompt, so memory follows the cut), leaving the other cell to
  re-detection;
* **divisions** (``divisions``): a parent's track ends on the frame before, its daughters start on the frame.

After objects are added, propagation restarts on the next frame (the new prompts are encoded into memory first);
this is the same computation as going on, so stopping anywhere and continuing from a saved state with the same
:class:`AutoTrackState` gives the same results. Stopping early (break, close) leaves the session consistent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from .divisions import Division, DivisionDetector, DivisionRule, touching
from .find_objects import FindSettings, find_masks
from .result import FrameResult

if TYPE_CHECKING:
    from .session import Session


@dataclass(frozen=True)
class AutoTrackSettings:
    """find: how objects are found; redetect_every: look for new objects every K frames after the first (None:
    only on the first frame); divisions: the division rule's parameters (None: no divisions); lost_patience: as
    ``Session.propagate``'s (stop tracking an object after K frames in a row predicted absent)."""

    find: FindSettings = field(default_factory=FindSettings)
    redetect_every: int | None = 10
    divisions: DivisionRule | None = field(default_factory=DivisionRule)
    lost_patience: int | None = None
    cut_leaks: bool = True
    leak_margin: float = 0.5

    def __post_init__(self) -> None:
        if self.redetect_every is not None and self.redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1 (or None), got {self.redetect_every}")


@dataclass
class AutoTrackState:
    """What ``track_all`` needs besides the session to continue exactly: the run's first frame (re-detection frames
    count from it) and the division detector's per-object history. JSON-able through ``to_json``/``from_json``."""

    origin: int
    detector: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"origin": self.origin, "detector": self.detector}

    @classmethod
    def from_json(cls, data: dict) -> AutoTrackState:
        return cls(int(data["origin"]), dict(data.get("detector") or {}))


@dataclass
class AutoStep:
    """One frame of ``track_all``: the result of every object on it, the objects that began on it (found by
    re-detection, or daughters), the divisions recognised on it and the objects whose tracks ended before it."""

    result: FrameResult
    new_objects: list[int]
    divisions: list[Division]
    ended: list[int]


def cut_leak(previous: np.ndarray, mask: np.ndarray, margin: float) -> np.ndarray | None:
    """``mask`` (H, W) bool without its 8-connected parts that lie away from ``previous`` (no pixel within ``margin``
    × the previous mask's equivalent diameter), or None when nothing is cut (also when no part is near: the object
    moved, nothing to judge by)."""
    if not previous.any() or not mask.any():
        return None
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count < 2:
        return None
    reach = max(1, int(round(margin * 2 * np.sqrt(previous.sum() / np.pi))))
    near = [k for k in range(1, count + 1) if touching(previous, labels == k, reach)]
    if not near or len(near) == count:
        return None
    return np.isin(labels, near)


def is_detection_frame(frame: int, origin: int, every: int | None) -> bool:
    return frame == origin or (every is not None and frame > origin and (frame - origin) % every == 0)


def track_all(
    session: Session,
    settings: AutoTrackSettings | None = None,
    *,
    start: int | None = None,
    direction: str = "forward",
    new_id: Callable[[], int] | None = None,
    state: AutoTrackState | None = None,
) -> Iterator[AutoStep]:
    """Track every object from ``start`` (default: ``state.origin``, else frame 0) to the last frame, finding new
    objects and divisions on the way (module docstring); yields one :class:`AutoStep` per frame.

    new_id: gives the id of each new object (default: one above the session's largest). state: pass the state of
    an earlier call, saved with the session's state, to continue it exactly; it is updated as frames are done
    (read it while a step is being handled). Only ``direction="forward"``: cells enter and divide forward in time.
    """
    if direction != "forward":
        raise ValueError(f"automatic tracking runs forward in time only, got direction={direction!r}")
    settings = settings or AutoTrackSettings()
    if state is None:
        state = AutoTrackState(origin=start if start is not None else 0)
    frame = start if start is not None else state.origin
    session._check_frame(frame)
    new_id = new_id or (lambda: max(session.obj_ids, default=0) + 1)
    detector = DivisionDetector(settings.divisions, state.detector) if settings.divisions else None
    last = session.num_frames - 1

    def detect(f: int, covered: np.ndarray | None) -> list[int]:
        ids = []
        for mask in find_masks(session, f, settings.find, covered=covered):
            obj_id = new_id()
            session.add_mask(f, obj_id, mask)
            ids.append(obj_id)
        return ids

    while frame <= last and not session.obj_ids:  # nothing to propagate yet: look for objects first
        found = detect(frame, None) if is_detection_frame(frame, state.origin, settings.redetect_every) else []
        step = _finish_frame(session, frame, found, detector, new_id)
        state.detector = detector.state() if detector else {}
        frame += 1
        yield step
    previous: tuple[int, FrameResult] | None = None  # the frame before, for cutting leaks
    while frame <= last:
        restart = False
        for result in session.propagate(start=frame, direction="forward", lost_patience=settings.lost_patience):
            f = result.frame
            if settings.cut_leaks and f > state.origin:
                before = previous[1] if previous is not None and previous[0] == f - 1 else session.result(f - 1)
                cut = _cut_leaks(session, before, result, settings.leak_margin)
                result = session.result(f) if cut else result
            found = []
            if is_detection_frame(f, state.origin, settings.redetect_every):
                live = [k for k, o in enumerate(result.obj_ids) if o not in session.track_ends]
                covered = result.masks[live].any(0) if live else None
                found = detect(f, covered)
            step = _finish_frame(session, f, found, detector, new_id, result)
            state.detector = detector.state() if detector else {}
            previous = (f, step.result)
            restart = bool(step.new_objects or step.ended or cut)
            if restart:  # new prompts: continue in a new pass, with the absence counts of this one
                session.resume_absent_counts = (f + 1, False, dict(session.absent_counts))
            yield step
            if restart:
                frame = f + 1
                break
        else:
            return


def _cut_leaks(session: Session, before: FrameResult, result: FrameResult, margin: float) -> list[int]:
    """Cut the leaks (``cut_leak``) of the objects tracked on ``result``'s frame; returns the ids corrected."""
    previous = dict(zip(before.obj_ids, before.masks, strict=True))
    cut = []
    for obj_id, mask in zip(result.obj_ids, result.masks, strict=True):
        if obj_id in session.track_ends or obj_id not in previous or result.frame in session.prompted_frames(obj_id):
            continue
        kept = cut_leak(previous[obj_id], mask, margin)
        if kept is not None:
            session.add_mask(result.frame, obj_id, kept)
            cut.append(obj_id)
    return cut


def _finish_frame(
    session: Session, frame: int, found: list[int], detector: DivisionDetector | None,
    new_id: Callable[[], int], result: FrameResult | None = None,
) -> AutoStep:
    """Apply the division rule on ``frame`` (after re-detection) and make the frame's step."""
    if found or result is None:
        result = session.result(frame)
    new, divisions, ended = list(found), [], []
    if detector is not None:
        live = [k for k, o in enumerate(result.obj_ids) if o not in session.track_ends]
        ids = [result.obj_ids[k] for k in live]
        masks = result.masks[live] if live else np.zeros((0, session.height, session.width), bool)
        for event in detector.observe(frame, ids, masks, set(found)):
            first = new_id()
            session.add_mask(frame, first, event.parts[0] if event.parts is not None else event.parent_mask)
            if event.parts is not None:
                second = new_id()
                session.add_mask(frame, second, event.parts[1])
                new.append(first)
                new.append(second)
            else:
                second = event.partner
                new.append(first)
            session.end_object(event.parent, frame - 1)
            divisions.append(Division(frame, event.parent, (first, second)))
            ended.append(event.parent)
        if divisions:
            result = session.result(frame)
    return AutoStep(result, new, divisions, ended)
