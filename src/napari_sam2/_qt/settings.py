"""The session settings form: image layer, propagation axis, channel, model, device and label store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from napari.layers import Image
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit, QPushButton

from napari_sam2._qt.layer_stack import (
    SINGLE_IMAGE_AXIS,
    StackChoice,
    channel_choices,
    default_frame_axis,
    default_store_path,
    frame_axis_choices,
    layer_axes,
    position_at,
)
from napari_sam2._qt.model_loading import (
    DEVICES,
    IMAGE_SIZES,
    LOCAL_FILE,
    ModelChoice,
    ModelFactory,
    offered_models,
)
from napari_sam2._qt.path_note import NoteWithPath

TILING_MODES = ("auto", "on", "off")  # engine.tiles.choose_tiling's modes (not imported: it would import torch)


def _with_browse(edit: QLineEdit, browse: Callable[[], None]) -> QHBoxLayout:
    row = QHBoxLayout()
    button = QPushButton("…")
    button.setMaximumWidth(30)
    button.clicked.connect(browse)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row


class SessionSettings(QGroupBox):
    """What a session works on; :meth:`stack_choice`, :meth:`model_choice` and :meth:`store_path` read it."""

    start_stop = Signal()
    message = Signal(str)

    def __init__(self, viewer: Any, factories: Mapping[str, ModelFactory]) -> None:
        super().__init__("Session")
        self.viewer = viewer
        self.factories = dict(factories)
        self.image_combo = QComboBox()
        self.axis_combo = QComboBox()
        self.channel_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_combo.addItems([*offered_models(), LOCAL_FILE, *self.factories])
        self.model_combo.setToolTip("Published models are downloaded on first use (into ~/.cache/napari-sam2); "
                                    "shipped models work offline")
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("path to a SAM 2 .pt checkpoint")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.size_combo = QComboBox()
        self.size_combo.addItem("auto", None)
        for size in IMAGE_SIZES:
            self.size_combo.addItem(f"{size} px", size)
        self.size_combo.setToolTip(
            "The size SAM 2 sees each frame at. auto: 1024 on a CUDA GPU, 512 on a CPU or Apple GPU (a CPU takes "
            "several times longer per frame at 1024), never more than the smallest size that holds the frame's "
            "larger side, nor than the model's own size. Smaller is faster; larger finds smaller objects."
        )
        self.tiling_combo = QComboBox()
        self.tiling_combo.addItems(TILING_MODES)
        self.tiling_combo.setToolTip(
            "Frames larger than the image size: on tracks every object at native resolution in overlapping tiles "
            "of the image size (small cells stay visible to SAM 2); off resizes each frame; auto: tiles when the "
            "frame is at least 4 × the image size"
        )
        self.store_edit = QLineEdit()
        self.store_edit.setToolTip("A zarr label store: labels, objects and prompts; reopened when it exists")
        self.store_note = NoteWithPath()
        self.start_button = QPushButton("Start")
        form = QFormLayout(self)
        form.addRow("Image", self.image_combo)
        form.addRow("Propagate along", self.axis_combo)
        form.addRow("Channel", self.channel_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Checkpoint", _with_browse(self.checkpoint_edit, self._browse_checkpoint))
        form.addRow("Device", self.device_combo)
        form.addRow("Image size", self.size_combo)
        form.addRow("Tiles", self.tiling_combo)
        form.addRow("Labels saved to", _with_browse(self.store_edit, self._browse_store))
        form.addRow(self.store_note)
        form.addRow(self.start_button)
        self.set_running(False)
        self._default_store: str | None = None
        self.store_edit.textChanged.connect(self._store_changed)
        self.image_combo.currentIndexChanged.connect(self._image_changed)
        self.model_combo.currentTextChanged.connect(lambda text: self.checkpoint_edit.setEnabled(text == LOCAL_FILE))
        self.start_button.clicked.connect(self.start_stop)
        self.fill_layers()

    # ------------------------------------------------------------------ state
    def set_running(self, running: bool) -> None:
        """Settings are fixed while a session runs."""
        for w in (self.image_combo, self.axis_combo, self.model_combo, self.device_combo, self.size_combo,
                  self.tiling_combo, self.store_edit):
            w.setEnabled(not running)
        self.channel_combo.setEnabled(not running and self.channel_combo.count() > 0)
        self.checkpoint_edit.setEnabled(not running and self.model_combo.currentText() == LOCAL_FILE)
        self.start_button.setText("Stop" if running else "Start")

    def image_layer(self) -> Image | None:
        name = self.image_combo.currentText()
        return next((la for la in self.viewer.layers if isinstance(la, Image) and la.name == name), None)

    def fill_layers(self) -> None:
        """List the viewer's image layers (keeping the choice when it is still there)."""
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        if self.image_combo.currentText() != current or not current:
            self._image_changed()  # the choice changed: fill the axes, channels and store path again

    def _image_changed(self, *_: Any) -> None:
        if not self.image_combo.isEnabled():
            return
        layer = self.image_layer()
        self.axis_combo.clear()
        self.channel_combo.clear()
        if layer is None:
            self.store_edit.clear()
            return
        try:
            axes = layer_axes(layer)
        except ValueError as err:
            self.message.emit(str(err))
            return
        self.axis_combo.addItems(frame_axis_choices(axes))
        default = default_frame_axis(axes)
        if default:
            self.axis_combo.setCurrentText(default)
        for label, spec in channel_choices(layer, axes):
            self.channel_combo.addItem(label, spec)
        self.channel_combo.setEnabled(self.channel_combo.count() > 0)
        path, beside = default_store_path(layer)
        self._default_store = None if beside else str(path)
        self.store_edit.setText(str(path))

    def _store_changed(self, text: str) -> None:
        """Say where the labels of a layer without a file go, while that default is chosen."""
        default = self._default_store
        if text == default:
            self.store_note.set_note("This layer has no file (or its folder is read-only): labels go to",
                                     str(Path(default).parent))
        self.store_note.setVisible(text == default)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM 2 checkpoint", "", "PyTorch checkpoints (*.pt *.pth)")
        if path:
            self.checkpoint_edit.setText(path)

    def _browse_store(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the label store (a .zarr folder)")
        if path:
            self.store_edit.setText(path)

    # ------------------------------------------------------------------ reading the form
    def model_choice(self) -> ModelChoice:
        text = self.model_combo.currentText()
        size = self.size_combo.currentData()
        tiling = self.tiling_combo.currentText()
        if text in self.factories:
            return ModelChoice(text, factory=self.factories[text], image_size=size, tiling=tiling)
        if text == LOCAL_FILE:
            path = self.checkpoint_edit.text().strip()
            if not path:
                raise ValueError("choose a checkpoint file, or one of the published models")
            return ModelChoice(Path(path).stem, checkpoint=Path(path).expanduser(), image_size=size, tiling=tiling)
        return ModelChoice(text, image_size=size, tiling=tiling)

    def stack_choice(self, layer: Image) -> StackChoice:
        """The stack of ``layer`` as chosen, at the viewer's current position on the other axes."""
        axes = layer_axes(layer)
        if "c" in axes and not layer.rgb:
            raise ValueError(f"“{layer.name}” has a channel axis among its dimensions: split it into one layer per "
                             "channel first (right-click the layer > Split Stack), then choose a channel layer")
        label_axes = [a for a in axes if a != "c"]
        if label_axes[-2:] != ["y", "x"]:
            raise ValueError(f"“{layer.name}” has axes {axes}: y and x must be its last two dimensions")
        channel = self.channel_combo.currentData() if self.channel_combo.count() else None
        frame_axis = self.axis_combo.currentText()
        if not frame_axis:  # one 2D image: SAM 2 with an empty memory is SAM — a stack of one frame
            return StackChoice((SINGLE_IMAGE_AXIS, *axes), SINGLE_IMAGE_AXIS, channel, {}, single_image=True)
        point = layer.world_to_data(list(self.viewer.dims.point)[-layer.ndim :])
        return StackChoice(tuple(axes), frame_axis, channel, position_at(axes, frame_axis, point))

    def store_path(self) -> Path:
        text = self.store_edit.text().strip()
        if not text:
            raise ValueError("say where the labels are saved (a folder ending in .zarr)")
        return Path(text).expanduser()

    def device(self) -> str:
        return self.device_combo.currentText()
