"""The widget's "Send to cluster" box: writes the session's prompts, the ``napari-sam2 batch`` command over the
stacks in the image's folder and a job script next to the label store, and shows the command to copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QApplication, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_sam2._qt.cluster_job import BatchPlan, plan_batch, write_batch_script
from napari_sam2._qt.command_view import command_view

SessionGetter = Callable[[], tuple[Any, Any]]  # (controller or None, its image layer)


class ClusterPanel(QGroupBox):
    """``message`` carries one line for the widget's status."""

    message = Signal(str)

    def __init__(self, session: SessionGetter) -> None:
        super().__init__("Many stacks")
        self._session = session
        self.plan: BatchPlan | None = None
        self.script: Path | None = None
        self.send_button = QPushButton("Send to cluster")
        self.send_button.setToolTip("Write this session's prompts, the napari-sam2 batch command that applies them "
                                    "to every stack in the image's folder, and a SLURM job script running it")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.hide()
        self.command_text = command_view()
        self.copy_button = QPushButton("Copy command")
        self.copy_button.hide()
        row = QHBoxLayout()
        row.addWidget(self.send_button, 1)
        row.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(self.command_text)
        self.send_button.clicked.connect(self.send)
        self.copy_button.clicked.connect(self.copy_command)

    def send(self, *_: Any) -> Path | None:
        """Write the prompts, the command and the job script; show the command. Returns the script's path."""
        controller, layer = self._session()
        if controller is None:
            return self._say("start a session first: the batch applies its prompts to other stacks")
        try:
            self.plan = plan = plan_batch(controller, layer)
            self.script = write_batch_script(plan)
        except (ValueError, OSError) as err:
            return self._say(str(err))
        self.note.setText(f"Wrote {plan.prompts.name} and {self.script} (submit it with sbatch, or run the command "
                          f"on a machine with GPUs). It segments every stack in {plan.inputs} into {plan.out_dir}; "
                          "change the folder in the command for other stacks:")
        self.command_text.setPlainText(plan.command())
        for w in (self.note, self.command_text, self.copy_button):
            w.show()
        self.message.emit(f"wrote {self.script}: run it on a cluster")
        return self.script

    def copy_command(self, *_: Any) -> None:
        QApplication.clipboard().setText(self.command_text.toPlainText())

    def _say(self, text: str) -> None:
        self.note.setText(text)
        self.note.show()
        self.message.emit(text)
