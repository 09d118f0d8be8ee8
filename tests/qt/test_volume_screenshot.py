"""A screenshot of “Propagate in 3D + time” for the user guide (docs/images/volume_3d_time.png): three synthetic nuclei
of a T,Z,Y,X stack clicked once each on t=0 at one z, propagated with the shipped starter model, shown at a later t
and another z; their 3D masks are checked against the generator's truth."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.synthetic_volumes import central_click, nuclei_4d

from tests.qt.conftest import choose_settings
from tests.qt.test_screenshots import _save, screenshot_model


@pytest.mark.slow
def test_screenshot_of_a_4d_propagation(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1400, 900)
    data = nuclei_4d(4, 8, 128, num_nuclei=3, radius=12.0, z_step=2.5, seed=7)
    viewer.add_image(data.image, name="nuclei 3D + t", axis_labels=("t", "z", "y", "x"), colormap="gray")
    widget = SAM2Widget(viewer, model_factories={"starter (shipped)": screenshot_model})
    viewer.window.add_dock_widget(widget, name="SAM 2", area="right")
    clicks = {k: central_click(data.truth[0], k) for k in (1, 2, 3)}
    z0 = int(np.median([z for z, _, _ in clicks.values()]))
    viewer.dims.set_point(0, 0)
    viewer.dims.set_point(1, z0)
    choose_settings(widget, "nuclei 3D + t", "starter (shipped)", tmp_path / "nuclei.sam2.zarr")
    c = widget.start()
    qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=60000)
    for k, (_, y, x) in clicks.items():
        if k > 1:
            widget.new_object()
        c.layers.points.add([0, z0, y, x])
        qtbot.waitUntil(lambda: not c.busy, timeout=60000)
    widget.volume_box.propagate_button.click()
    qtbot.waitUntil(lambda: widget.volume_box.note.text() == "3D + time: done", timeout=600000)
    labels = np.asarray(c.store.labels[:])
    for k in clicks:
        for t in range(4):
            pred, truth = labels[t] == k, data.truth[t] == k
            assert (pred & truth).sum() / (pred | truth).sum() > 0.7, (k, t)
    viewer.dims.set_point(0, 3)
    viewer.dims.set_point(1, min(z0 + 2, 7))
    widget.scroll.ensureWidgetVisible(widget.volume_box)
    c.layers.refresh_labels()
    qtbot.wait(100)
    path = _save(viewer, "volume_3d_time.png")
    widget.stop()
    assert path.stat().st_size > 10_000
