"""Reopening a session: the engine's tracking memory comes back with it (a correction gives the same mask as in the
live session), the SAM 2 layers are taken over rather than added again, and painting done while the dock was
closed is kept as manual. Clicks and strokes go through the real canvas (tests/qt/hand.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.widget import SAM2Widget
from tests.qt import conftest
from tests.qt.conftest import TEST_MODEL, cell_stack
from tests.qt.hand import Hand, find_canvas

WAIT = 600000  # ms; the test machine is shared and slow
FRAMES = 4


def idle(controller, qtbot):
    qtbot.waitUntil(lambda: not controller.busy, timeout=WAIT)


def hand_click(hand, controller, qtbot, frame, yx):
    """Show ``frame``, make the clicks layer active in add mode, click at (y, x) through the canvas."""
    hand.viewer.dims.set_point(0, frame)
    hand.viewer.layers.selection.active = controller.layers.points
    controller.layers.points.mode = "add"
    hand.click(yx)
    idle(controller, qtbot)


@pytest.mark.slow
def test_a_reopened_session_answers_a_correction_as_the_live_one(sam2_viewer, qtbot, tmp_path):
    """Click, propagate, correct frame 2 and propagate from there: the labels are the same whether the session was
    closed and reopened before the correction or not (before, a reopened session only replayed the prompts, so the
    engine took the correction for a first click on an untracked frame)."""
    viewer, widget, start = sam2_viewer
    viewer.add_image(cell_stack(frames=FRAMES, size=96), name="short", axis_labels=("t", "y", "x"))
    hand = Hand(viewer, find_canvas(widget))

    def first_half(store):
        c = start(qtbot, store=store, name="short")
        hand_click(hand, c, qtbot, 0, (60, 60))
        c.propagate("forward")
        idle(c, qtbot)
        return c

    def correct(c):
        hand_click(hand, c, qtbot, 2, (45, 75))
        assert c.prompted_frames(1) == [0, 2]
        widget.propagate_from_here()
        idle(c, qtbot)
        return np.asarray(c.store.labels[:]).copy()

    live = correct(first_half(tmp_path / "live.sam2.zarr"))
    widget.stop()
    first_half(tmp_path / "reopened.sam2.zarr")
    widget.stop()
    c = start(qtbot, store=tmp_path / "reopened.sam2.zarr", name="short")
    assert "tracking memory restored" in widget.status_label.text(), widget.status_label.text()
    reopened = correct(c)
    assert (live[2] == 1).any()
    for frame in range(FRAMES):
        assert np.array_equal(reopened[frame], live[frame]), frame


def test_memory_that_does_not_fit_is_not_loaded_and_the_user_is_told(sam2_viewer, qtbot, tmp_path):
    """A prompt stored after the last saved memory (a crash between the two): the prompts are replayed instead, and
    the status says so."""
    viewer, widget, start = sam2_viewer
    store = tmp_path / "crashed.sam2.zarr"
    c = start(qtbot, store=store)
    c.layers.points.add([0, 60, 60])
    idle(c, qtbot)
    c.memory.flush()
    widget.stop()
    c.view.add_prompt(1, 3, points=[[30, 30]])  # as if written by a session killed before saving its memory
    c = start(qtbot, store=store)
    text = widget.status_label.text()
    assert "prompts were replayed" in text and "prompts" in text.split(":")[0], text
    assert sorted(c.session.prompted_frames(1)) == [0, 3]


def test_closing_and_reopening_the_dock_takes_over_the_layers_and_keeps_painting_done_meanwhile(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(cell_stack(frames=FRAMES, size=96), name="cells", axis_labels=("t", "y", "x"))

    def open_dock():
        widget = SAM2Widget(viewer, model_factories={TEST_MODEL: conftest.test_model_factory})
        viewer.window.add_dock_widget(widget, name="SAM 2")
        widget.settings.image_combo.setCurrentText("cells")
        widget.settings.model_combo.setCurrentText(TEST_MODEL)
        widget.settings.device_combo.setCurrentText("cpu")
        widget.settings.store_edit.setText(str(tmp_path / "cells.sam2.zarr"))
        c = widget.start()
        qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=WAIT)
        return widget, c

    widget, c = open_dock()
    hand = Hand(viewer, find_canvas(widget))
    hand_click(hand, c, qtbot, 0, (60, 60))
    labels = c.layers.labels
    viewer.window.remove_dock_widget(widget)  # the dock is closed: the labels stay on screen
    assert labels in viewer.layers and widget.controller is None

    viewer.dims.set_point(0, 2)  # paint object 2 on frame 2 with the mouse
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.selected_label = 2
    labels.brush_size = 8
    hand.drag([(20, 20), (20, 30), (25, 30)])
    painted = np.asarray(labels.data[2]) == 2
    assert painted.any()
    labels.data = np.asarray(labels.data)  # the layer no longer shows the store: a stroke now stays in the layer
    viewer.dims.set_point(0, 3)
    labels.selected_label = 3
    hand.drag([(70, 20), (70, 30)])
    painted_3 = np.asarray(labels.data[3]) == 3
    assert painted_3.any() and not (c.store.read_frame(3) == 3).any()

    widget, c = open_dock()
    ours = [layer for layer in viewer.layers if "SAM 2" in layer.name]
    assert len(ours) == 3 and c.layers.labels is labels, [layer.name for layer in ours]
    assert c.view.provenance(2).get(2) == "manual"
    assert c.view.provenance(3).get(3) == "manual" and np.array_equal(c.store.read_frame(3) == 3, painted_3)
    c.propagate("forward")
    idle(c, qtbot)
    assert np.array_equal(c.store.read_frame(2) == 2, painted)  # propagation kept the painting
    assert np.array_equal(c.store.read_frame(3) == 3, painted_3)
    assert (c.store.read_frame(3) == 1).any()
    widget.stop()
