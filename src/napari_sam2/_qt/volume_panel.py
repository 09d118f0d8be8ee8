"""The widget's "3D + time" box: "Propagate in 3D + time" for a session over a T,Z,Y,X stack along t.

The objects clicked (boxed, masked) in the session — on the plane z the session sits at — are segmented through z
at each t and followed over t as 3D objects (``engine.volume_time``); every (t, z) plane of the label store is
written and the labels layer shows them as they come. The work runs in the session's task queue (one piece of work
on the model at a time), one t per step, and can be cancelled between two t.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout

TASK_KEY = "volume-time"


class VolumePanel(QGroupBox):
    """The button and a line of status; :meth:`start` runs a propagation for a controller."""

    def __init__(self) -> None:
        super().__init__("3D + time")
        self.propagate_button = QPushButton("Propagate in 3D + time")
        self.propagate_button.setToolTip("Segment every object through z at each time point and follow it over time "
                                         "as a 3D object, from the planes it was prompted on (stacks with t and z)")
        self.note = QLabel("For stacks with t and z: start a session along t at a z plane, prompt, then press.")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.propagate_button)
        layout.addWidget(self.note)
        self.setEnabled(False)

    def offer(self, controller: Any) -> None:
        """Enable the box when ``controller`` runs along t over a stack with a z axis."""
        ok = controller is not None and volume_axes(controller) is not None
        self.setEnabled(ok)

    def start(self, controller: Any) -> bool:
        """Queue the propagation of every prompted object in 3D over time; False (with a note) when it cannot."""
        axes = volume_axes(controller)
        if axes is None:
            self.note.setText("Propagate in 3D + time needs a session along t over a stack with a z axis.")
            return False
        if not controller.book.items():
            self.note.setText("Prompt at least one object first.")
            return False
        from napari_sam2._qt.tasks import Task

        controller.propagating.emit(True)
        self.propagate_button.setEnabled(False)
        self.note.setText("propagating in 3D + time…")

        def step(t: int) -> None:
            controller.layers.refresh_labels()
            controller.labels_written.emit(None)
            self.note.setText(f"3D + time: t={t} done")

        def failed(err: BaseException) -> None:
            self.note.setText(f"3D + time failed: {err}")

        def finished() -> None:
            self.propagate_button.setEnabled(True)
            controller.layers.refresh_labels()
            controller.propagating.emit(False)
            controller.objects_changed.emit()
            if not self.note.text().startswith("3D + time failed"):
                self.note.setText("3D + time: done")

        def work():  # a generator function: the queue runs it as a worker whose yields report each t
            yield from run_volume(controller, *axes)

        controller.tasks.submit(Task(TASK_KEY, work, on_yield=step, on_error=failed, on_finish=finished))
        return True


    def cancel(self, controller: Any) -> None:
        """Stop a 3D + time propagation after the t being computed (the planes of every finished t stay)."""
        controller.tasks.cancel(TASK_KEY)


def volume_axes(controller: Any) -> tuple[str, str] | None:
    """(frame axis, volume axis) when the session runs along t over a stack that has z, else None."""
    choice = controller.choice
    if choice.frame_axis != "t" or "z" not in choice.label_axes or "z" not in choice.position:
        return None
    return "t", "z"


def run_volume(controller: Any, frame_axis: str, volume_axis: str):
    """(worker thread) Follow the session's objects in 3D over time, writing each t's planes; yields each t."""
    from napari_sam2.engine.volume_time import PlanePrompt, VolumeTimeTracker
    from napari_sam2.io.volume_source import VolumeSource

    choice = controller.choice
    z = int(choice.position[volume_axis])
    others = {k: v for k, v in choice.position.items() if k != volume_axis}
    source = VolumeSource(controller.source.raw, frame_axis=frame_axis, volume_axis=volume_axis,
                          channel=choice.channel, position=others)  # shares the session's open file: not closed here
    session = controller.session
    tracker = VolumeTimeTracker(session.model, source, intensity_range=source.intensity_range(),
                                session_options={"device": session.device})
    try:
        for (obj_id, t), p in controller.book.items():
            points = None if p.points is None else tuple(tuple(float(v) for v in yx) for yx in p.points)
            labels = None if p.labels is None else tuple(int(v) for v in p.labels)
            tracker.add_prompt(PlanePrompt(t, z, obj_id, points, labels, p.box, p.mask))
        store = controller.store
        for step in tracker.propagate():
            view = store.frame_view(axis=volume_axis, position={**others, frame_axis: step.t})
            for plane in range(source.shape[1]):
                view.write_result(plane, step.obj_ids, step.plane_logits(plane))
            yield step.t
    finally:
        tracker.close()
