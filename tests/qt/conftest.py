"""Fixtures for the napari plugin tests: a tiny random-weight SAM 2 and a viewer with a small stack."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.controller import TrackingController

TEST_MODEL = "tiny random weights (test)"
FRAMES, SIZE = 6, 128
_MODEL = {}


def test_model_factory():
    """SAM 2.1 tiny at image_size 256 with random weights (seed 0), its object-score head biased so that every
    object is predicted present: the masks mean nothing, but they are non-empty and deterministic."""
    if "model" not in _MODEL:
        import torch

        from napari_sam2.model import build_sam2

        torch.manual_seed(0)
        model = build_sam2("sam2.1_hiera_tiny", image_size=256)
        head = model.sam_mask_decoder.pred_obj_score_head
        last = head.layers[-1] if hasattr(head, "layers") else head
        with torch.no_grad():
            last.bias += 5.0
        _MODEL["model"] = model
    return _MODEL["model"]


def answer_next_dialog(button) -> None:
    """Press ``button`` (a ``QMessageBox.StandardButton``) in the next modal dialog, as a user would."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    def press() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(20, press)
            return
        dialog.button(button).click()

    QTimer.singleShot(0, press)


def cell_stack(frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """A bright square moving right by 2 pixels a frame on noise, uint16 (T, Y, X)."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 800, (frames, size, size)).astype(np.uint16)
    for t in range(frames):
        stack[t, 40:80, 40 + 2 * t : 80 + 2 * t] += 3000
    return stack


def start_from_checkpoint_file(viewer, widget, qtbot, tmp_path, *, frames: int, wait: int):
    """Start a session the way a user with a local checkpoint does: the tiny test model saved as a file, chosen as
    "local checkpoint file…" at 256 px on the CPU, over a small cell stack. Returns (controller, checkpoint path)."""
    from napari_sam2._qt.model_loading import LOCAL_FILE
    from napari_sam2.train.loop import write_checkpoint

    checkpoint = tmp_path / "tiny-test.pt"
    write_checkpoint(test_model_factory(), checkpoint)
    viewer.add_image(cell_stack(frames=frames), name="cells", axis_labels=("t", "y", "x"))
    s = widget.settings
    s.image_combo.setCurrentText("cells")
    s.model_combo.setCurrentText(LOCAL_FILE)
    s.checkpoint_edit.setText(str(checkpoint))
    s.size_combo.setCurrentText("256 px")
    s.device_combo.setCurrentText("cpu")
    s.store_edit.setText(str(tmp_path / "cells.sam2.zarr"))
    c = widget.start()
    assert c is not None, widget.status_label.text()
    qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=wait)
    return c, checkpoint


def choose_settings(widget, image: str, model: str, store, *, tiling: str | None = None) -> None:
    """Fill the session settings as a user would: the image layer, the model on the CPU, the label store (and the
    tiling, when given)."""
    settings = widget.settings
    settings.image_combo.setCurrentText(image)
    settings.model_combo.setCurrentText(model)
    settings.device_combo.setCurrentText("cpu")
    if tiling is not None:
        settings.tiling_combo.setCurrentText(tiling)
    settings.store_edit.setText(str(store))


@pytest.fixture
def viewer_widget(make_napari_viewer):
    """(viewer, widget) with the plugin's own model choices (checkpoint files, no test factories)."""
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    widget = SAM2Widget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM 2")
    yield viewer, widget
    widget.stop()


@pytest.fixture
def sam2_viewer(make_napari_viewer, tmp_path):
    """(viewer, widget, start) — ``start()`` starts a session on the stack and waits until the model is ready."""
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    widget = SAM2Widget(viewer, model_factories={TEST_MODEL: test_model_factory})
    viewer.window.add_dock_widget(widget, name="SAM 2")
    created: list[TrackingController] = []

    def start(qtbot, data=None, store=None, name="cells") -> TrackingController:
        if data is not None or name not in viewer.layers:
            viewer.add_image(cell_stack() if data is None else data, name=name, axis_labels=("t", "y", "x"))
        choose_settings(widget, name, TEST_MODEL, store or tmp_path / "labels.sam2.zarr")
        controller = widget.start()
        assert controller is not None, widget.status_label.text()
        created.append(controller)
        qtbot.waitUntil(lambda: controller.session is not None and not controller.busy, timeout=120000)
        return controller

    yield viewer, widget, start
    widget.stop()
