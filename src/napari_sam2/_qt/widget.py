"""The SAM 2 dock widget: session settings, then prompt, propagate, correct and manage objects. The work itself is
done by :class:`TrackingController`; shortcuts are bound on the viewer while a session runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_sam2._qt.auto_panel import FindTrackPanel
from napari_sam2._qt.cluster_panel import ClusterPanel
from napari_sam2._qt.controller import TrackingController
from napari_sam2._qt.fine_tune_panel import FineTunePanel
from napari_sam2._qt.lineage_actions import LineageActions
from napari_sam2._qt.lineage_panel import LineagePanel
from napari_sam2._qt.model_loading import LOCAL_FILE, ModelFactory, random_weights_factory
from napari_sam2._qt.objects_list import ObjectRow, ObjectsList
from napari_sam2._qt.review_panel import ReviewPanel
from napari_sam2._qt.settings import SessionSettings
from napari_sam2._qt.tracks_layer import LineageTracks
from napari_sam2._qt.volume_panel import VolumePanel

RANDOM_WEIGHTS_ENV = "NAPARI_SAM2_RANDOM_WEIGHTS"  # "1": offer a random-weight model (UI demos; masks mean nothing)

# (key, what it does, widget method): bound on the viewer while a session runs, and listed in the widget's help.
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("N", "new object (the next id)", "new_object"),
    ("Q", "toggle clicks positive / negative", "toggle_polarity"),
    ("G", "propagate (direction and range as set)", "propagate"),
    ("Shift-G", "propagate from the frame on screen", "propagate_from_here"),
    ("Shift-C", "cancel the propagation", "cancel"),
    ("U", "use the painted mask of the current object as its prompt", "use_painted_mask"),
    ("Shift-F", "Find all: every object not yet covered on the frame on screen", "find_all"),
    ("Shift-T", "Track all: every object, from the frame on screen on", "track_all"),
    ("J", "review the next object (jump to it, show its crops)", "review_next"),
    ("Shift-J", "review the previous object", "review_previous"),
    ("K", "keep the object under review: verified, then the next", "accept_object"),
    ("W", "wrong: reject the object under review (to correct), then the next", "reject_object"),
)
MOUSE_HELP = (
    ("click", "positive point (clicks layer, add mode)"),
    ("Shift/Ctrl-click", "negative point"),
    ("R, then drag", "a box (boxes layer)"),
    ("P, then paint", "fix labels by hand (labels layer); kept"),
)


def shortcuts_html() -> str:
    """The shortcut table shown in the widget's help."""
    rows = [(k, d) for k, d, _ in SHORTCUTS] + list(MOUSE_HELP)
    body = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{d}</td></tr>" for k, d in rows)
    return f"<table>{body}</table>"


class _Column(QWidget):
    """The boxes, one under the other, in the widget's scroll area: as tall as they need (the area scrolls), as wide
    as the dock is (no minimum width of their own, as in a dock without a scroll area)."""

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())


class SAM2Widget(QWidget):
    """SAM 2 in napari. ``model_factories``: extra entries of the model menu, name → callable returning a
    ``SAM2Model`` (tests and custom models)."""

    def __init__(self, napari_viewer: Any, model_factories: dict[str, ModelFactory] | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller: TrackingController | None = None
        self.lineage: LineageActions | None = None
        self.tracks: LineageTracks | None = None
        self._session_image: Image | None = None
        self._unbound: dict[str, Any] = {}
        factories = dict(model_factories or {})
        if os.environ.get(RANDOM_WEIGHTS_ENV) == "1":
            factories.setdefault("random weights (UI demo)", random_weights_factory())
        self.settings = SessionSettings(napari_viewer, factories)
        self._build()
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumHeight(8)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.hide()
        self.status_label = QLabel("Choose an image and press Start.")
        self.status_label.setWordWrap(True)

        self.new_button = QPushButton("New object (N)")
        self.current_label = QLabel()
        self.negative_check = QCheckBox("Negative clicks (Q)")
        self.objects = ObjectsList()
        self.mask_button = QPushButton("Use painted mask as prompt (U)")
        row = QHBoxLayout()
        row.addWidget(self.new_button)
        row.addWidget(self.current_label, 1)
        row.addWidget(self.negative_check)
        objects_layout = QVBoxLayout()
        objects_layout.addLayout(row)
        objects_layout.addWidget(self.objects)
        objects_layout.addWidget(self.mask_button)
        self.objects_box = QGroupBox("Objects")
        self.objects_box.setLayout(objects_layout)

        self.direction_combo = QComboBox()
        self.direction_combo.addItems(["forward", "backward", "both"])
        self.range_check = QCheckBox("only frames")
        self.first_spin, self.last_spin = QSpinBox(), QSpinBox()
        self.patience_spin = QSpinBox()
        self.patience_spin.setRange(0, 1000)
        self.patience_spin.setSpecialValueText("never")
        self.patience_spin.setSuffix(" frames")
        self.patience_spin.setToolTip("Stop tracking an object once it is absent this many frames in a row")
        self.propagate_button = QPushButton("Propagate (G)")
        self.here_button = QPushButton("From here (Shift-G)")
        self.cancel_button = QPushButton("Cancel (Shift-C)")
        self.propagation_bar = QProgressBar()  # the run under way: frames done of all…
        self.propagation_bar.hide()
        self.propagation_label = QLabel()  # …the frame computed, the counts and the time left
        self.propagation_label.setWordWrap(True)
        self.propagation_label.hide()
        range_row = QHBoxLayout()
        for w in (self.range_check, self.first_spin, QLabel("to"), self.last_spin):
            range_row.addWidget(w)
        buttons = QHBoxLayout()
        for w in (self.propagate_button, self.here_button, self.cancel_button):
            buttons.addWidget(w)
        self.propagate_box = QGroupBox("Propagate")
        form = QFormLayout(self.propagate_box)
        form.addRow("Direction", self.direction_combo)
        form.addRow("Range", range_row)
        form.addRow("Stop when lost for", self.patience_spin)
        form.addRow(buttons)
        form.addRow(self.propagation_bar)
        form.addRow(self.propagation_label)

        self.find_box = FindTrackPanel()
        self.volume_box = VolumePanel()
        self.review_box = ReviewPanel(lambda: self.controller, lambda: self.objects.filter_name)
        self.lineage_box = LineagePanel()

        self.fine_tune_box = FineTunePanel(lambda: (self.controller, self._session_image))
        self.fine_tune_box.trained.connect(self.reload_with_checkpoint)
        self.fine_tune_box.message.connect(self.status_label.setText)
        self.cluster_box = ClusterPanel(lambda: (self.controller, self._session_image))
        self.cluster_box.message.connect(self.status_label.setText)

        self.help_box = QGroupBox("Shortcuts")
        QVBoxLayout(self.help_box).addWidget(QLabel(shortcuts_html()))

        content = _Column()  # in a scroll area: the boxes together are taller than most screens
        layout = QVBoxLayout(content)
        for w in (self.settings, self.busy_bar, self.status_label, self.objects_box, self.propagate_box,
                  self.volume_box, self.find_box, self.review_box, self.lineage_box, self.fine_tune_box,
                  self.cluster_box, self.help_box):
            layout.addWidget(w)
        layout.addStretch(1)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.settings.start_stop.connect(self._start_stop)
        self.settings.message.connect(self.status_label.setText)
        self.new_button.clicked.connect(self.new_object)
        self.negative_check.toggled.connect(self._negative_toggled)
        self.mask_button.clicked.connect(self.use_painted_mask)
        self.propagate_button.clicked.connect(self.propagate)
        self.here_button.clicked.connect(self.propagate_from_here)
        self.cancel_button.clicked.connect(self.cancel)
        self.objects.selected.connect(self._object_selected)
        self.objects.visibility_changed.connect(lambda o, v: self.controller and self.controller.set_visible(o, v))
        self.objects.renamed.connect(lambda o, n: self.controller and self.controller.rename(o, n))
        self.objects.delete_requested.connect(self.delete_object)
        self.objects.jump_requested.connect(lambda f: self.controller and self.controller.go_to_frame(f))
        self.find_box.find_button.clicked.connect(self.find_all)
        self.volume_box.propagate_button.clicked.connect(lambda: self.controller and self.volume_box.start(
            self.controller))
        self.find_box.track_button.clicked.connect(self.track_all)
        self.lineage_box.show_requested.connect(self.show_lineage)
        self.lineage_box.division_requested.connect(self.mark_division)
        self.lineage_box.merge_requested.connect(self.merge_into_current)
        self.lineage_box.split_requested.connect(self.split_current)
        self.lineage_box.end_requested.connect(self.end_current)
        self.lineage_box.export_requested.connect(self.export_lineage)
        self._set_running(False)

    def event(self, event: QEvent) -> bool:
        """napari closes a dock widget by taking it out of its window: end the session then (its labels stay)."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self.controller is not None:
            self.stop(remove_layers=False)
        return super().event(event)

    def _layers_changed(self, event: Any) -> None:
        c = self.controller
        ours = c is not None and (event.value is self._session_image or event.value in c.layers.all)
        if ours and event.type == "removed":
            self.status_label.setText(f"layer “{event.value.name}” was removed: session stopped")
            self.stop(remove_layers=True)
        self.settings.fill_layers()

    # ------------------------------------------------------------------ session
    def _start_stop(self) -> None:
        if self.controller is None:
            self.start()
        else:
            self.stop()

    def start(self) -> TrackingController | None:
        """Open the label store, add the layers, load the model in the background, restore a saved session."""
        layer = self.settings.image_layer()
        if layer is None:
            self._error("open an image first (a time-lapse or a volume)")
            return None
        try:
            choice = self.settings.stack_choice(layer)
            model = self.settings.model_choice()
            controller = TrackingController(self.viewer, layer, choice, self.settings.store_path(), model,
                                            self.settings.device())
        except (ValueError, OSError) as err:
            self._error(str(err))
            return None
        self.controller, self._session_image = controller, layer
        controller.status.connect(self.status_label.setText)
        controller.error.connect(self._error)
        controller.load_failed.connect(self._load_failed)
        controller.tasks.busy_changed.connect(self.busy_bar.setVisible)
        controller.objects_changed.connect(self._refresh_objects)
        controller.current_changed.connect(self._current_changed)
        controller.propagating.connect(self._propagating)
        controller.propagation_progress.connect(self._propagation_progress)
        self.range_check.setText(f"only {controller.propagation.word}s")
        controller.ready.connect(self._ready)
        controller.labels_written.connect(self.review_box.labels_changed)
        self.lineage = LineageActions(controller)
        self.tracks = LineageTracks(self.viewer, controller.layers.labels, controller.store,
                                    str(controller.store.path.resolve()))
        self.lineage.changed.connect(self.show_lineage)
        controller.auto.tracked.connect(self.show_lineage)
        self.busy_bar.setVisible(controller.busy)
        for spin in (self.first_spin, self.last_spin):
            spin.setRange(0, controller.num_frames - 1)
        self.last_spin.setValue(controller.num_frames - 1)
        self._bind_keys()
        self._set_running(True)
        self.propagate_box.setEnabled(controller.num_frames > 1)  # a single image: click, see, correct; no frames
        self.find_box.track_button.setEnabled(controller.num_frames > 1)
        self.lineage_box.setEnabled(controller.num_frames > 1 and self.tracks.supported)
        self.volume_box.offer(controller)
        self._refresh_objects()
        where = f"{choice.describe()}; labels in {controller.store.path}"
        self.status_label.setText(f"{where}; loading {model.describe()}…")
        return controller

    def _ready(self) -> None:
        c = self.controller
        if c is None or c.session is None:
            return
        model = f"{c.model.describe()} at {c.session.model.image_size} px on {c.session.device}"
        self.status_label.setText(f"Ready ({model}): click on an object or draw a box (N: new object)")

    def stop(self, remove_layers: bool = True) -> None:
        """End the session (everything is already saved) and remove its layers."""
        if self.controller is None:
            return
        controller, self.controller = self.controller, None
        self._unbind_keys()
        if remove_layers and self.tracks is not None:
            self.tracks.remove()
        self.lineage = self.tracks = None
        self.review_box.strip.clear()
        controller.close(remove_layers=remove_layers)
        self._set_running(False)
        self.busy_bar.hide()
        self.objects.set_rows([])
        self.status_label.setText("Session ended; its labels and prompts are saved.")

    def reload_with_checkpoint(self, checkpoint: Path) -> TrackingController | None:
        """After fine-tuning: restart the session with ``checkpoint`` (as a local checkpoint file) and, once it is
        ready, propagate its prompted objects again with the new weights."""
        self.stop(remove_layers=True)
        self.settings.model_combo.setCurrentText(LOCAL_FILE)
        self.settings.checkpoint_edit.setText(str(checkpoint))
        controller = self.start()
        if controller is not None:
            controller.ready.connect(lambda c=controller: self._propagate_again(c))
        return controller

    def _propagate_again(self, controller: TrackingController) -> None:
        if controller is self.controller and controller.book.items() and controller.num_frames > 1:
            controller.propagate("both")

    def _set_running(self, running: bool) -> None:
        self.settings.set_running(running)
        for box in (self.objects_box, self.find_box, self.propagate_box, self.review_box, self.lineage_box):
            box.setEnabled(running)
        self.volume_box.offer(self.controller if running else None)
        self.cancel_button.setEnabled(False)

    def _load_failed(self, message: str) -> None:
        """The model could not be loaded: end the half-started session (its layers go; the label store keeps what
        it had) and say what failed and what works."""
        self.stop(remove_layers=True)
        self._error(message)

    def _error(self, message: str) -> None:
        self.status_label.setText(message)
        show_error(f"SAM 2: {message}")

    # ------------------------------------------------------------------ actions (buttons and keys)
    def new_object(self, *_: Any) -> None:
        if self.controller is not None:
            self.controller.new_object()

    def toggle_polarity(self, *_: Any) -> None:
        self.negative_check.toggle()

    def _negative_toggled(self, negative: bool) -> None:
        if self.controller is not None and self.controller.positive == negative:
            self.controller.toggle_polarity()

    def use_painted_mask(self, *_: Any) -> None:
        if self.controller is not None:
            self.controller.use_painted_mask()

    def propagate(self, *_: Any, from_here: bool = False) -> None:
        if self.controller is None or not self.propagate_box.isEnabled():
            return
        frame_range = (self.first_spin.value(), self.last_spin.value()) if self.range_check.isChecked() else None
        start = self.controller.layers.current_frame() if from_here else None
        self.controller.propagate(self.direction_combo.currentText(), from_frame=start, frame_range=frame_range,
                                  patience=self.patience_spin.value())

    def propagate_from_here(self, *_: Any) -> None:
        self.propagate(from_here=True)

    def cancel(self, *_: Any) -> None:
        if self.controller is not None and self.cancel_button.isEnabled():
            self.cancel_button.setEnabled(False)  # taken: the run stops after the frame being computed
            self.controller.cancel()
            self.volume_box.cancel(self.controller)

    def find_all(self, *_: Any) -> None:
        """Find every object that no object covers yet on the frame on screen."""
        c = self.controller
        if c is not None and self.find_box.isEnabled() and self.find_box.find_button.isEnabled():
            c.auto.find_all(c.layers.current_frame(), self.find_box.options())

    def track_all(self, *_: Any) -> None:
        """Track every object from the frame on screen on, re-detecting every K frames."""
        c = self.controller
        if c is not None and self.find_box.isEnabled() and self.find_box.track_button.isEnabled():
            c.auto.track_all(c.layers.current_frame(), self.find_box.options())

    # ------------------------------------------------------------------ review and lineage
    def review_next(self, *_: Any) -> None:
        self.review_box.next()

    def review_previous(self, *_: Any) -> None:
        self.review_box.previous()

    def accept_object(self, *_: Any) -> None:
        self.review_box.accept()

    def reject_object(self, *_: Any) -> None:
        self.review_box.reject()

    def show_lineage(self, *_: Any) -> None:
        """Show (or refresh) the Tracks layer of the store's lineage."""
        if self.tracks is not None:
            count = self.tracks.refresh()
            if not count:
                self.status_label.setText("no tracks yet: find, click or track objects first")

    def mark_division(self, parent: int, first: int, second: int) -> None:
        if self.lineage is not None:
            self.lineage.mark_division(parent, (first, second))

    def merge_into_current(self, other: int) -> None:
        if self.lineage is not None and self.controller is not None:
            self.lineage.merge(self.controller.current, other)

    def split_current(self) -> None:
        c = self.controller
        if self.lineage is not None and c is not None:
            self.lineage.split(c.current, c.layers.current_frame())

    def end_current(self) -> None:
        c = self.controller
        if self.lineage is not None and c is not None:
            self.lineage.end(c.current, c.layers.current_frame())

    def export_lineage(self, kind: str, path: str | Path | None = None) -> None:
        """Export the labels with their lineage: ``kind`` "ctc" (a folder) or "geff"; ``path``: asked if None."""
        c = self.controller
        if self.lineage is None or c is None:
            return
        if path is None:
            stem = c.store.path.name.split(".")[0]
            if kind == "ctc":
                path = QFileDialog.getExistingDirectory(self, "Folder for the CTC result (RES)",
                                                        str(c.store.path.parent))
            else:
                path, _ = QFileDialog.getSaveFileName(self, "GEFF graph", str(c.store.path.parent / f"{stem}.geff"),
                                                      "GEFF (*.geff *.zarr)")
            if not path:
                return
        self.lineage.export(kind, Path(path))

    def delete_object(self, obj_id: int) -> None:
        """Delete ``obj_id`` on every frame, once the user confirms."""
        if self.controller is not None and self.confirm_delete(obj_id):
            self.controller.delete_object(obj_id)
            show_info(f"SAM 2: object {obj_id} deleted")

    def confirm_delete(self, obj_id: int) -> bool:
        """Ask before erasing an object everywhere (it cannot be undone); No is the default answer."""
        c = self.controller
        if c is None:
            return False
        info = c.store.objects.get(obj_id)
        name = f"“{info.name}” ({obj_id})" if info is not None else f"object {obj_id}"
        unit = "slice" if c.choice.frame_axis == "z" else "frame"
        frames = c.prompted_frames(obj_id)
        prompts = f" and its prompts (on {unit}s {', '.join(map(str, frames))})" if frames else ""
        answer = QMessageBox.question(
            self, "Delete object",
            f"Delete {name}? Its labels on every {unit}{prompts} are erased. This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _object_selected(self, obj_id: int) -> None:
        if self.controller is not None and obj_id != self.controller.current:
            self.controller.set_current(obj_id)

    def _current_changed(self, obj_id: int) -> None:
        colour = self.controller.colours().get(obj_id, "#ffffff") if self.controller else "#ffffff"
        self.current_label.setText(f"current: <b style='color:{colour}'>● {obj_id}</b>")
        item = self.objects.item_for(obj_id)
        if item is not None and self.objects.current_id() != obj_id:
            self.objects.list.setCurrentItem(item)

    def _propagation_progress(self, done: int, total: int, text: str) -> None:
        """The run's counter and time left, in the widget itself (also in napari's activity dock)."""
        self.propagation_bar.setVisible(bool(text))
        self.propagation_label.setVisible(bool(text))
        self.propagation_bar.setRange(0, max(total, 1))
        self.propagation_bar.setValue(min(done, max(total, 1)))
        self.propagation_bar.setFormat(f"{done} / {total}")
        self.propagation_label.setText(text)

    def _propagating(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        if not running:
            self.propagation_bar.hide()
            self.propagation_label.hide()
        self.propagate_button.setEnabled(not running)
        self.here_button.setEnabled(not running)
        self.find_box.set_running(running)
        if not running and self.controller is not None and self.controller.num_frames < 2:
            self.find_box.track_button.setEnabled(False)

    def _refresh_objects(self) -> None:
        c = self.controller
        if c is None:
            return
        rows = [ObjectRow(i, info.name, info.colour, tuple(c.prompted_frames(i)), i not in c.hidden, info.status)
                for i, info in sorted(c.store.objects.items())]
        self.objects.set_rows(rows, c.current)
        self._current_changed(c.current)

    # ------------------------------------------------------------------ keys
    def _bind_keys(self) -> None:
        for key, _, method in SHORTCUTS:
            action = getattr(self, method)
            self._unbound[key] = self.viewer.bind_key(key, lambda viewer, a=action: a(), overwrite=True)

    def _unbind_keys(self) -> None:
        for key, previous in self._unbound.items():
            self.viewer.bind_key(key, previous, overwrite=True)
        self._unbound.clear()
