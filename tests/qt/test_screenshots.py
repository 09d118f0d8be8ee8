"""Screenshots of the real widget for the user guide: docs/images/*.png, written by driving the plugin on the
synthetic cell sample (clicks on two cells, a box on a third, propagated forward) with the shipped starter model,
so the pictures show real masks.

They go to docs/images only when asked (``NAPARI_SAM2_DOCS_IMAGES=1 xvfb-run -a .venv/bin/python -m pytest
tests/qt -k screenshot``); a plain test run writes them to a temporary folder and leaves the checkout unchanged.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from napari_sam2 import samples

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@functools.cache
def _screenshots() -> Path:
    if os.environ.get("NAPARI_SAM2_DOCS_IMAGES") == "1":
        return DOCS_IMAGES
    return Path(tempfile.mkdtemp(prefix="napari-sam2-screenshots-"))


_MODEL = {}


def screenshot_model():
    if "model" not in _MODEL:
        from napari_sam2.model import build_sam2, fetch_checkpoint

        _MODEL["model"] = build_sam2("starter", fetch_checkpoint("starter"))
    return _MODEL["model"]


def _save(viewer, name: str) -> Path:
    _screenshots().mkdir(parents=True, exist_ok=True)
    path = _screenshots() / name
    image = viewer.screenshot(canvas_only=False, flash=False)
    PILImage.fromarray(np.asarray(image)).save(path)
    return path


def test_screenshots_of_the_widget_with_a_propagated_result(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1400, 900)  # not shown: the window is rendered off screen for the grab
    movie = samples.synthetic_cell_timelapse(n_frames=8, size=160, n_cells=7)
    viewer.add_image(movie, name="synthetic cells", axis_labels=("t", "y", "x"), colormap="gray")
    widget = SAM2Widget(viewer, model_factories={"starter (shipped)": screenshot_model})
    viewer.window.add_dock_widget(widget, name="SAM 2", area="right")
    settings = widget.settings
    settings.model_combo.setCurrentText("starter (shipped)")
    settings.device_combo.setCurrentText("cpu")
    settings.store_edit.setText(str(tmp_path / "synthetic_cells.sam2.zarr"))
    start_png = _save(viewer, "widget_start.png")

    c = widget.start()
    qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=60000)
    first = movie[0].astype(float)
    spots = []
    for _ in range(2):  # the two brightest cells of frame 0
        y, x = np.unravel_index(np.argmax(first), first.shape)
        spots.append((int(y), int(x)))
        first[max(0, y - 25) : y + 25, max(0, x - 25) : x + 25] = 0
    for i, (y, x) in enumerate(spots):
        if i:
            widget.new_object()
        c.layers.points.add([0, y, x])
        qtbot.waitUntil(lambda: not c.busy, timeout=30000)
    widget.new_object()
    y, x = np.unravel_index(np.argmax(first), first.shape)
    box = np.array([[0, y - 14, x - 14], [0, y - 14, x + 14], [0, y + 14, x + 14], [0, y + 14, x - 14]], float)
    c.layers.shapes.add_rectangles(box)
    qtbot.waitUntil(lambda: not c.busy, timeout=30000)
    widget.propagate_button.click()
    qtbot.waitUntil(lambda: not c.busy, timeout=60000)
    assert all(c.view.provenance(f) for f in range(8))
    first_labels = np.asarray(c.view.read_frame(0))  # the clicked cells are segmented: each click in its mask
    assert [int(first_labels[y, x]) for y, x in spots] == [1, 2]
    assert 30 < (first_labels == 1).sum() < 3000
    viewer.layers.selection.active = c.layers.points
    viewer.dims.set_point(0, 0)
    c.layers.refresh_labels()
    qtbot.wait(100)
    prompts_png = _save(viewer, "widget_prompts.png")
    viewer.dims.set_point(0, 5)
    c.layers.refresh_labels()
    qtbot.wait(100)
    propagated_png = _save(viewer, "widget_propagated.png")
    assert widget.settings.store_edit.text() == str(tmp_path / "synthetic_cells.sam2.zarr")

    viewer.dims.set_point(0, 0)  # Find all on frame 0, then review: two cells accepted, one rejected
    widget.find_box.diameter_spin.setValue(24)
    widget.find_all()
    qtbot.waitUntil(lambda: not c.busy, timeout=60000)
    assert any(info.status == "automatic" for info in c.store.objects.values())
    for step in (widget.review_next, widget.accept_object, widget.accept_object, widget.reject_object):
        step()
    widget.show_lineage()
    widget.scroll.ensureWidgetVisible(widget.review_box)
    c.layers.refresh_labels()
    qtbot.wait(100)
    review_png = _save(viewer, "widget_review.png")
    widget.stop()
    for path in (start_png, prompts_png, propagated_png, review_png):
        assert path.stat().st_size > 10_000
