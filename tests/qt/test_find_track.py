"""Find all, Track all and the lineage in the widget, driven by hand: keys typed into the canvas (Shift-F, Shift-T),
clicks on it, the widget's buttons. Find and track use the shipped starter model (real masks) on synthetic nuclei
whose positions the test knows; the division override and the Tracks layer use a store of known squares."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QMessageBox

from tests.qt.conftest import answer_next_dialog, choose_settings
from tests.qt.hand import Hand, find_canvas, type_key
from tests.qt.test_review import squares_store

WAIT = 180000  # the CPU may be shared
SHIFT = Qt.KeyboardModifier.ShiftModifier
STARTER = "starter (shipped)"
SIZE = 128
RADIUS = 10
FRAMES = 5
# nuclei centres (y, x) on every frame; the last one enters on frame 2
NUCLEI = [(30, 30), (30, 95), (70, 60), (100, 25), (100, 100)]
LATE = (64, 110)
_MODEL = {}


def starter_model():
    if "model" not in _MODEL:
        from napari_sam2.model import build_sam2, fetch_checkpoint

        _MODEL["model"] = build_sam2("starter", fetch_checkpoint("starter"))
    return _MODEL["model"]


def disc(centre, shape=(SIZE, SIZE), radius=RADIUS):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def nuclei_stack(frames=FRAMES) -> np.ndarray:
    """Bright discs on a dim noisy background, uint16 (T, Y, X); the discs drift right 2 px a frame and one more
    appears on frame 2."""
    rng = np.random.default_rng(1)
    stack = rng.normal(300, 40, (frames, SIZE, SIZE))
    for t in range(frames):
        centres = [(y, x + 2 * t) for y, x in NUCLEI] + ([LATE] if t >= 2 else [])
        for centre in centres:
            stack[t][disc(centre)] += 2500
    return np.clip(stack, 0, 65535).astype(np.uint16)


def start_starter(widget, viewer, qtbot, tmp_path):
    viewer.add_image(nuclei_stack(), name="nuclei", axis_labels=("t", "y", "x"))
    choose_settings(widget, "nuclei", STARTER, tmp_path / "nuclei.sam2.zarr")
    c = widget.start()
    assert c is not None, widget.status_label.text()
    qtbot.waitUntil(lambda: c.session is not None and not c.busy, timeout=WAIT)
    return c


def idle(c, qtbot):
    qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def matches(labels, centre, ids):
    """Ids among ``ids`` whose pixels overlap the disc at ``centre`` with IoU > 0.5."""
    return [i for i in ids if iou(labels == i, disc(centre)) > 0.5]


@pytest.mark.slow
def test_find_all_then_track_all_with_redetection(make_napari_viewer, qtbot, tmp_path):
    from napari_sam2._qt.widget import SAM2Widget

    viewer = make_napari_viewer()
    widget = SAM2Widget(viewer, model_factories={STARTER: starter_model})
    viewer.window.add_dock_widget(widget, name="SAM 2")
    try:
        c = start_starter(widget, viewer, qtbot, tmp_path)
        hand = Hand(viewer, find_canvas(widget))
        viewer.dims.set_point(0, 0)
        viewer.layers.selection.active = c.layers.points
        hand.click(NUCLEI[0])  # the user clicks one nucleus first: object 1
        idle(c, qtbot)
        assert matches(c.store.read_frame(0), NUCLEI[0], [1]) == [1]

        box = widget.find_box  # the user's settings: size, and the bar for the starter model's masks lowered
        box.diameter_spin.setValue(2 * RADIUS)
        box.min_area_spin.setValue(150)
        box.quality_spin.setValue(0.5)
        box.stability_spin.setValue(0.5)
        box.redetect_spin.setValue(2)
        type_key(hand, Qt.Key.Key_F, SHIFT)  # Find all
        idle(c, qtbot)
        labels = c.store.read_frame(0)
        found = sorted(set(c.store.objects) - {1})
        assert found and all(c.store.objects[i].status == "automatic" for i in found)
        assert matches(labels, NUCLEI[0], found) == []  # the clicked nucleus is not found twice
        for centre in NUCLEI[1:]:
            assert len(matches(labels, centre, found)) == 1, centre
        assert len(found) == len(NUCLEI) - 1  # nothing else: no background, no fragments
        assert {p.obj_id for p in c.view.prompts() if p.mask is not None} == set(found)  # replayed on reopening
        assert all(c.prompted_frames(i) == [0] for i in found)
        assert "Find all: " in widget.status_label.text()

        type_key(hand, Qt.Key.Key_T, SHIFT)  # Track all from frame 0, re-detecting every 2 frames
        qtbot.waitUntil(lambda: bool(c.view.provenance(1)), timeout=WAIT)
        deleted = found[0]  # deleted during the run: applied between two frames, and the run goes on
        widget.objects.list.setCurrentItem(widget.objects.item_for(deleted))
        answer_next_dialog(QMessageBox.StandardButton.Yes)
        widget.objects.delete_button.click()
        assert "applied after the frame being computed" in widget.status_label.text(), widget.status_label.text()
        qtbot.waitUntil(lambda: deleted not in c.store.objects, timeout=WAIT)
        assert c.auto.running and not widget.find_box.track_button.isEnabled()
        idle(c, qtbot)
        assert not c.auto.running and widget.find_box.track_button.isEnabled()
        assert all(c.view.provenance(t) for t in range(FRAMES))
        assert not any((c.store.read_frame(t) == deleted).any() for t in range(FRAMES))
        last = c.store.read_frame(FRAMES - 1)
        for y, x in NUCLEI:  # every nucleus followed to the end (the deleted one's found again by re-detection)
            assert len(matches(last, (y, x + 2 * (FRAMES - 1)), c.store.objects)) == 1
        entered = matches(c.store.read_frame(2), LATE, c.store.objects)
        assert len(entered) == 1 and entered[0] not in [1, *found]  # the nucleus that entered is a new track
        assert matches(last, LATE, c.store.objects) == entered
        assert c.store.objects[entered[0]].status == "automatic"
        assert widget.tracks.layer is not None and widget.tracks.layer in viewer.layers
        assert entered[0] in set(np.asarray(widget.tracks.layer.data)[:, 0].astype(int))
    finally:
        widget.stop()


def test_a_division_marked_in_the_widget_shows_in_the_tracks_layer(sam2_viewer, qtbot, tmp_path, monkeypatch):
    viewer, widget, start = sam2_viewer
    path = tmp_path / "labels.sam2.zarr"
    objects = {1: (range(0, 3), (40, 40)), 2: (range(3, 6), (30, 40)), 3: (range(3, 6), (60, 40))}
    centres = squares_store(path, objects)
    c = start(qtbot, store=path)
    box = widget.lineage_box
    box.parent_spin.setValue(1)
    box.daughter_spins[0].setValue(2)
    box.daughter_spins[1].setValue(3)
    qtbot.mouseClick(box.division_button, Qt.MouseButton.LeftButton)
    idle(c, qtbot)
    assert c.store.objects[2].parent == 1 and c.store.objects[3].parent == 1 and c.store.objects[1].parent is None
    layer = widget.tracks.layer
    assert layer is not None and layer in viewer.layers
    assert {int(k): [int(p) for p in v] for k, v in layer.graph.items()} == {2: [1], 3: [1]}
    data = np.asarray(layer.data)
    for obj_id, (frames, _) in objects.items():
        rows = data[data[:, 0] == obj_id]
        assert rows[:, 1].tolist() == list(frames)
        assert np.allclose(rows[:, 2:], centres[obj_id])

    out = tmp_path / "RES"
    out.mkdir()
    from qtpy.QtWidgets import QFileDialog  # the folder the user would choose in the dialog the button opens

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(out)))
    qtbot.mouseClick(box.ctc_button, Qt.MouseButton.LeftButton)  # export with the lineage
    idle(c, qtbot)
    assert (out / "res_track.txt").read_text().split("\n") == ["1 0 2 0", "2 3 5 1", "3 3 5 1", ""]
    assert len(list(out.glob("mask*.tif"))) == 6 and "written to" in widget.status_label.text()

