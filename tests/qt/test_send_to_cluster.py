""""Send to cluster": a click writes the session's prompts and a job script running the exact ``napari-sam2 batch``
command, and shows the command; the prompt file and the stack it names pass ``segment``'s own input checks."""

from __future__ import annotations

import shlex

import pytest
from qtpy.QtCore import Qt

from tests.qt import conftest
from tests.qt.hand import Hand, find_canvas

WAIT = 240000  # the CPU may be shared


@pytest.mark.slow
def test_send_to_cluster_writes_the_prompts_the_batch_command_and_a_job_script(viewer_widget, qtbot, tmp_path):
    from napari_sam2.cli.inputs import open_stack_and_prompts
    from napari_sam2.cli.main import build_parser

    viewer, widget = viewer_widget
    panel = widget.cluster_box
    qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)  # no session yet: says what it needs
    assert "start a session first" in panel.note.text() and panel.command_text.isHidden()

    c, checkpoint = conftest.start_from_checkpoint_file(viewer, widget, qtbot, tmp_path, frames=4, wait=WAIT)
    qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)  # nothing prompted yet
    assert "prompt at least one object first" in panel.note.text() and panel.command_text.isHidden()

    viewer.dims.set_point(0, 0)
    Hand(viewer, find_canvas(widget)).click((60, 60))
    qtbot.waitUntil(lambda: not c.busy and c.prompted_frames(1) == [0], timeout=WAIT)
    qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)

    folder = tmp_path / "cluster"
    script = folder / "batch.sh"
    assert script.is_file() and script.stat().st_mode & 0o111
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --gres=gpu:1" in text
    commands = [line for line in text.splitlines() if line and not line.startswith(("#", "set "))]
    assert len(commands) == 1 and panel.command_text.toPlainText() == commands[0]
    argv = shlex.split(commands[0])
    assert argv[0] == "napari-sam2"
    args = build_parser().parse_args(argv[1:])
    image = folder / "cells-image.zarr"  # the layer has no file: its array, written for the job
    assert args.command == "batch" and args.inputs == [str(image.resolve())] and image.is_dir()
    assert args.prompts == str((folder / "cells-prompts.json").resolve())
    assert args.out_dir == str((folder / "labels").resolve())
    assert (args.model, args.checkpoint, args.image_size) == ("sam2.1_hiera_tiny", str(checkpoint.resolve()), 256)

    data = open_stack_and_prompts(args.inputs[0], args.prompts, None, None, None)  # segment's own checks
    try:
        assert len(data.source) == 4 and data.frame_axis == "t"
        [obj] = data.prompts.objects
        [prompt] = obj.prompts
        assert obj.id == 1 and prompt.frame == 0 and list(prompt.labels) == [1]
        assert abs(prompt.points[0] - [60, 60]).max() < 1.5  # where the hand clicked
    finally:
        data.source.close()
    assert not panel.copy_button.isHidden() and "wrote" in widget.status_label.text()
