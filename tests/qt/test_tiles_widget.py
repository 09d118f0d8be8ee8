"""Tiles in the widget: a large frame, "Tiles: on" in the session settings, a real click on the canvas and
Propagate — the object is tracked in the tile that holds the click, and its labels are where the engine put them."""

from __future__ import annotations

import numpy as np

from tests.qt.conftest import TEST_MODEL
from tests.qt.hand import Hand, find_canvas

WAIT = 180000
SIDE, FRAMES = 600, 3  # tiles of the 256-px test model: 3 × 3


def large_stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 800, (FRAMES, SIDE, SIDE)).astype(np.uint16)
    for t in range(FRAMES):
        stack[t, 480:510, 470 + 3 * t : 500 + 3 * t] += 3000
    return stack


def test_a_click_on_a_large_frame_is_tracked_in_its_tile(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2._qt.widget import SAM2Widget
    from tests.qt.conftest import test_model_factory

    viewer = make_napari_viewer()
    widget = SAM2Widget(viewer, model_factories={TEST_MODEL: test_model_factory})
    viewer.window.add_dock_widget(widget, name="SAM 2")
    viewer.add_image(large_stack(), name="large", axis_labels=("t", "y", "x"))
    s = widget.settings
    assert s.tiling_combo.currentText() == "auto"  # 600 px is under 4 × 256: auto would not tile
    s.image_combo.setCurrentText("large")
    s.model_combo.setCurrentText(TEST_MODEL)
    s.device_combo.setCurrentText("cpu")
    s.tiling_combo.setCurrentText("on")
    s.store_edit.setText(str(tmp_path / "large.sam2.zarr"))
    c = widget.start()
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
