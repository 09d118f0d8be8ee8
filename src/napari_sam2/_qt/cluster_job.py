""""Send to cluster": the session's prompts applied to many stacks, as a ``napari-sam2 batch`` command.

:func:`plan_batch` saves the session's prompts as a prompt file and makes the command (the stacks in the image's
folder, one label store each); :func:`write_batch_script` writes it into a SLURM job script for a GPU node. Both go
to ``<store folder>/cluster/``. Importing this module does not import torch.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_sam2._qt.fine_tune import start_of, training_image
from napari_sam2._qt.job_script import write_slurm_script
from napari_sam2._qt.layer_stack import layer_file
from napari_sam2.io.prompt_file import prompt_set_from_records, save_prompts

FOLDER = "cluster"
SCRIPT_NAME = "batch.sh"
PROG = "napari-sam2"


@dataclass(frozen=True)
class BatchPlan:
    """``napari-sam2 batch INPUT --prompts PROMPTS --out-dir OUT_DIR --model M [--checkpoint C] --image-size S``."""

    inputs: Path
    prompts: Path
    out_dir: Path
    model: str
    checkpoint: Path | None
    image_size: int | None

    def argv(self) -> list[str]:
        args = ["batch", str(self.inputs), "--prompts", str(self.prompts), "--out-dir", str(self.out_dir),
                "--model", self.model]
        if self.checkpoint is not None:
            args += ["--checkpoint", str(self.checkpoint)]
        if self.image_size is not None:
            args += ["--image-size", str(self.image_size)]
        return args

    def command(self) -> str:
        return shlex.join([PROG, *self.argv()])


def _model(controller: Any) -> tuple[str, Path | None]:
    """(``--model`` name, ``--checkpoint`` file or None) of the session's model."""
    start = start_of(controller.model)  # ValueError for a model built in memory
    session = controller.session
    if controller.model.checkpoint is None:
        return start, None
    name = session.model.config.name if session is not None else None
    if name is None:
        raise ValueError("wait until the model is loaded: its architecture names the --model of the command")
    return name, Path(start)


def plan_batch(controller: Any, layer: Any) -> BatchPlan:
    """Write the session's prompts to ``<store folder>/cluster/<store>-prompts.json`` and plan the command over the
    stacks in the image's folder (an image without a file: its array, written there as zarr). Raises ValueError
    (one line) where it cannot be made."""
    if controller.choice.single_image:
        raise ValueError("a batch segments stacks (time-lapses or volumes), not a single image")
    records = controller.view.prompts()
    if not records:
        raise ValueError("prompt at least one object first: the batch applies this session's prompts to every stack")
    store = Path(controller.store.path).resolve()
    folder = store.parent / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {folder}: {err.strerror or err}") from None
    model, checkpoint = _model(controller)
    choice = controller.choice
    names = {i: info.name for i, info in controller.store.objects.items() if info.name}
    prompts = prompt_set_from_records(records, names=names, axis=choice.frame_axis, position=choice.position or None,
                                      channel=choice.channel)
    stem = store.name.removesuffix(".zarr").removesuffix(".sam2")
    path = save_prompts(folder / f"{stem}-prompts.json", prompts)
    image = layer_file(layer)
    inputs = image.resolve().parent if image is not None and image.exists() else \
        training_image(layer, choice.axes, folder)
    size = controller.image_size
    return BatchPlan(inputs, path.resolve(), (folder / "labels").resolve(), model, checkpoint, size)


def write_batch_script(plan: BatchPlan, path: Path | None = None) -> Path:
    """A bash script with a SLURM header (one node, one GPU) that runs the plan's command; ``path`` default:
    ``<prompts folder>/batch.sh``."""
    path = path or plan.prompts.parent / SCRIPT_NAME
    log = plan.prompts.parent / "batch-%j.log"
    return write_slurm_script(path, job_name="napari-sam2-batch", log=log, command=plan.command(), cpus=8,
                              time="08:00:00", comments=[
        f"Segments every stack in {plan.inputs} with the prompts in {plan.prompts.name}, one label store per",
        f"stack in {plan.out_dir} (and batch_summary.csv there). Submit with `sbatch {path.name}`; ask for more",
        "GPUs (--gres=gpu:4: one worker each), or spread the stacks over many SLURM jobs with",
        "--cluster slurm --cluster-config slurm.yaml (see docs/cli.md).",
        "Running it again continues the unfinished stacks.",
    ])
