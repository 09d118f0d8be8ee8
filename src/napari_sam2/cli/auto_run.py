"""``segment --auto``: the engine's ``track_all`` inside a resumable run, and what it records in the label store.

New objects (found, or daughters) are registered with status "automatic"; daughters get their parent. The ids
of new objects continue from the largest of the session's ids and the store's ids when the run began (``id_floor``
in the run record), so a resumed run gives every object the id an uninterrupted run gives it. The tracker's own
state (``AutoTrackState``: the run's first frame, the division rule's history) is saved in the run record with each
resume state, in the same write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from napari_sam2.cli.run_record import RunRecord
from napari_sam2.io import LabelStore

AUTOMATIC = "automatic"


class AutoRun:
    """Runs ``track_all`` for a ``Runner`` and keeps the store's objects, statuses and parents up to date."""

    def __init__(self, options: dict[str, Any], store: LabelStore, record: RunRecord, *,
                 lost_patience: int | None = None) -> None:
        from napari_sam2.engine import AutoTrackSettings, FindSettings

        thresholds = {key: options[name] for name, key in (("min_predicted_iou", "pred_iou_threshold"),
                                                           ("min_stability", "stability_threshold")) if name in options}
        find = FindSettings(object_diameter=options["object_diameter"], min_area=options["min_size"],
                            max_area=options["max_size"], **thresholds)
        self.settings = AutoTrackSettings(find=find, redetect_every=options["redetect_every"],
                                          lost_patience=lost_patience)
        self.store = store
        self.record = record
        self.state = None

    def steps(self, session: Any, begin: int) -> Iterator[Any]:
        """Each frame's result from ``begin`` on (``FrameResult``), the store updated before it is handed over."""
        from napari_sam2.engine import AutoTrackState, track_all

        data = self.record.data
        saved = data.get("auto_state") if data.get("state") is not None else None
        self.state = AutoTrackState.from_json(saved) if saved else AutoTrackState(origin=data["start"])
        floor = int(data.get("id_floor", 0))

        def new_id() -> int:
            return max([floor, *session.obj_ids]) + 1

        for step in track_all(session, self.settings, start=begin, new_id=new_id, state=self.state):
            self._record(step)
            yield step.result

    def _record(self, step: Any) -> None:
        for obj_id in step.new_objects:
            self.store.add_object(obj_id)
            self.store.set_object_status(obj_id, AUTOMATIC)
        for division in step.divisions:
            for daughter in division.daughters:
                self.store.set_object_parent(daughter, division.parent)
        known = self.record.data.setdefault("objects", [])
        known += [o for o in step.new_objects if o not in known]

    def save_into(self, data: dict[str, Any]) -> None:
        """Put the tracker's state into the run record's data (saved with the resume state it belongs to)."""
        if self.state is not None:
            data["auto_state"] = self.state.to_json()
