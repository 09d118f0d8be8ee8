"""The widget's "Fine-tune on this store" box: with a CUDA GPU, trains in the background with progress and Cancel,
then asks the widget to reload the session with the new checkpoint; without one, writes the command and a job
script for a GPU node and shows the command, offering "train here anyway (slow)"."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QApplication,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_sam2._qt.command_view import command_view
from napari_sam2._qt.fine_tune import DEFAULT_STEPS, FineTunePlan, FineTuneRun, cuda_available, plan_fine_tune
from napari_sam2._qt.model_loading import LOCAL_FILE

SessionGetter = Callable[[], tuple[Any, Any]]  # (controller or None, its image layer)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class FineTunePanel(QGroupBox):
    """``trained`` carries the checkpoint of a finished run for the session to reload with (a cancelled run is saved
    and continues when started again)."""

    trained = Signal(Path)
    message = Signal(str)

    def __init__(self, session: SessionGetter, has_gpu: Callable[[], bool] = cuda_available) -> None:
        super().__init__("Fine-tune")
        self._session = session
        self._has_gpu = has_gpu
        self.plan: FineTunePlan | None = None
        self.run = FineTuneRun(self)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100000)
        self.steps_spin.setValue(DEFAULT_STEPS)
        self.steps_spin.setSuffix(" steps")
        self.fine_tune_button = QPushButton("Fine-tune on this store")
        self.fine_tune_button.setToolTip("Train the session's model on this store's labels (objects marked verified "
                                         "or corrected where statuses are recorded, else all), then reload with it")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.hide()
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.progress_label.hide()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.hide()
        self.command_text = command_view()
        self.copy_button = QPushButton("Copy command")
        self.here_button = QPushButton("Train here anyway (slow)")
        self.here_button.setToolTip("Train on this computer's CPU: hours for a few hundred steps")
        self.copy_button.hide()
        self.here_button.hide()

        row = QHBoxLayout()
        row.addWidget(self.fine_tune_button, 1)
        row.addWidget(self.steps_spin)
        row.addWidget(self.cancel_button)
        choices = QHBoxLayout()
        choices.addWidget(self.copy_button)
        choices.addWidget(self.here_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        for w in (self.bar, self.progress_label, self.note, self.command_text):
            layout.addWidget(w)
        layout.addLayout(choices)

        self.fine_tune_button.clicked.connect(self.fine_tune)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_command)
        self.here_button.clicked.connect(self.train_here)
        self.run.started.connect(self._started)
        self.run.progress.connect(self._progress)
        self.run.finished.connect(self._finished)
        self.run.failed.connect(self._failed)

    # ------------------------------------------------------------------ actions
    def make_plan(self, extra: tuple[str, ...] = ()) -> FineTunePlan | None:
        controller, layer = self._session()
        if controller is None:
            self._say("start a session first: fine-tuning trains on its label store")
            return None
        try:
            self.plan = plan_fine_tune(controller, layer, steps=self.steps_spin.value(), extra=extra)
        except (ValueError, OSError) as err:
            self._say(str(err))
            return None
        return self.plan

    def fine_tune(self, *_: Any) -> None:
        """With a CUDA GPU: train now. Without: write the command and the job script, and show them."""
        if self.run.running or self.make_plan() is None:
            return
        if self._has_gpu():
            self.start(self.plan, "cuda")
        else:
            self.show_command(self.plan)

    def show_command(self, plan: FineTunePlan) -> Path | None:
        from napari_sam2._qt.fine_tune import write_job_script

        try:
            script = write_job_script(plan)
        except OSError as err:
            self._say(f"cannot write the job script {plan.out.parent}: {err.strerror or err}")
            return None
        self.note.setText(
            f"No CUDA GPU here. Run this command on a GPU node (or submit the job script {script} with sbatch), "
            f"then load the checkpoint with Model “{LOCAL_FILE}”, Checkpoint {plan.out}:")
        self.command_text.setPlainText(plan.command())
        for w in (self.note, self.command_text, self.copy_button, self.here_button):
            w.show()
        self.message.emit(f"wrote {script}: run it on a GPU node")
        return script

    def copy_command(self, *_: Any) -> None:
        QApplication.clipboard().setText(self.command_text.toPlainText())

    def train_here(self, *_: Any) -> None:
        """The explicit second choice: train on this machine's CPU."""
        if self.plan is not None and not self.run.running:
            self.start(self.plan, "cpu")

    def start(self, plan: FineTunePlan, device: str) -> None:
        self.plan = plan
        for w in (self.note, self.command_text, self.copy_button, self.here_button):
            w.hide()
        self.fine_tune_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, plan.steps)
        self.bar.setValue(0)
        self.bar.setFormat(f"0 / {plan.steps}")
        self.bar.show()
        self.progress_label.setText(f"preparing the training on {device}…")
        self.progress_label.show()
        self.run.start(plan, device)

    def cancel(self, *_: Any) -> None:
        if self.run.running:
            self.cancel_button.setEnabled(False)
            self.progress_label.setText("stopping after this step; the run is saved and continues when started "
                                        "again…")
            self.run.cancel()

    # ------------------------------------------------------------------ the run's reports
    def _started(self, description: str) -> None:
        self.progress_label.setText(description)

    def _progress(self, p: Any) -> None:
        self.bar.setValue(p.step)
        self.bar.setFormat(f"{p.step} / {p.steps}")
        parts = [f"step {p.step} of {p.steps}"]
        if p.loss:
            parts.append(f"loss {p.loss['total']:.3f}")
            parts.append(f"time left {_duration(p.seconds_per_step * (p.steps - p.step))}")
        if p.validation is not None:
            parts.append(f"validation J&F {p.validation.jf:.3f}")
        self.progress_label.setText(" · ".join(parts))

    def _finished(self, checkpoint: Path, stopped: bool) -> None:
        self._idle()
        if stopped:
            self.progress_label.setText(f"stopped and saved to {checkpoint}; press Fine-tune again (same steps) "
                                        "to continue the run")
            return
        self.progress_label.setText(f"wrote {checkpoint}; reloading the session with it")
        self.trained.emit(checkpoint)

    def _failed(self, message: str) -> None:
        self._idle()
        self.bar.hide()
        self._say(f"fine-tuning failed: {message}")

    def _idle(self) -> None:
        self.fine_tune_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _say(self, text: str) -> None:
        self.progress_label.setText(text)
        self.progress_label.show()
        self.message.emit(text)
