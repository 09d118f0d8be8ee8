""""Fine-tune on this store": without a GPU a click writes a job script running the exact ``train`` command and shows
it; the background run (forced on the CPU, one step) writes a checkpoint that loads strictly, and the session
reloads with it and propagates its prompts again."""

from __future__ import annotations

import shlex

import pytest
from qtpy.QtCore import Qt

from tests.qt import conftest

WAIT = 240000  # the CPU may be shared


def start_from_checkpoint(viewer, widget, qtbot, tmp_path, frames=6):
    """A session on a small stack with the tiny test model saved as a local checkpoint file (fine-tuning starts
    from a file or a named model), with one object clicked and propagated."""
    c, checkpoint = conftest.start_from_checkpoint_file(viewer, widget, qtbot, tmp_path, frames=frames, wait=WAIT)
    c.layers.points.add([0, 60, 60])
    qtbot.waitUntil(lambda: not c.busy, timeout=WAIT)
    c.propagate("forward")
    qtbot.waitUntil(lambda: not c.busy and not c.propagation.running, timeout=WAIT)
    return c, checkpoint


def test_without_a_gpu_a_click_writes_the_job_script_and_shows_the_command(viewer_widget, qtbot, tmp_path):
    from napari_sam2.cli.main import build_parser

    viewer, widget = viewer_widget
    c, checkpoint = start_from_checkpoint(viewer, widget, qtbot, tmp_path)
    panel = widget.fine_tune_box
    panel._has_gpu = lambda: False  # as on a laptop (this machine has no GPU either)
    qtbot.mouseClick(panel.fine_tune_button, Qt.MouseButton.LeftButton)

    script = tmp_path / "fine_tuned" / "fine_tune.sh"
    assert script.is_file() and script.stat().st_mode & 0o111
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --gres=gpu:1" in text
    commands = [line for line in text.splitlines() if line and not line.startswith(("#", "set "))]
    assert len(commands) == 1
    argv = shlex.split(commands[0])
    assert argv[0] == "napari-sam2"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "train" and args.data == [str((tmp_path / "cells.sam2.zarr").resolve())]
    assert args.start == str(checkpoint.resolve()) and args.image_size == 256 and args.steps == 300
    assert args.axis == "t" and args.device == "cuda"
    out = args.out
    assert out.startswith(str((tmp_path / "fine_tuned" / "tiny-test-").resolve())) and out.endswith(".pt")
    image = tmp_path / "fine_tuned" / "cells-image.zarr"  # the layer has no file: its array, written for the job
    assert args.image == str(image.resolve()) and image.is_dir()

    assert not panel.command_text.isHidden() and panel.command_text.toPlainText() == commands[0]
    assert panel.command_text.isReadOnly()
    assert "GPU node" in panel.note.text() and "local checkpoint file" in panel.note.text()
    assert not panel.here_button.isHidden() and panel.here_button.text() == "Train here anyway (slow)"
    qtbot.mouseClick(panel.copy_button, Qt.MouseButton.LeftButton)
    from qtpy.QtWidgets import QApplication

    assert QApplication.clipboard().text() == commands[0]
    assert not panel.run.running  # nothing trains on the CPU unless asked


def test_a_session_without_a_file_model_says_what_fine_tuning_needs(sam2_viewer, qtbot):
    viewer, widget, start = sam2_viewer
    start(qtbot)
    panel = widget.fine_tune_box
    panel._has_gpu = lambda: False
    qtbot.mouseClick(panel.fine_tune_button, Qt.MouseButton.LeftButton)
    assert "built in memory" in panel.progress_label.text() and panel.command_text.isHidden()


@pytest.mark.slow
def test_training_here_writes_a_checkpoint_and_the_session_reloads_with_it(viewer_widget, qtbot, tmp_path,
                                                                           monkeypatch):
    import torch

    from napari_sam2._qt.controller import TrackingController
    from napari_sam2._qt.fine_tune import plan_fine_tune
    from napari_sam2.model import build_sam2

    viewer, widget = viewer_widget
    c, checkpoint = start_from_checkpoint(viewer, widget, qtbot, tmp_path, frames=8)
    propagated = []
    original = TrackingController.propagate

    def spy(self, direction="forward", **kw):
        propagated.append((self, direction))
        return original(self, direction, **kw)

    monkeypatch.setattr(TrackingController, "propagate", spy)
    panel = widget.fine_tune_box
    plan = plan_fine_tune(c, widget._session_image, steps=1,
                          extra=("--batch-size", "1", "--val-every", "0", "--crop-size", "128"))
    reports = []
    panel.run.progress.connect(reports.append)
    panel.plan = plan
    panel._has_gpu = lambda: False
    panel.start(plan, "cpu")  # what "Train here anyway" does
    assert panel.cancel_button.isEnabled() and not panel.bar.isHidden()
    qtbot.waitUntil(lambda: widget.controller is not None and widget.controller is not c, timeout=WAIT)
    c2 = widget.controller
    qtbot.waitUntil(lambda: c2.session is not None and not c2.busy and not c2.propagation.running, timeout=WAIT)

    assert plan.out.is_file() and reports and reports[-1].step == 1 and reports[-1].saved
    assert panel.bar.value() == 1 and not panel.cancel_button.isEnabled()
    state = torch.load(plan.out, map_location="cpu", weights_only=True)
    build_sam2("sam2.1_hiera_tiny", image_size=256).load_state_dict(state["model"], strict=True)
    before = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    assert any(not torch.equal(before[k], v) for k, v in state["model"].items())  # the step changed weights
    assert c2.model.checkpoint == plan.out and widget.settings.checkpoint_edit.text() == str(plan.out)
    assert propagated == [(c2, "both")]  # the prompted object was propagated again with the new weights
    assert (c2.store.read_frame(7) == 1).any()
