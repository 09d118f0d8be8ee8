"""Verification of masklets, as the seed's data engine does it: every object has a review status in the label store
(``automatic``, ``verified``, ``rejected``, ``corrected``, or none). Review mode steps through the objects; accepting
one marks it verified, rejecting it rejected; a rejected object that the user then edits becomes corrected.

No Qt and no torch: :class:`ReviewQueue` is the order and the filter, :func:`mark_corrected` the rule for edits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

AUTOMATIC, VERIFIED, REJECTED, CORRECTED = "automatic", "verified", "rejected", "corrected"

FILTERS = {  # name shown in the widget → the statuses it keeps (None: every object)
    "all objects": None,
    "not reviewed yet": (AUTOMATIC, None),
    "to correct (rejected)": (REJECTED,),
}
STATUS_GLYPHS = {AUTOMATIC: "○", VERIFIED: "✓", REJECTED: "✗", CORRECTED: "✎", None: ""}
STATUS_COLOURS = {AUTOMATIC: "#c8c8c8", VERIFIED: "#4cd964", REJECTED: "#ff5a5a", CORRECTED: "#5ac8ff"}


def status_text(status: str | None) -> str:
    """``"✓ verified"``; ``""`` when the object has no status."""
    return f"{STATUS_GLYPHS[status]} {status}" if status else ""


def keeps(filter_name: str, status: str | None) -> bool:
    """Whether an object with ``status`` is listed under the filter ``filter_name`` (one of :data:`FILTERS`)."""
    wanted = FILTERS[filter_name]
    return wanted is None or status in wanted


@dataclass
class ReviewQueue:
    """The objects to review, in id order, under a filter, and the one under review (``current``)."""

    filter_name: str = "all objects"
    current: int | None = None

    def listed(self, statuses: Mapping[int, str | None]) -> list[int]:
        """Ids of ``statuses`` (``{obj_id: status}``) that the filter keeps, sorted."""
        return sorted(i for i, s in statuses.items() if keeps(self.filter_name, s))

    def step(self, statuses: Mapping[int, str | None], forward: bool = True) -> int | None:
        """Move to the next (or previous) listed object after the current one, wrapping around; the current one
        need not be listed any more (accepted under "not reviewed yet"). Returns it (None: nothing listed)."""
        ids = self.listed(statuses)
        if not ids:
            self.current = None
            return None
        if self.current is None:
            self.current = ids[0] if forward else ids[-1]
        elif forward:
            self.current = next((i for i in ids if i > self.current), ids[0])
        else:
            self.current = next((i for i in reversed(ids) if i < self.current), ids[-1])
        return self.current

    def position(self, statuses: Mapping[int, str | None]) -> tuple[int, int]:
        """(1-based place of the current object among the listed ones (0: not listed), how many are listed)."""
        ids = self.listed(statuses)
        return (ids.index(self.current) + 1 if self.current in ids else 0), len(ids)


def statuses_of(store: Any) -> dict[int, str | None]:
    """``{obj_id: status}`` of every object of the label store."""
    return {i: info.status for i, info in store.objects.items()}


def mark_corrected(store: Any, obj_ids: Iterable[int]) -> list[int]:
    """The user edited ``obj_ids`` (clicks, a box, paint): the rejected ones among them become corrected in the
    store. Returns those ids."""
    objects = store.objects
    done = []
    for obj_id in sorted({int(o) for o in obj_ids}):
        info = objects.get(obj_id)
        if info is not None and info.status == REJECTED:
            store.set_object_status(obj_id, CORRECTED)
            done.append(obj_id)
    return done
