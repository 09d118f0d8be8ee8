"""“Propagate in 3D + time” as a hand uses it: a real click on the canvas at a (t, z) plane of a T,Z,Y,X stack, a
real press of the button, and labels on other planes z and other time points t."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.synthetic_volumes import central_click, nuclei_4d
from qtpy.QtWidgets import QApplication

from tests.qt.hand import Hand, find_canvas

WAIT = 180000  # the CPU may be shared
T, Z, SIDE = 3, 4, 64


@pytest.mark.slow
def test_one_click_then_the_button_segments_the_object_through_z_and_over_t(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    data = nuclei_4d(T, Z, SIDE, num_nuclei=1, radius=10.0, z_step=3.0, seed=5)
    z, y, x = central_click(data.truth[0], 1)
    viewer.add_image(data.image, name="tzyx", axis_labels=("t", "z", "y", "x"))
    viewer.dims.set_point(0, 0)
    viewer.dims.set_point(1, z)
    widget.settings.image_combo.setCurrentText("tzyx")
    c = start(qtbot, name="tzyx")
    assert c.choice.frame_axis == "t" and c.choice.position == {"z": z}
    assert widget.volume_box.isEnabled()

    hand = Hand(viewer, find_canvas(widget))
    viewer.layers.selection.active = c.layers.points
    QApplication.processEvents()
    hand.click((y, x))
    qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)
    assert [(p.coords, p.frame) for p in c.view.prompts()] == [({"t": 0, "z": z}, 0)]

    widget.volume_box.propagate_button.click()
    qtbot.waitUntil(lambda: widget.volume_box.note.text() == "3D + time: done", timeout=WAIT)
    labels = np.asarray(c.store.labels[:])
    assert labels.shape == (T, Z, SIDE, SIDE)
    for t in range(T):  # every plane of every t was written (random weights: the masks mean nothing, but exist)
        assert all(c.store.plane_provenance((t, plane)) for plane in range(Z)), t
        assert (labels[t] == 1).any(), t
    shown = np.asarray(c.layers.labels.data[T - 1, (z + 1) % Z])  # the layer shows another (t, z) plane's labels
    np.testing.assert_array_equal(shown, labels[T - 1, (z + 1) % Z])
    assert widget.propagate_button.isEnabled() and widget.volume_box.propagate_button.isEnabled()
