"""Tiles in the widget: a large frame, "Tiles: on" in the session settings, a real click on the canvas and
Propagate — the object is tracked in the tile that holds the click, and its labels are where the engine put them."""

from __future__ import annotations

import numpy as np

from tests.qt.conftest import TEST_MODEL, choose_settings
from tests.qt.hand import Hand, find_canvas
from tests.qt.test_screenshots import _save

WAIT = 180000
SIDE, FRAMES = 600, 3  # tiles of the 256-px test model: 3 × 3


def large_stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 800, (FRAMES, SIDE, SIDE)).astype(np.uint16)
    for t in range(FRAMES):
        stack[t, 480:510, 470 + 3 * t : 500 + 3 * t] += 3000
    return stack


def start_tiled(widget, image: str, model: str, store):
    """The session settings with "Tiles: on", then Start."""
    choose_settings(widget, image, model, store, tiling="on")
    return widget.start()


def test_a_click_on_a_large_frame_is_tracked_in_its_tile(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2._qt.widget import SAM2Widget
    from tests.qt.conftest import test_model_factory

    viewer = make_napari_viewer()
    widget = SAM2Widget(viewer, model_factories={TEST_MODEL: test_model_factory})
    viewer.window.add_dock_widget(widget, name="SAM 2")
    viewer.add_image(large_stack(), name="large", axis_labels=("t", "y", "x"))
    s = widget.settings
    assert s.tiling_combo.currentText() == "auto"  # 600 px is under 4 × 256: auto would not tile
    c = start_tiled(widget, "large", TEST_MODEL, tmp_path / "large.sam2.zarr")
    assert c is not None, widget.status_label.text()
    try:
        qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=WAIT)
        assert not s.tiling_combo.isEnabled()  # fixed while the session runs
        layout = c.session.layout
        assert len(layout) == 9
        viewer.dims.set_current_step(0, 0)
        hand = Hand(viewer, find_canvas(widget))
        viewer.layers.selection.active = c.layers.points
        c.layers.points.mode = "add"
        hand.click((495, 485))
        qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)
        [prompt] = c.view.prompts(1)
        assert prompt.frame == 0 and np.allclose(prompt.points, [(495, 485)], atol=1.5)
        [span] = c.session.spans(1)
        assert layout.boxes[span.tile] == (344, 344, 600, 600)  # the tile holding the click most centrally
        widget.propagate_button.click()
        qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)
        y0, x0, y1, x1 = layout.boxes[span.tile]
        for frame in range(FRAMES):
            labels = c.store.read_frame(frame) == 1
            assert labels.any(), frame
            np.testing.assert_array_equal(labels, c.session.result(frame).masks[0])  # the labels are SAM's masks
            assert not labels[:y0].any() and not labels[:, :x0].any()  # inside the object's tile
        assert (c.layers.labels.data[1] == 1).any()  # and on screen
    finally:
        widget.stop()


def test_find_all_in_tiles_finds_each_cell_once(make_napari_viewer, qtbot, tmp_path):
    """Shift-F on a tiled session: cells inside a tile, in the overlaps and cut by tile borders are each found once
    and written to the label store (the shipped starter model at 256 px: real masks)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_sam2._qt.widget import SAM2Widget
    from napari_sam2.model import STARTER_NAME, build_sam2
    from napari_sam2.model.hub import packaged_checkpoint
    from tests.engine.cell_scenes import _disc, render

    side = 400
    centres = [(60, 60), (200, 200), (250, 60), (60, 250), (340, 330), (330, 150), (150, 340)]
    truth = np.zeros((2, side, side), np.int32)
    for k, centre in enumerate(centres, 1):
        truth[:, _disc(side, centre, 18)] = k

    def starter():
        return build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME), image_size=256)

    viewer = make_napari_viewer()
    widget = SAM2Widget(viewer, model_factories={"starter 256": starter})
    viewer.window.add_dock_widget(widget, name="SAM 2")
    viewer.add_image(render(truth), name="cells", axis_labels=("t", "y", "x"))
    c = start_tiled(widget, "cells", "starter 256", tmp_path / "cells.sam2.zarr")
    assert c is not None, widget.status_label.text()
    try:
        qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=WAIT)
        assert len(c.session.layout) == 4
        viewer.dims.set_current_step(0, 0)
        hand = Hand(viewer, find_canvas(widget))
        box = widget.find_box
        box.diameter_spin.setValue(36)
        box.min_area_spin.setValue(150)
        QTest.keyClick(hand.canvas, Qt.Key.Key_F, Qt.KeyboardModifier.ShiftModifier)  # Find all
        qtbot.waitUntil(lambda: not c.busy and "Find all" in widget.status_label.text(), timeout=WAIT)
        labels = c.store.read_frame(0)
        found = sorted(set(np.unique(labels)) - {0})
        best = {}
        for obj_id in found:
            mask = labels == obj_id
            scores = {k: (mask & (truth[0] == k)).sum() / (mask | (truth[0] == k)).sum() for k in range(1, 8)}
            best[obj_id] = max(scores, key=scores.get)
            assert scores[best[obj_id]] > 0.6, (obj_id, scores)
        assert sorted(best.values()) == list(range(1, 8)), best  # each cell once
        qtbot.wait(100)
        shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False)).astype(int)[..., :3]
        coloured = (shot.max(-1) - shot.min(-1) > 60).sum()  # the cells are grey: colour comes from the labels
        assert coloured > 2000, coloured  # the found objects are drawn in their colours, not the unknown-id grey
        # the user guide's picture: the found cells, with the tile borders drawn in for it (the widget draws none)
        boxes = [[[y0, x0], [y1 - 1, x1 - 1]] for y0, x0, y1, x1 in c.session.layout.boxes]
        viewer.add_shapes(boxes, shape_type="rectangle", edge_color="yellow", face_color="transparent",
                          edge_width=2, name="tiles (drawn for the picture)")
        viewer.window._qt_window.resize(1400, 900)  # as the other screenshots (rendered off screen)
        viewer.layers.selection.active = c.layers.labels
        qtbot.wait(100)
        assert _save(viewer, "tiles_find_all.png").stat().st_size > 10_000
    finally:
        widget.stop()
