"""The SAM 2 widget driven as a user drives it: clicks and boxes go into the layers' data (as napari's mouse
handlers put them there), the tests wait for the labels, propagate, correct, cancel, delete and reopen.

The model is SAM 2.1 tiny at image_size 256 with random weights (see conftest): masks are arbitrary but
deterministic, so the tests check where labels go and what is stored, not segmentation quality.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QMessageBox

from tests.qt.conftest import FRAMES, TEST_MODEL, answer_next_dialog, cell_stack

WAIT = 30000


def idle(controller, qtbot):
    qtbot.waitUntil(lambda: not controller.busy, timeout=WAIT)


@dataclass
class MouseEvent:
    """What napari's canvas hands to a layer's mouse callbacks (as in napari's own mouse-binding tests)."""

    type: str
    position: tuple[float, ...]
    modifiers: list[str] = field(default_factory=list)
    is_dragging: bool = False
    pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
    view_direction: list[float] | None = None
    up_direction: list[float] | None = None
    dims_displayed: list[int] = field(default_factory=lambda: [1, 2])


def mouse_click(layer, position, modifiers=()):
    """A mouse press and release on ``layer`` at world ``position``, through napari's mouse callbacks."""
    for kind, run in (("mouse_press", mouse_press_callbacks), ("mouse_release", mouse_release_callbacks)):
        event = MouseEvent(kind, tuple(position), list(modifiers))
        run(layer, ReadOnlyWrapper(event, exceptions=("handled",)))


def click(controller, qtbot, frame, y, x):
    """A click on the clicks layer at (y, x) on ``frame``, as napari's add mode makes it."""
    controller.layers.points.add([frame, y, x])
    idle(controller, qtbot)


def test_click_segments_at_once_and_propagation_fills_the_stack(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    assert c.layers.points.mode == "add" and viewer.layers.selection.active is c.layers.points
    viewer.dims.set_point(0, 1)
    idle(c, qtbot)  # the frame on screen is encoded in the background
    assert 1 in c.session.features

    began = time.perf_counter()
    c.layers.points.add([1, 60, 60])
    qtbot.waitUntil(lambda: (c.store.read_frame(1) == 1).any(), timeout=WAIT)
    latency = time.perf_counter() - began
    idle(c, qtbot)
    print(f"\nclick to labels on CPU, image_size 256: {1000 * latency:.0f} ms (controller: {c.last_latency_ms:.0f} ms)")
    expected = c.session.result(1).masks[0]
    labels = c.store.read_frame(1)
    assert expected.any() and np.array_equal(labels == 1, expected)  # the labels are the engine's mask
    assert np.array_equal(np.asarray(c.layers.labels.data[1]), labels)  # and the Labels layer shows the store
    assert c.view.provenance(1) == {1: "prompt"}
    [prompt] = c.view.prompts()
    assert (prompt.obj_id, prompt.frame, prompt.points.tolist(), prompt.labels.tolist()) == (1, 1, [[60, 60]], [1])
    assert not c.store.read_frame(0).any() and not c.store.read_frame(5).any()

    widget.direction_combo.setCurrentText("forward")
    widget.propagate_button.click()
    idle(c, qtbot)
    assert not c.store.read_frame(0).any()  # forward from the prompted frame only
    for frame in range(1, FRAMES):
        assert (c.store.read_frame(frame) == 1).any(), frame
    assert c.view.provenance(3) == {1: "propagation"}
    assert [widget.objects.list.item(i).text() for i in range(widget.objects.list.count())] == ["object 1"]


def test_negative_clicks_boxes_and_a_second_object(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    viewer.dims.set_point(0, 0)
    mouse_click(c.layers.points, (0, 60, 60))  # a plain click: positive
    mouse_click(c.layers.points, (0, 10, 10), modifiers=["Shift"])  # Shift-click: negative
    idle(c, qtbot)
    qtbot.waitUntil(lambda: int(c.layers.points.feature_defaults["label"][0]) == 1)  # then plain clicks are + again
    widget.negative_check.setChecked(True)  # the Q key toggles this box: plain clicks are now negative
    click(c, qtbot, 0, 12, 100)
    assert c.layers.points.features["label"].tolist() == [1, 0, 0]
    assert c.layers.points.data[:, 1:].tolist() == [[60, 60], [10, 10], [12, 100]]
    [prompt] = c.view.prompts(1)
    assert prompt.labels.tolist() == [1, 0, 0]
    widget.negative_check.setChecked(False)

    widget.new_button.click()
    assert c.current == 2 and c.layers.labels.selected_label == 2
    corners = np.array([[0, 20, 90], [0, 20, 120], [0, 50, 120], [0, 50, 90]], float)
    c.layers.shapes.add_rectangles(corners)
    idle(c, qtbot)
    [box] = c.view.prompts(2)
    assert box.box == (20.0, 90.0, 50.0, 120.0) and box.frame == 0
    assert set(np.unique(c.store.read_frame(0))) <= {0, 1, 2} and (c.store.read_frame(0) == 2).any()
    colours = c.layers.labels.colormap.color_dict
    assert not np.allclose(colours[1], colours[2])  # each object its own colour


def test_correction_then_propagate_from_here(sam2_viewer, qtbot):
    """A click after propagation refines that frame; "from here" re-propagates only from it on."""
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    click(c, qtbot, 0, 60, 60)
    c.propagate("forward")
    idle(c, qtbot)
    before = [c.store.read_frame(f).copy() for f in range(FRAMES)]
    encoded = c.session.features.encoded_frames

    viewer.dims.set_point(0, 3)
    click(c, qtbot, 3, 100, 20)  # a correction on frame 3
    assert c.view.provenance(3) == {1: "prompt"} and c.prompted_frames(1) == [0, 3]
    widget.propagate_from_here()
    idle(c, qtbot)
    for frame in range(3):  # frames before the correction are untouched
        assert np.array_equal(c.store.read_frame(frame), before[frame])
    assert c.view.provenance(4) == {1: "propagation"}
    assert c.session.features.encoded_frames == encoded  # image features were reused, not recomputed


def test_cancel_mid_propagation_leaves_later_frames_unwritten(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot, data=cell_stack(frames=40, size=64), name="long")
    click(c, qtbot, 0, 30, 30)
    widget.propagate_button.click()
    assert widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: bool(c.view.provenance(1)), timeout=WAIT)  # the first propagated frame is on disk
    widget.cancel_button.click()
    idle(c, qtbot)
    written = [f for f in range(40) if c.view.provenance(f)]
    assert written == list(range(len(written))) and len(written) < 12, written
    assert not any(c.store.read_frame(f).any() for f in range(len(written), 40))
    assert not widget.cancel_button.isEnabled() and widget.propagate_button.isEnabled()


def test_delete_object_removes_its_labels_prompts_and_clicks(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    click(c, qtbot, 0, 60, 60)
    widget.new_object()
    click(c, qtbot, 0, 100, 100)
    c.propagate("forward")
    idle(c, qtbot)
    assert any((c.store.read_frame(f) == 2).any() for f in range(FRAMES))

    widget.objects.list.setCurrentItem(widget.objects.item_for(2))
    answer_next_dialog(QMessageBox.StandardButton.Yes)  # "Delete object 2 on every frame?"
    widget.objects.delete_button.click()
    idle(c, qtbot)
    assert all(not (c.store.read_frame(f) == 2).any() for f in range(FRAMES))
    assert 2 not in c.store.objects and c.view.prompts(2) == [] and 2 not in c.session.obj_ids
    assert 2 not in c.layers.points.features["obj_id"].tolist()
    assert c.view.prompts(1) and 1 in c.store.objects
    assert widget.objects.item_for(2) is None


def test_hand_painting_is_kept_and_becomes_a_mask_prompt(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    click(c, qtbot, 0, 60, 60)
    widget.new_object()  # object 2, painted by hand on frame 2
    viewer.dims.set_point(0, 2)
    labels = c.layers.labels
    labels.brush_size = 10
    labels.paint((2, 100, 100), 2)
    qtbot.waitUntil(lambda: c.view.provenance(2).get(2) == "manual", timeout=WAIT)
    painted = c.store.read_frame(2) == 2
    assert painted.any()
    c.propagate("forward")
    idle(c, qtbot)
    assert np.array_equal(c.store.read_frame(2) == 2, painted)  # propagation kept the painting

    widget.mask_button.click()  # "use painted mask as prompt"
    idle(c, qtbot)
    [prompt] = c.view.prompts(2)
    assert prompt.frame == 2 and np.array_equal(prompt.mask, painted)
    assert c.view.provenance(2)[2] == "prompt" and 2 in c.session.obj_ids
    assert c.prompted_frames(2) == [2]


def test_objects_list_rename_hide_and_jump(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    click(c, qtbot, 3, 60, 60)
    item = widget.objects.item_for(1)
    item.setText("nucleus A")
    assert c.store.objects[1].name == "nucleus A"
    widget.objects.item_for(1).setCheckState(Qt.CheckState.Unchecked)  # hidden
    assert 1 in c.hidden and np.allclose(c.layers.labels.colormap.color_dict[1], 0)
    viewer.dims.set_point(0, 0)
    widget.objects.frames.activated.emit(0)  # choose "frame 3" in the prompts menu
    assert c.layers.current_frame() == 3


def test_shortcuts_are_bound_on_the_viewer(sam2_viewer, qtbot):
    from napari.utils.key_bindings import coerce_keybinding

    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    for key in ("N", "Q", "G", "Shift-G", "Shift-C", "U"):
        assert coerce_keybinding(key) in viewer.keymap, key
    viewer.keymap[coerce_keybinding("N")](viewer)
    assert c.current == 2
    viewer.keymap[coerce_keybinding("Q")](viewer)
    assert not c.positive and widget.negative_check.isChecked()
    assert "Shift-G" in widget.help_box.findChildren(type(widget.status_label))[0].text()
    widget.stop()
    assert coerce_keybinding("N") not in viewer.keymap


def test_session_reopens_with_objects_prompts_and_labels(sam2_viewer, qtbot, tmp_path):
    viewer, widget, start = sam2_viewer
    store = tmp_path / "kept.sam2.zarr"
    c = start(qtbot, store=store)
    click(c, qtbot, 1, 60, 60)
    widget.new_object()
    c.layers.shapes.add_rectangles(np.array([[4, 20, 90], [4, 20, 120], [4, 50, 120], [4, 50, 90]], float))
    idle(c, qtbot)
    c.objects_changed.emit()
    widget.objects.item_for(2).setText("the box one")
    c.propagate("both")
    idle(c, qtbot)
    labels = np.asarray(c.store.labels[:]).copy()
    prompts = c.view.prompts()
    widget.stop()
    assert not [la for la in viewer.layers if "SAM 2" in la.name]

    c = start(qtbot, store=store)  # the same image and label store: everything comes back
    assert np.array_equal(np.asarray(c.store.labels[:]), labels)
    assert c.view.prompts() == prompts
    assert {i: o.name for i, o in c.store.objects.items()} == {1: "object 1", 2: "the box one"}
    assert c.layers.points.data[:, 0].tolist() == [1] and c.layers.shapes.nshapes == 1
    assert sorted(c.session.obj_ids) == [1, 2]  # prompts replayed into the engine
    assert c.current == 2
    widget.objects.list.setCurrentItem(widget.objects.item_for(1))  # back to object 1
    assert c.current == 1
    click(c, qtbot, 1, 20, 20)  # work continues: a correction and a new propagation
    c.propagate("forward")
    idle(c, qtbot)
    assert c.view.provenance(5)[1] == "propagation"
    assert len(c.view.prompts(1)) == 1 and len(c.view.prompts(1)[0].points) == 2


def test_missing_model_and_bad_checkpoint_are_explained(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_sam2._qt.model_loading import LOCAL_FILE
    from napari_sam2._qt.widget import SAM2Widget

    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    viewer = make_napari_viewer()
    viewer.add_image(cell_stack(), name="cells")
    widget = SAM2Widget(viewer)
    widget.settings.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.settings.store_edit.setText(str(tmp_path / "a.sam2.zarr"))
    c = widget.start()
    qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)
    text = widget.status_label.text()
    assert "CheckpointUnavailable" in text and "sam2.1_hiera_tiny.pt" in text and "huggingface.co" in text
    assert c.session is None
    widget.stop()

    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.settings.model_combo.setCurrentText(LOCAL_FILE)
    widget.settings.checkpoint_edit.setText(str(bad))
    c = widget.start()
    qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)
    assert "CheckpointError" in widget.status_label.text() and "not_a_model.pt" in widget.status_label.text()
    widget.stop()


def test_volume_propagates_along_z_at_the_chosen_time_point(sam2_viewer, qtbot):
    """A T,Z,Y,X stack tracked along z at t=1: prompts and labels go to that time point only."""
    viewer, widget, start = sam2_viewer
    volume = np.stack([cell_stack(frames=5, size=64), cell_stack(frames=5, size=64)[::-1]])
    viewer.add_image(volume, name="tzyx", axis_labels=("t", "z", "y", "x"))
    viewer.dims.set_point(0, 1)
    widget.settings.image_combo.setCurrentText("tzyx")
    assert widget.settings.axis_combo.currentText() == "t"  # t by default; the user picks z
    widget.settings.axis_combo.setCurrentText("z")
    c = start(qtbot, name="tzyx")
    assert c.choice.frame_axis == "z" and c.choice.position == {"t": 1} and c.num_frames == 5
    c.layers.points.add([1, 2, 30, 30])
    c.layers.points.add([0, 2, 30, 30])  # another time point: not this session's plane, ignored
    idle(c, qtbot)
    assert [(p.coords, p.frame) for p in c.view.prompts()] == [({"t": 1, "z": 2}, 2)]
    assert (c.store.read_plane((1, 2)) == 1).any() and not c.store.read_plane((0, 2)).any()
    widget.direction_combo.setCurrentText("both")
    widget.propagate_button.click()
    idle(c, qtbot)
    assert all(c.store.plane_provenance((1, z)) for z in range(5))
    assert not any(c.store.read_plane((0, z)).any() for z in range(5))


def test_manifest_opens_the_widget_and_the_samples(make_napari_viewer):
    """Plugins > SAM 2 and File > Open Sample go through npe2 to our widget and sample data."""
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-sam2", "c2c12")
    assert layers[0].data.shape == (10, 234, 234) and layers[0].axis_labels == ("t", "y", "x")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "SAM 2")
    assert isinstance(widget, SAM2Widget)
    assert widget.settings.image_combo.currentText() == layers[0].name
    assert widget.settings.axis_combo.currentText() == "t"


def test_a_file_opened_with_our_reader_gets_its_labels_beside_it(sam2_viewer, qtbot, tmp_path):
    import tifffile

    viewer, widget, start = sam2_viewer
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, cell_stack(), imagej=True, metadata={"axes": "TYX"})
    [layer] = viewer.open(path, plugin="napari-sam2")
    widget.settings.image_combo.setCurrentText(layer.name)
    assert widget.settings.axis_combo.currentText() == "t"
    assert widget.settings.store_edit.text() == str(tmp_path / "movie.sam2.zarr")
    assert not widget.settings.store_note.isVisibleTo(widget)
    widget.settings.model_combo.setCurrentText(TEST_MODEL)
    widget.settings.device_combo.setCurrentText("cpu")
    c = widget.start()
    qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=WAIT)
    click(c, qtbot, 2, 60, 60)
    assert (tmp_path / "movie.sam2.zarr").is_dir() and (c.store.read_frame(2) == 1).any()


def test_closing_the_dock_widget_ends_the_session_and_keeps_the_labels(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    click(c, qtbot, 0, 60, 60)
    viewer.window.remove_dock_widget(widget)
    from napari.utils.key_bindings import coerce_keybinding

    assert widget.controller is None and c.session is None
    assert c.layers.labels in viewer.layers  # the labels stay on screen
    assert coerce_keybinding("N") not in viewer.keymap
