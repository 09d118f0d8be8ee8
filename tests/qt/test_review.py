"""Review mode through the real canvas: keys typed into it (J, Shift-J, K, W) step through the objects, accept and
reject them in the label store, and jump to the frame where each one is; the objects list filters the rejected ones;
a rejected object that is painted or clicked becomes corrected. The lineage overrides through the widget's buttons
and the Tracks layer they refresh."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from napari_sam2.io.label_store import LabelStore
from tests.qt.conftest import FRAMES, SIZE, cell_stack
from tests.qt.hand import Hand, find_canvas, type_key

WAIT = 180000  # the CPU may be shared
SHIFT = Qt.KeyboardModifier.ShiftModifier

# object id → (frames, top-left corner (y, x) of its 12 × 12 square on each of them)
OBJECTS = {1: (range(0, 6), (20, 20)), 2: (range(3, 6), (90, 30)), 3: (range(0, 2), (30, 90))}


def squares_store(path, objects=OBJECTS, status="automatic") -> dict[int, tuple[float, float]]:
    """A label store as an automatic run leaves it: objects as 12 × 12 squares on their frames, each with
    ``status``. Returns each object's centroid (y, x)."""
    store = LabelStore.create(path, (FRAMES, SIZE, SIZE), dimension_names=("t", "y", "x"))
    for t in range(FRAMES):
        store.write_manual(t, squares_frame(t, objects))
    for obj_id in objects:
        store.set_object_status(obj_id, status)
    return {o: (y + 5.5, x + 5.5) for o, (_, (y, x)) in objects.items()}


def idle(controller, qtbot):
    qtbot.waitUntil(lambda: not controller.busy, timeout=WAIT)


def statuses(c):
    return {i: info.status for i, info in c.store.objects.items()}


def camera_centre(viewer):
    scene = getattr(viewer, "scene", None)
    camera = scene.camera if scene is not None else viewer.camera
    return np.asarray(camera.center)[-2:]


def test_review_keys_accept_reject_jump_and_the_rejected_are_listed_to_correct(sam2_viewer, qtbot, tmp_path):
    viewer, widget, start = sam2_viewer
    path = tmp_path / "labels.sam2.zarr"
    centres = squares_store(path)
    c = start(qtbot, store=path)
    hand = Hand(viewer, find_canvas(widget))
    viewer.dims.set_point(0, 0)
    rows = [widget.objects.list.item(i).text() for i in range(widget.objects.list.count())]
    assert all(text.endswith("○ automatic") for text in rows) and len(rows) == 3

    type_key(hand, Qt.Key.Key_J)  # object 1, on the frame on screen: the view stays there, centred on it
    assert widget.review_box.current == 1 and c.current == 1 and c.layers.current_frame() == 0
    assert np.allclose(camera_centre(viewer), centres[1], atol=0.6)
    assert widget.review_box.strip.frames() == [0, 1, 2, 3, 4, 5]
    type_key(hand, Qt.Key.Key_J)  # object 2 starts at frame 3: the view jumps there
    assert widget.review_box.current == 2 and c.layers.current_frame() == 3
    assert np.allclose(camera_centre(viewer), centres[2], atol=0.6)
    assert widget.review_box.strip.frames() == [3, 4, 5]

    type_key(hand, Qt.Key.Key_K)  # keep object 2; on to object 3, whose nearest frame is 1
    assert statuses(c) == {1: "automatic", 2: "verified", 3: "automatic"}
    assert widget.review_box.current == 3 and c.layers.current_frame() == 1
    type_key(hand, Qt.Key.Key_W)  # object 3 is wrong; on to object 1 (wrapping around)
    assert statuses(c)[3] == "rejected" and widget.review_box.current == 1
    type_key(hand, Qt.Key.Key_J, SHIFT)  # back to object 3
    assert widget.review_box.current == 3
    assert LabelStore.open(path, read_only=True).objects[2].status == "verified"  # durable

    widget.objects.filter_combo.setCurrentText("to correct (rejected)")
    assert widget.objects.shown_ids() == [3]
    assert widget.objects.item_for(3).text().endswith("✗ rejected")
    viewer.dims.set_point(0, 4)
    type_key(hand, Qt.Key.Key_J)  # only the rejected object is stepped through: back to where it is
    assert widget.review_box.current == 3 and c.layers.current_frame() == 1

    labels = c.layers.labels  # paint object 3 (current since review chose it) bigger on frame 1
    viewer.layers.selection.active = labels
    type_key(hand, Qt.Key.Key_P)
    labels.brush_size = 6
    hand.drag([(36, 104), (36, 110), (36, 116)])
    qtbot.waitUntil(lambda: statuses(c)[3] == "corrected", timeout=5000)
    assert (c.store.read_frame(1)[36, 116] == 3) and c.view.provenance(1)[3] == "manual"
    assert widget.objects.shown_ids() == []  # nothing left to correct
    widget.objects.filter_combo.setCurrentText("all objects")
    assert widget.objects.item_for(3).text().endswith("✎ corrected")
    assert statuses(c) == {1: "automatic", 2: "verified", 3: "corrected"}


def test_a_click_on_a_rejected_object_marks_it_corrected(sam2_viewer, qtbot, tmp_path):
    viewer, widget, start = sam2_viewer
    path = tmp_path / "labels.sam2.zarr"
    squares_store(path, status="rejected")
    c = start(qtbot, data=cell_stack(), store=path)
    hand = Hand(viewer, find_canvas(widget))
    viewer.dims.set_point(0, 0)
    type_key(hand, Qt.Key.Key_J)
    assert widget.review_box.current == 1
    viewer.layers.selection.active = c.layers.points
    c.layers.points.mode = "add"
    hand.click((26, 26))
    idle(c, qtbot)
    assert statuses(c) == {1: "corrected", 2: "rejected", 3: "rejected"}
    assert c.view.provenance(0)[1] == "prompt"


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def frames_of(c, obj_id):
    return [t for t in range(FRAMES) if (c.store.read_frame(t) == obj_id).any()]


def test_split_end_and_merge_tracks_with_the_lineage_buttons(sam2_viewer, qtbot, tmp_path):
    """Each override changes exactly the labels it names, as hand edits ("manual": propagation keeps them)."""
    viewer, widget, start = sam2_viewer
    path = tmp_path / "labels.sam2.zarr"
    squares_store(path)
    c = start(qtbot, store=path)
    box = widget.lineage_box
    widget.objects.list.setCurrentItem(widget.objects.item_for(1))
    viewer.dims.set_point(0, 3)
    click(qtbot, box.split_button)  # object 1 from frame 3 on is another cell: object 4
    idle(c, qtbot)
    assert frames_of(c, 1) == [0, 1, 2] and frames_of(c, 4) == [3, 4, 5]
    assert np.array_equal(c.store.read_frame(4) == 4, squares_frame(4) == 1)
    assert c.view.provenance(4)[1] == "manual" and c.view.provenance(4)[4] == "manual"
    assert c.store.objects[4].status == "automatic" and widget.objects.item_for(4) is not None

    widget.objects.list.setCurrentItem(widget.objects.item_for(2))
    viewer.dims.set_point(0, 5)
    click(qtbot, box.end_button)  # object 2 ends before frame 5
    idle(c, qtbot)
    assert frames_of(c, 2) == [3, 4] and c.view.provenance(5)[2] == "manual"

    widget.objects.list.setCurrentItem(widget.objects.item_for(3))
    box.merge_spin.setValue(2)
    click(qtbot, box.merge_button)  # object 2 continues object 3's track
    idle(c, qtbot)
    assert frames_of(c, 3) == [0, 1, 3, 4] and frames_of(c, 2) == [] and 2 not in c.store.objects
    assert np.array_equal(c.store.read_frame(3) == 3, squares_frame(3) == 2)
    assert widget.objects.item_for(2) is None


def squares_frame(t, objects=OBJECTS):
    """Frame ``t`` of the objects' squares (H, W) uint32."""
    plane = np.zeros((SIZE, SIZE), np.uint32)
    for obj_id, (frames, (y, x)) in objects.items():
        if t in frames:
            plane[y : y + 12, x : x + 12] = obj_id
    return plane
