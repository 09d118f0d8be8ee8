"""The division rule: when a tracked cell has divided, on per-frame masks (pure numpy, no model).

SAM 2 tracking a cell through mitosis does one of two things, and each is a rule here:

* **split** — the mask goes on covering both daughters: it falls into two parts (8-connected components), each at
  least ``min_part_fraction`` of the object's area and ``min_part_area`` pixels, no further apart than
  ``max_part_gap`` times the object's equivalent diameter (a mask that leaked onto a distant cell is not a
  division), on ``split_persistence`` frames in a row. The track ends on the frame before; the two parts, on the
  frame where the split is confirmed, start two daughter tracks.
* **shrink** — the mask follows one daughter: the object's area falls to at most ``shrink_ratio`` times its median
  area over the last ``area_history`` frames, while a new object (one found by re-detection on this frame) appears
  against it (within ``contact_distance`` pixels). The track ends on the frame before; the object's current mask
  starts one daughter track and the new object is the other.

Both apply only to objects tracked for at least ``min_track_age`` frames (a fresh daughter does not divide again at
once). Consequences, by design: daughters start on the frame where the division is *recognised* — up to
``split_persistence - 1`` frames after the split shows (rule 1), or on the re-detection frame that finds the second
daughter (rule 2, at most the re-detection interval late); the parent's mask on the frames in between stays as
tracked. The parent has no result after it ends.

:class:`DivisionDetector` applies the rules frame by frame (its state is JSON-able, for exact resumes);
:func:`detect_divisions` runs it over a tracked label sequence; :func:`divisions_from_labels` reads divisions off a
label sequence whose divisions are already resolved (a parent ends, two new objects begin against it: ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class DivisionRule:
    """Parameters of the division rule (see the module docstring)."""

    min_part_fraction: float = 0.2
    min_part_area: int = 12
    max_part_gap: float = 0.5
    split_persistence: int = 2
    shrink_ratio: float = 0.7
    area_history: int = 10
    contact_distance: int = 3
    min_track_age: int = 3


@dataclass(frozen=True)
class Division:
    """Object ``parent`` divided: its track ends on ``frame - 1`` and ``daughters`` begin on ``frame``."""

    frame: int
    parent: int
    daughters: tuple[int, int]


@dataclass
class DivisionEvent:
    """What the rule decided on one frame for one parent: ``parts`` (two (H, W) bool masks, rule "split": both
    become new daughter objects) or ``partner`` (the new object that is one daughter, rule "shrink") with
    ``parent_mask`` (the parent's current mask, which becomes the other daughter)."""

    frame: int
    parent: int
    rule: str
    parts: tuple[np.ndarray, np.ndarray] | None = None
    partner: int | None = None
    parent_mask: np.ndarray | None = None


@dataclass
class _History:
    first_frame: int
    areas: list[int] = field(default_factory=list)
    split_run: int = 0


def two_parts(mask: np.ndarray, rule: DivisionRule) -> tuple[np.ndarray, np.ndarray] | None:
    """The two largest 8-connected parts of ``mask`` (H, W) bool, if both are large enough to be cells."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    labels, count = ndimage.label(mask[y0:y1, x0:x1], structure=_EIGHT)
    if count < 2:
        return None
    areas = np.bincount(labels.ravel())[1:]
    order = np.argsort(-areas, kind="stable")
    big = max(rule.min_part_area, rule.min_part_fraction * int(mask.sum()))
    if areas[order[1]] < big:
        return None
    gap = max(1, int(round(rule.max_part_gap * 2 * np.sqrt(mask.sum() / np.pi))))
    if not touching(labels == order[0] + 1, labels == order[1] + 1, gap):
        return None
    parts = []
    for k in order[:2]:
        full = np.zeros_like(mask)
        full[y0:y1, x0:x1] = labels == k + 1
        parts.append(full)
    return parts[0], parts[1]


def touching(a: np.ndarray, b: np.ndarray, distance: int) -> bool:
    """Whether masks ``a`` and ``b`` come within ``distance`` pixels of each other (or overlap)."""
    rows, cols = np.flatnonzero(b.any(1)), np.flatnonzero(b.any(0))
    if not len(rows) or not a.any():
        return False
    pad = distance + 1
    y0, y1 = max(0, rows[0] - pad), rows[-1] + 1 + pad
    x0, x1 = max(0, cols[0] - pad), cols[-1] + 1 + pad
    grown = ndimage.binary_dilation(b[y0:y1, x0:x1], structure=_EIGHT, iterations=distance) if distance else \
        b[y0:y1, x0:x1]
    return bool((grown & a[y0:y1, x0:x1]).any())


class DivisionDetector:
    """Applies :class:`DivisionRule` frame by frame to the masks of tracked objects."""

    def __init__(self, rule: DivisionRule | None = None, state: dict | None = None) -> None:
        self.rule = rule or DivisionRule()
        self._history: dict[int, _History] = {}
        if state:
            self._history = {int(o): _History(int(h["first_frame"]), [int(a) for a in h["areas"]],
                                              int(h["split_run"])) for o, h in state.items()}

    def state(self) -> dict:
        """JSON-able state: per object its first frame seen, recent areas and current run of split frames."""
        return {str(o): {"first_frame": h.first_frame, "areas": list(h.areas), "split_run": h.split_run}
                for o, h in sorted(self._history.items())}

    def forget(self, obj_id: int) -> None:
        self._history.pop(int(obj_id), None)

    def observe(
        self, frame: int, obj_ids: Sequence[int], masks: np.ndarray, born: set[int] = frozenset()
    ) -> list[DivisionEvent]:
        """Masks (len(obj_ids), H, W) bool of the live objects on ``frame``; ``born``: objects new on this frame
        (found by re-detection). Returns the divisions recognised now; their parents are forgotten."""
        rule = self.rule
        index = {int(o): k for k, o in enumerate(obj_ids)}
        events: list[DivisionEvent] = []
        partners_used: set[int] = set()
        for obj, k in index.items():
            mask = masks[k]
            area = int(mask.sum())
            history = self._history.get(obj)
            if history is None:
                if area:
                    self._history[obj] = _History(frame, [area])
                continue
            old = history.areas[-rule.area_history :]
            mature = frame - history.first_frame >= rule.min_track_age and obj not in born
            parts = two_parts(mask, rule) if area else None
            history.split_run = history.split_run + 1 if parts is not None else 0
            if mature and parts is not None and history.split_run >= rule.split_persistence:
                events.append(DivisionEvent(frame, obj, "split", parts=parts))
                continue
            if mature and area and old and area <= rule.shrink_ratio * float(np.median(old)):
                partner = self._partner(mask, born - partners_used, index, masks)
                if partner is not None:
                    partners_used.add(partner)
                    events.append(DivisionEvent(frame, obj, "shrink", partner=partner, parent_mask=mask.copy()))
                    continue
            if area:
                history.areas = (old + [area])[-rule.area_history :]
        for event in events:
            self.forget(event.parent)
        return events

    def _partner(self, mask: np.ndarray, born: set[int], index: dict[int, int], masks: np.ndarray) -> int | None:
        """The new object against ``mask`` with the most pixels within reach of it."""
        best, best_area = None, 0
        for obj in sorted(born):
            if obj in index and touching(mask, masks[index[obj]], self.rule.contact_distance):
                area = int(masks[index[obj]].sum())
                if area > best_area:
                    best, best_area = obj, area
        return best


def detect_divisions(
    labels: np.ndarray, rule: DivisionRule | None = None, *, new_id: Callable[[], int] | None = None,
    born: Sequence[set[int]] | None = None,
) -> tuple[list[Division], np.ndarray]:
    """Run the rule over a tracked label sequence (T, H, W) (ids as tracked, 0 background): returns the divisions
    and the relabelled sequence, in which each parent ends before its division and the daughters carry new ids
    (from ``new_id``, default one above the largest id). ``born[t]``: ids found by re-detection on frame t (default:
    ids that first appear on frame t)."""
    labels = np.asarray(labels)
    out = labels.copy()
    top = [int(labels.max())]

    def next_id() -> int:
        top[0] += 1
        return top[0]

    new_id = new_id or next_id
    detector = DivisionDetector(rule)
    seen: set[int] = set()
    ended: set[int] = set()
    rename: dict[int, int] = {}  # rule "shrink": the parent's pixels after its end become this daughter
    divisions: list[Division] = []
    for t in range(len(labels)):
        frame = out[t]
        for old, new in rename.items():
            frame[labels[t] == old] = new
        ids = [int(i) for i in np.unique(frame) if i and int(i) not in ended]
        first = {i for i in ids if i not in seen}
        seen.update(ids)
        masks = np.stack([frame == i for i in ids]) if ids else np.zeros((0, *frame.shape), bool)
        for event in detector.observe(t, ids, masks, born[t] if born is not None else first):
            d1 = new_id()
            if event.parts is not None:
                d2 = new_id()
                frame[event.parts[0]] = d1
                frame[event.parts[1]] = d2
                for later in range(t + 1, len(labels)):  # the two parts' futures are unknown: the parent ends
                    out[later][labels[later] == event.parent] = 0
            else:
                d2 = event.partner
                frame[event.parent_mask] = d1
                rename[event.parent] = d1
            ended.add(event.parent)
            divisions.append(Division(t, event.parent, (d1, d2)))
    return divisions, out


def divisions_from_labels(labels: np.ndarray, contact_distance: int = 3) -> list[Division]:
    """Divisions of a label sequence (T, H, W) whose divisions are resolved: an object last present on frame t - 1
    and two objects first present on frame t, both against its last mask (within ``contact_distance``)."""
    labels = np.asarray(labels)
    present = [set(np.unique(f).tolist()) - {0} for f in labels]
    last = {}
    for t, ids in enumerate(present):
        for i in ids:
            last[i] = t
    divisions = []
    seen: set[int] = set(present[0]) if len(present) else set()
    for t in range(1, len(labels)):
        new = sorted(present[t] - seen)
        seen |= present[t]
        ended = [i for i in present[t - 1] if last[i] == t - 1]
        for parent in ended:
            mother = labels[t - 1] == parent
            daughters = [d for d in new if touching(mother, labels[t] == d, contact_distance)]
            if len(daughters) >= 2:
                daughters.sort(key=lambda d: -int((labels[t] == d).sum()))
                divisions.append(Division(t, int(parent), (int(daughters[0]), int(daughters[1]))))
                new = [d for d in new if d not in daughters[:2]]
    return divisions
