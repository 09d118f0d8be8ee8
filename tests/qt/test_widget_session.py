"""Starting and running a session from the widget: a model that fails to load leaves nothing half-started, the
image size is chosen (or picked for the device and the frames), single 2D images are segmented, Delete asks first,
and the note on where labels go stays readable in a narrow dock. Clicks go through the real canvas."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication, QMessageBox

from tests.qt.conftest import TEST_MODEL, answer_next_dialog, cell_stack
from tests.qt.hand import Hand, find_canvas

WAIT = 180000  # the CPU may be shared


def idle(controller, qtbot):
    qtbot.waitUntil(lambda: not controller.busy, timeout=WAIT)


def sam2_layers(viewer):
    return [layer.name for layer in viewer.layers if "SAM 2" in layer.name]


def click_on(hand, controller, qtbot, yx):
    hand.viewer.layers.selection.active = controller.layers.points
    controller.layers.points.mode = "add"
    hand.click(yx)
    idle(controller, qtbot)


def test_a_model_that_fails_to_load_leaves_no_half_started_session(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_sam2._qt.model_loading import LOCAL_FILE
    from napari_sam2._qt.widget import SAM2Widget

    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "empty cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without internet
    viewer = make_napari_viewer()
    viewer.add_image(cell_stack(), name="cells")
    widget = SAM2Widget(viewer)
    widget.settings.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.settings.store_edit.setText(str(tmp_path / "a.sam2.zarr"))
    c = widget.start()
    assert sam2_layers(viewer)  # the layers come at once, so that work can start while the model loads
    qtbot.waitUntil(lambda: widget.controller is None, timeout=WAIT)
    idle(c, qtbot)
    assert sam2_layers(viewer) == [] and [layer.name for layer in viewer.layers] == ["cells"]
    assert not widget.propagate_box.isEnabled() and not widget.objects_box.isEnabled()
    assert widget.settings.start_button.text() == "Start" and widget.settings.model_combo.isEnabled()
    text = widget.status_label.text()
    assert text.startswith("Could not load sam2.1_hiera_tiny — CheckpointUnavailable")
    assert "What works offline" in text and LOCAL_FILE in text and "sam2.1_hiera_tiny.pt" in text


def test_image_size_is_chosen_or_picked_for_the_device_and_frames(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2._qt.model_loading import random_weights_factory
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    viewer.add_image(cell_stack(frames=2, size=96), name="small", axis_labels=("t", "y", "x"))
    widget = SAM2Widget(viewer, model_factories={"random": random_weights_factory()})
    settings = widget.settings
    assert [settings.size_combo.itemText(i) for i in range(settings.size_combo.count())] == [
        "auto", "256 px", "512 px", "1024 px"]
    settings.model_combo.setCurrentText("random")
    settings.device_combo.setCurrentText("cpu")
    for choice, expected in (("512 px", 512), ("auto", 256)):  # auto on a CPU, 96-pixel frames: 256
        settings.size_combo.setCurrentText(choice)
        settings.store_edit.setText(str(tmp_path / f"{expected}.sam2.zarr"))
        c = widget.start()
        qtbot.waitUntil(lambda c=c: c.session is not None and not c.busy, timeout=WAIT)
        assert c.session.model.image_size == expected
        assert f"at {expected} px on cpu" in widget.status_label.text()
        assert not settings.size_combo.isEnabled()  # fixed while the session runs
        widget.stop()


@pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb photo"])
def test_a_single_image_is_segmented_with_a_click(sam2_viewer, qtbot, rgb):
    viewer, widget, start = sam2_viewer
    grey = cell_stack(frames=1)[0]
    if rgb:
        viewer.add_image(np.stack([grey >> 4, grey >> 5, np.zeros_like(grey)], -1).astype(np.uint8), rgb=True,
                         name="image")
    else:
        viewer.add_image(grey, name="image")
    c = start(qtbot, name="image")
    hand = Hand(viewer, find_canvas(widget))
    assert c.num_frames == 1 and c.choice.single_image
    assert c.layers.labels.data.shape == (1, *grey.shape)
    assert not widget.propagate_box.isEnabled()
    click_on(hand, c, qtbot, (60, 60))
    [prompt] = c.view.prompts(1)
    assert prompt.frame == 0 and np.allclose(prompt.points, [(60, 60)], atol=1.0)
    assert (c.store.read_frame(0) == 1).any() and c.view.provenance(0) == {1: "prompt"}
    assert np.array_equal(c.store.read_frame(0) == 1, c.session.result(0).masks[0])  # the labels are SAM's mask
    widget.propagate()  # nothing to propagate: nothing changes
    idle(c, qtbot)
    assert c.view.provenance(0) == {1: "prompt"}


def test_delete_asks_before_erasing_an_object_on_every_frame(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    hand = Hand(viewer, find_canvas(widget))
    viewer.dims.set_point(0, 1)
    click_on(hand, c, qtbot, (60, 60))
    widget.objects.list.setCurrentItem(widget.objects.item_for(1))

    answer_next_dialog(QMessageBox.StandardButton.No)
    widget.objects.delete_button.click()
    idle(c, qtbot)
    assert 1 in c.store.objects and (c.store.read_frame(1) == 1).any() and c.view.prompts(1)

    answer_next_dialog(QMessageBox.StandardButton.Yes)
    widget.objects.delete_button.click()
    idle(c, qtbot)
    assert 1 not in c.store.objects and not (c.store.read_frame(1) == 1).any() and not c.view.prompts(1)


def test_the_note_on_where_labels_go_is_not_clipped(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_sam2._qt import layer_stack
    from napari_sam2._qt.widget import SAM2Widget

    folder = tmp_path / "a_rather_long_folder_name_for_labels_of_layers_without_files" / "napari-sam2-labels"
    monkeypatch.setattr(layer_stack, "IN_MEMORY_FOLDER", folder)
    viewer = make_napari_viewer()
    viewer.add_image(cell_stack(), name="in memory")
    widget = SAM2Widget(viewer, model_factories={TEST_MODEL: lambda: None})
    dock = viewer.window.add_dock_widget(widget, name="SAM 2")
    viewer.window.show()
    note = widget.settings.store_note
    assert note.isVisibleTo(widget) and str(folder) in note.text()
    narrow = 320
    assert note.minimumSizeHint().width() <= narrow  # the path does not force the dock wider
    dock.setFixedWidth(narrow)
    QApplication.processEvents()
    assert note.width() <= narrow
    assert note.path.fontMetrics().horizontalAdvance(note.path.text()) <= note.path.width()  # all of it shows
    assert note.path.text() != str(folder) and "…" in note.path.text() and note.path.toolTip() == str(folder)
