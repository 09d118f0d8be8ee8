""""Fine-tune on this store": the training run the widget offers, as a ``napari-sam2 train`` command.

A :class:`FineTunePlan` is that command (the store, its image, the model to start from, the output checkpoint). On a
machine with a CUDA GPU :class:`FineTuneRun` runs it in a background worker, reporting the loop's progress and
stopping (after saving) on Cancel; elsewhere :func:`write_job_script` writes it into a SLURM job script for a GPU
node. Importing this module does not import torch.
"""

from __future__ import annotations

import datetime
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_sam2._qt.job_script import write_slurm_script
from napari_sam2._qt.layer_stack import layer_array, layer_file
from napari_sam2._qt.model_loading import ModelChoice
from napari_sam2._qt.tasks import Task, TaskQueue

DEFAULT_STEPS = 300
FOLDER = "fine_tuned"
SCRIPT_NAME = "fine_tune.sh"
PROG = "napari-sam2"


@dataclass(frozen=True)
class FineTunePlan:
    """``napari-sam2 train STORE --image IMAGE --axis AXIS --from START --out OUT --steps N [--image-size S]``;
    ``extra``: further ``train`` options (e.g. ``--batch-size 1``)."""

    store: Path
    image: Path
    axis: str
    start: str  # a model name (published or shipped) or a checkpoint file
    out: Path
    steps: int = DEFAULT_STEPS
    image_size: int | None = None
    extra: tuple[str, ...] = field(default=())

    def argv(self, device: str | None = None) -> list[str]:
        """The ``train`` command's arguments (after ``napari-sam2``)."""
        args = ["train", str(self.store), "--image", str(self.image), "--axis", self.axis, "--from", self.start,
                "--out", str(self.out), "--steps", str(self.steps)]
        if self.image_size is not None:
            args += ["--image-size", str(self.image_size)]
        if device is not None:
            args += ["--device", device]
        return args + list(self.extra)

    def command(self, device: str | None = "cuda") -> str:
        """The shell command line (``--device cuda``: on a node without a GPU it fails instead of crawling)."""
        return shlex.join([PROG, *self.argv(device)])


def model_label(model: ModelChoice) -> str:
    return model.checkpoint.stem if model.checkpoint is not None else model.name


def start_of(model: ModelChoice) -> str:
    """What ``--from`` takes for the session's model: its checkpoint file, else its name."""
    if model.checkpoint is not None:
        return str(model.checkpoint.resolve())
    if model.factory is not None:
        raise ValueError(f"“{model.name}” is built in memory: fine-tuning starts from a published or shipped model "
                         "or a checkpoint file — choose one and press Start")
    return model.name


def training_image(layer: Any, axes: Sequence[str], folder: Path) -> Path:
    """The file the session's image comes from; for a layer with no file, its array written to
    ``folder/<layer>-image.zarr`` (zarr, with the axis names ``axes``) so that the command can read it."""
    path = layer_file(layer)
    if path is not None and path.exists():
        return path.resolve()
    import numpy as np
    import zarr

    data = np.asarray(layer_array(layer))
    if len(axes) != data.ndim:
        raise ValueError(f"“{layer.name}” has {data.ndim} dimensions but axes {list(axes)}: save it as a file first")
    target = folder / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in layer.name)}-image.zarr"
    array = zarr.create_array(store=str(target), shape=data.shape, dtype=data.dtype, dimension_names=list(axes),
                              chunks=(1,) * (data.ndim - 2) + data.shape[-2:], overwrite=True)
    array[...] = data
    return target.resolve()


def plan_fine_tune(controller: Any, layer: Any, *, steps: int = DEFAULT_STEPS, today: datetime.date | None = None,
                   extra: Sequence[str] = ()) -> FineTunePlan:
    """The run for ``controller``'s session (its label store, image ``layer``, model and image size): output
    ``<store folder>/fine_tuned/<model>-<date>.pt``. Raises ValueError (one line) where it cannot be made."""
    if controller.choice.single_image:
        raise ValueError("fine-tuning trains on a stack (a time-lapse or a volume), not on a single image")
    store = Path(controller.store.path).resolve()
    folder = store.parent / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {folder}: {err.strerror or err}") from None
    start = start_of(controller.model)
    size = controller.image_size
    date = (today or datetime.date.today()).isoformat()
    image = training_image(layer, controller.choice.axes, folder)
    return FineTunePlan(store, image, controller.choice.frame_axis, start,
                        folder / f"{model_label(controller.model)}-{date}.pt", steps, size, tuple(extra))


def write_job_script(plan: FineTunePlan, path: Path | None = None) -> Path:
    """A bash script with a SLURM header (one GPU) that runs the plan's command; ``path`` default:
    ``<out folder>/fine_tune.sh``."""
    path = path or plan.out.parent / SCRIPT_NAME
    log = plan.out.parent / "fine_tune-%j.log"
    return write_slurm_script(path, job_name="napari-sam2-fine-tune", log=log, command=plan.command(), cpus=4,
                              time="04:00:00", comments=[
        f"Fine-tunes SAM 2 on the label store {plan.store}.",
        "Submit with `sbatch fine_tune.sh`, or run `bash fine_tune.sh` on a machine with a GPU. Running it again",
        "after an interruption continues from the last save. Then load the checkpoint in napari with",
        f"Model: “local checkpoint file…”, Checkpoint: {plan.out}",
    ])


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


class FineTuneRun(QObject):
    """Runs a plan in a background worker: ``progress`` carries the loop's ``Progress`` (on the main thread),
    then ``finished`` (the checkpoint; ``stopped`` says whether Cancel ended it early) or ``failed`` (one line)."""

    started = Signal(str)  # what is trained, on what, from which step
    progress = Signal(object)
    finished = Signal(Path, bool)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks = TaskQueue(self)
        self._stop = threading.Event()
        self.plan: FineTunePlan | None = None

    @property
    def running(self) -> bool:
        return self.tasks.busy

    def start(self, plan: FineTunePlan, device: str = "cuda") -> None:
        self.plan = plan
        self._stop.clear()
        argv = plan.argv(device)
        self.tasks.submit(Task("fine-tune", lambda: self._train(argv), on_return=self._done,
                               on_error=lambda err: self.failed.emit(f"{type(err).__name__}: {err}")))

    def cancel(self) -> None:
        """Stop after the step under way; the run saves, and starting the same plan again continues it."""
        self._stop.set()

    def _train(self, argv: list[str]) -> tuple[Path, bool]:
        """In the worker: the ``train`` command's own setup, then the loop."""
        from napari_sam2.cli.errors import CliError
        from napari_sam2.cli.main import build_parser
        from napari_sam2.cli.train import build_trainer

        args = build_parser().parse_args(argv)
        try:
            trainer, description = build_trainer(args)
        except CliError as err:
            raise ValueError(str(err)) from None
        self.started.emit(description)
        state = trainer.run(self.progress.emit, should_stop=self._stop.is_set)
        return Path(args.out), state.step < args.steps

    def _done(self, result: tuple[Path, bool]) -> None:
        self.finished.emit(*result)
