"""Boxes drawn and labels painted by hand on the real canvas — mouse press, move and release at canvas pixels, keys
typed into the canvas (R, P, N, G, Ctrl-Z, Shift-Ctrl-Z) — and what the label store makes of them: a box segments
its object, and hand-painted fixes are never lost (provenance from what each stroke, undo and redo changed)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

from tests.qt.hand import Hand, find_canvas, type_key

WAIT = 180000  # the CPU may be shared
CTRL = Qt.KeyboardModifier.ControlModifier


def idle(controller, qtbot):
    qtbot.waitUntil(lambda: not controller.busy, timeout=WAIT)


def activate(hand, layer):
    hand.viewer.layers.selection.active = layer
    QApplication.processEvents()


def stroke(hand, yx0, yx1, steps=4):
    """A brush stroke: press at ``yx0``, drag in a straight line to ``yx1``, release."""
    hand.drag([tuple(np.add(yx0, np.multiply(np.subtract(yx1, yx0), t / steps))) for t in range(steps + 1)])


def session(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    c = start(qtbot)
    return viewer, widget, c, Hand(viewer, find_canvas(widget))


def test_a_box_drawn_with_the_mouse_segments_its_object(sam2_viewer, qtbot):
    viewer, widget, c, hand = session(sam2_viewer, qtbot)
    viewer.dims.set_point(0, 2)
    activate(hand, c.layers.shapes)
    type_key(hand, Qt.Key.Key_R)  # napari's rectangle tool
    assert c.layers.shapes.mode == "add_rectangle"
    hand.drag([(40, 40), (60, 60), (80, 86)])
    idle(c, qtbot)
    [prompt] = c.view.prompts(1)
    assert prompt.frame == 2 and np.allclose(prompt.box, (40, 40, 80, 86), atol=1.0)
    assert (c.store.read_frame(2) == 1).any() and c.view.provenance(2) == {1: "prompt"}
    assert c.prompted_frames(1) == [2]

    hand.drag([(10, 10), (30, 30)])  # a second box of the same object on the same frame replaces the first
    idle(c, qtbot)
    [prompt] = c.view.prompts(1)
    assert np.allclose(prompt.box, (10, 10, 30, 30), atol=1.0) and c.layers.shapes.nshapes == 1


@pytest.mark.slow
def test_painted_fixes_survive_other_strokes_and_propagation(sam2_viewer, qtbot):
    """The issue's case: object 1 clicked on frame 0 and painted on frame 2, then object 2 painted on frame 2;
    propagation keeps both paintings exactly. Undo and redo of the last stroke reach the store, provenance too."""
    viewer, widget, c, hand = session(sam2_viewer, qtbot)
    viewer.dims.set_point(0, 0)
    activate(hand, c.layers.points)
    hand.click((60, 60))
    idle(c, qtbot)
    assert c.view.provenance(0) == {1: "prompt"}

    viewer.dims.set_point(0, 2)
    labels = c.layers.labels
    activate(hand, labels)
    type_key(hand, Qt.Key.Key_P)  # napari's paint brush
    assert labels.mode == "paint"
    labels.brush_size = 6
    stroke(hand, (100, 20), (100, 50))  # object 1, painted by hand
    one = c.store.read_frame(2) == 1
    assert one.any() and c.view.provenance(2) == {1: "manual"}

    type_key(hand, Qt.Key.Key_N)  # a new object: the brush paints object 2 now
    assert labels.selected_label == 2
    stroke(hand, (15, 100), (35, 100))
    two = c.store.read_frame(2) == 2
    assert two.any() and not (one & two).any()
    assert c.view.provenance(2) == {1: "manual", 2: "manual"}

    widget.range_check.setChecked(True)  # frames 0 to 2 are enough
    widget.last_spin.setValue(2)
    type_key(hand, Qt.Key.Key_G)  # propagate
    idle(c, qtbot)
    frame2 = c.store.read_frame(2)
    assert np.array_equal(frame2 == 1, one) and np.array_equal(frame2 == 2, two)
    assert c.view.provenance(1) == {1: "propagation"}

    type_key(hand, Qt.Key.Key_Z, CTRL)  # undo object 2's stroke: gone from the store, and not frozen as "manual"
    frame2 = c.store.read_frame(2)
    assert not (frame2 == 2).any() and np.array_equal(frame2 == 1, one)
    assert np.array_equal(np.asarray(labels.data[2]), frame2)
    assert c.view.provenance(2) == {1: "manual"}
    type_key(hand, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)  # redo
    assert np.array_equal(c.store.read_frame(2) == 2, two)
    assert c.view.provenance(2) == {1: "manual", 2: "manual"}


def test_a_prompt_that_replaced_a_painting_is_not_made_manual_again_by_another_stroke(sam2_viewer, qtbot):
    viewer, widget, c, hand = session(sam2_viewer, qtbot)
    viewer.dims.set_point(0, 1)
    labels = c.layers.labels
    activate(hand, labels)
    type_key(hand, Qt.Key.Key_P)
    labels.brush_size = 6
    stroke(hand, (60, 50), (60, 70))  # object 1 painted ...
    type_key(hand, Qt.Key.Key_N)
    labels.brush_size = 12
    stroke(hand, (20, 20), (20, 60))  # ... and object 2
    assert c.view.provenance(1) == {1: "manual", 2: "manual"}

    widget.objects.list.setCurrentItem(widget.objects.item_for(1))
    activate(hand, c.layers.points)
    hand.click((60, 60))  # object 1 clicked: the prompt's mask replaces its painting
    idle(c, qtbot)
    assert c.view.provenance(1) == {1: "prompt", 2: "manual"}
    before = c.store.read_frame(1).copy()

    activate(hand, labels)
    type_key(hand, Qt.Key.Key_E)  # the eraser, inside object 2: a stroke that changes object 2 only
    labels.brush_size = 4
    stroke(hand, (20, 35), (20, 45))
    after = c.store.read_frame(1)
    assert set(np.unique(before[after != before])) == {2} and set(np.unique(after[after != before])) == {0}
    assert c.view.provenance(1) == {1: "prompt", 2: "manual"}
