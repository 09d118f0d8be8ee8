"""A propagation as the user sees it: a click during the run is applied between two frames (not after the whole
run) and the run goes on from the corrected frame; Cancel is taken at once and stops the run between frames; the
widget itself shows the frame (or slice) counter and the time left. Clicks go through the real canvas."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.propagation import PropagationPlan, PropagationRun
from napari_sam2._qt.propagation_driver import describe_seconds
from tests.qt.conftest import cell_stack
from tests.qt.hand import Hand, find_canvas

WAIT = 600000  # ms; the test machine is shared and slow
FRAMES = 8


def idle(controller, qtbot):
    qtbot.waitUntil(lambda: not controller.busy, timeout=WAIT)


def written(controller, frames):
    return [f for f in range(frames) if controller.view.provenance(f)]


@pytest.mark.slow
def test_a_click_during_propagation_is_applied_between_frames_and_the_run_goes_on(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    viewer.add_image(cell_stack(frames=FRAMES, size=64), name="long", axis_labels=("t", "y", "x"))
    c = start(qtbot, name="long")
    hand = Hand(viewer, find_canvas(widget))
    viewer.dims.set_point(0, 0)
    hand.click((30, 30))
    idle(c, qtbot)
    reported: list[int] = []
    c.propagation_progress.connect(lambda done, total, text: text and reported.append(text))

    widget.propagate_button.click()
    qtbot.waitUntil(lambda: len(written(c, FRAMES)) >= 3, timeout=WAIT)
    viewer.dims.set_point(0, 1)  # back to a frame the run went through: a correction there
    viewer.layers.selection.active = c.layers.points
    hand.click((20, 40))
    clicked_at = len(reported)
    assert "applied after the frame being computed" in widget.status_label.text(), widget.status_label.text()
    qtbot.waitUntil(lambda: c.view.provenance(1) == {1: "prompt"}, timeout=WAIT)
    assert len(written(c, FRAMES)) < FRAMES, "the click waited for the whole run"
    assert c.propagation.running and not widget.propagate_button.isEnabled()
    corrected = c.store.read_frame(1).copy()

    idle(c, qtbot)
    assert written(c, FRAMES) == list(range(FRAMES))
    assert c.prompted_frames(1) == [0, 1] and np.array_equal(c.store.read_frame(1), corrected)
    assert c.view.provenance(FRAMES - 1) == {1: "propagation"}
    after = [text.split(" · ")[0] for text in reported[clicked_at:] if text.startswith("frame ")]
    restart = after.index("frame 1")  # after the frame being computed at the click, if any
    assert restart <= 1 and after[restart : restart + 2] == ["frame 1", "frame 2"], after  # on from the correction
    assert not widget.propagation_bar.isVisibleTo(widget) and widget.propagate_button.isEnabled()


def test_cancel_is_taken_at_once_and_stops_between_frames(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    viewer.add_image(cell_stack(frames=FRAMES, size=64), name="long", axis_labels=("t", "y", "x"))
    c = start(qtbot, name="long")
    c.layers.points.add([0, 30, 30])
    idle(c, qtbot)
    widget.propagate_button.click()
    qtbot.waitUntil(lambda: len(written(c, FRAMES)) >= 2, timeout=WAIT)
    widget.cancel_button.click()
    done_at_click = len(written(c, FRAMES))
    assert "cancelling" in widget.status_label.text() and not widget.cancel_button.isEnabled()
    idle(c, qtbot)
    assert len(written(c, FRAMES)) <= done_at_click + 1  # the frame being computed, no more
    assert "cancelled" in widget.status_label.text() and widget.propagate_button.isEnabled()


def test_the_widget_counts_slices_and_shows_the_time_left(sam2_viewer, qtbot):
    """Along z the widget says "slice"; the counter and the time left are in the widget, not only napari's dock."""
    viewer, widget, start = sam2_viewer
    viewer.add_image(cell_stack(frames=8, size=64), name="volume", axis_labels=("z", "y", "x"))
    c = start(qtbot, name="volume")
    assert c.choice.frame_axis == "z"
    c.layers.points.add([0, 30, 30])
    idle(c, qtbot)
    assert widget.status_label.text().startswith("slice 0 segmented")
    seen: list[str] = []

    def shown(*_):
        if widget.propagation_label.isVisibleTo(widget) and widget.propagation_bar.isVisibleTo(widget):
            seen.append(widget.propagation_label.text())

    c.propagation_progress.connect(shown)
    widget.propagate_button.click()
    idle(c, qtbot)
    assert seen[0].startswith("propagating forward: starting… · 0 of 8 slices"), seen
    assert len(seen) > 8 and all(t.startswith("slice ") for t in seen[1:]), seen
    assert any("3 of 8 slices" in t and "s left" in t for t in seen), seen
    assert not widget.propagation_label.isVisibleTo(widget)
    assert "8 slices computed" in widget.status_label.text(), widget.status_label.text()


def test_resume_plan_restarts_the_pass_at_a_correction_it_went_through():
    run = PropagationRun(PropagationPlan((("forward", 2, 8), ("backward", 2, 2))))
    for t, frame in enumerate(range(2, 7)):
        run.frame_done(0, frame, float(t))
    assert run.remaining() == 4 + 3 and run.seconds_left() == 7.0
    run.corrected.update({4, 9})  # 4 was computed already; 9 is ahead
    assert run.resume_plan().passes == (("forward", 4, 6), ("backward", 2, 2)) and not run.continued
    run.frame_done(0, 4, 10.0)
    run.corrected.add(1)  # not in this pass: it goes on after the last frame it computed
    assert run.resume_plan().passes == (("forward", 5, 5), ("backward", 2, 2)) and run.continued
    for frame in range(5, 11):
        run.frame_done(0, frame, 20.0 + frame)
    assert run.resume_plan().passes == (("backward", 2, 2),)  # the forward pass was done


def test_time_left_is_said_in_words():
    assert describe_seconds(None).startswith("estimating")
    assert [describe_seconds(s) for s in (4.4, 75, 3725)] == ["about 4 s left", "about 1 min 15 s left",
                                                               "about 1 h 02 min left"]
