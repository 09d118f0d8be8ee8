"""The widget's "Review" box: step through the objects with the keyboard (J next, Shift-J previous), accept (K:
verified) or reject (W: rejected) each; the view jumps to the object — the nearest frame where it has pixels, centred
on it — and a strip shows its crops over time. It steps through the objects the objects list shows (its filter:
all, not reviewed yet, or the rejected ones to correct)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_sam2._qt.crop_strip import CropStrip
from napari_sam2._qt.crops import object_crops
from napari_sam2._qt.footprints import FootprintIndex
from napari_sam2._qt.review import REJECTED, VERIFIED, ReviewQueue, status_text, statuses_of

ControllerGetter = Callable[[], Any]  # the running TrackingController, or None


class ReviewPanel(QGroupBox):
    """Review mode for the session that ``controller()`` returns. ``filter_name()``: the objects list's filter."""

    def __init__(self, controller: ControllerGetter, filter_name: Callable[[], str]) -> None:
        super().__init__("Review")
        self._controller = controller
        self._filter_name = filter_name
        self.queue = ReviewQueue()
        self._index: FootprintIndex | None = None
        self._indexed_for: Any = None
        self.previous_button = QPushButton("◀ Previous (Shift-J)")
        self.previous_button.setToolTip("Review the previous object the list shows (Shift-J)")
        self.next_button = QPushButton("Next (J) ▶")
        self.next_button.setToolTip("Review the next object the list shows (J): jump to it and show its crops")
        self.accept_button = QPushButton("Accept (K)")
        self.accept_button.setToolTip("Keep this masklet: mark it verified and go to the next object (K)")
        self.reject_button = QPushButton("Reject (W)")
        self.reject_button.setToolTip("Wrong masklet: mark it rejected (to correct) and go to the next object (W); "
                                      "once you fix it with a click, a box or paint it becomes corrected")
        self.where_label = QLabel("Press J to review the objects one by one.")
        self.where_label.setWordWrap(True)
        self.strip = CropStrip()
        steps = QHBoxLayout()
        for w in (self.previous_button, self.next_button, self.accept_button, self.reject_button):
            steps.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addLayout(steps)
        layout.addWidget(self.where_label)
        layout.addWidget(self.strip)
        self.previous_button.clicked.connect(self.previous)
        self.next_button.clicked.connect(self.next)
        self.accept_button.clicked.connect(self.accept)
        self.reject_button.clicked.connect(self.reject)
        self.strip.frame_clicked.connect(self._go_to)

    # ------------------------------------------------------------------ the object under review
    @property
    def current(self) -> int | None:
        return self.queue.current

    def footprints(self) -> FootprintIndex | None:
        """Where the session's objects are, per frame (rebuilt for a new session)."""
        c = self._controller()
        if c is None:
            return None
        if self._indexed_for is not c:
            self._index, self._indexed_for = FootprintIndex(c.view), c
            self.queue = ReviewQueue()
        return self._index

    def labels_changed(self, frames: Any = None) -> None:
        """Labels were written (on ``frames``; None: anywhere): where objects are is read again when needed."""
        if self._index is not None:
            self._index.invalidate(frames)

    def next(self, *_: Any) -> int | None:
        return self._step(True)

    def previous(self, *_: Any) -> int | None:
        return self._step(False)

    def accept(self, *_: Any) -> int | None:
        """Mark the object under review verified and go to the next one."""
        return self._judge(VERIFIED)

    def reject(self, *_: Any) -> int | None:
        """Mark the object under review rejected (listed to correct) and go to the next one."""
        return self._judge(REJECTED)

    def _judge(self, status: str) -> int | None:
        c = self._controller()
        if c is None or self.footprints() is None:
            return None
        obj_id = self.queue.current
        if obj_id is None or obj_id not in c.store.objects:
            return self.next()
        c.set_status(obj_id, status)
        return self.next()

    def _step(self, forward: bool) -> int | None:
        c = self._controller()
        if c is None or self.footprints() is None:
            return None
        self.queue.filter_name = self._filter_name()
        obj_id = self.queue.step(statuses_of(c.store), forward)
        if obj_id is None:
            self.where_label.setText(f"No object is listed under “{self.queue.filter_name}”.")
            self.strip.clear()
            return None
        self.show_object(obj_id)
        return obj_id

    def show_object(self, obj_id: int) -> None:
        """Make ``obj_id`` current, go to the nearest frame where it has pixels, centre the view on it, show its
        crops over time."""
        c = self._controller()
        index = self.footprints()
        if c is None or index is None:
            return
        self.queue.current = obj_id
        c.set_current(obj_id)
        present = index.of_object(obj_id)
        word = c.propagation.word
        info = c.store.objects.get(obj_id)
        place, listed = self.queue.position(statuses_of(c.store))
        status = status_text(info.status if info else None) or "no status"
        first, last = (min(present), max(present)) if present else (None, None)
        where = (f"no pixels on any {word}" if first is None else f"{word} {first}" if first == last
                 else f"{word}s {first}–{last} ({len(present)} with pixels)")
        self.where_label.setText(f"<b>object {obj_id}</b> · {status} · {where} · {place} of {listed}")
        if present:
            here = c.layers.current_frame()
            frame = min(present, key=lambda f: (abs(f - here), f))
            c.go_to_frame(frame)
            self._centre_on(c, frame, present[frame].centroid)
        colour = c.colours().get(obj_id, "#ffffff")
        crops = object_crops(present, obj_id, lambda f: c.source[f], c.view.read_frame)
        self.strip.show_crops(crops, colour, word)

    def _go_to(self, frame: int) -> None:
        c = self._controller()
        index = self.footprints()
        if c is None or index is None:
            return
        c.go_to_frame(frame)
        footprint = index.on_frame(frame).get(self.queue.current) if self.queue.current is not None else None
        if footprint is not None:
            self._centre_on(c, frame, footprint.centroid)

    @staticmethod
    def _centre_on(c: Any, frame: int, centroid: tuple[float, float]) -> None:
        """Centre the viewer's camera on frame pixel ``centroid`` (y, x) of ``frame``."""
        point = c.layers.current_point()
        point[c.choice.frame_dim] = frame
        y, x = c.layers.yx_dims
        point[y], point[x] = centroid
        world = np.asarray(c.layers.labels.data_to_world(point))
        scene = getattr(c.viewer, "scene", None)
        camera = scene.camera if scene is not None else c.viewer.camera
        camera.center = (float(world[y]), float(world[x]))
