"""``napari-sam2 train``: train or fine-tune SAM 2 on labelled stacks, resumable, writing Meta's checkpoint format."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from napari_sam2.cli.errors import CliError, Interrupted, UsageError
from napari_sam2.cli.progress import Progress, format_duration

TRAIN_HELP = """\
Train SAM 2 on labelled stacks (the data engine's retraining step): clips of 8 frames with up to 3 objects,
prompted the way Meta trains SAM 2 (a mask, a click or a box on 1-2 frames, 7 corrective clicks sampled from the
errors), focal + dice + IoU + object-score losses, AdamW with layer-wise learning-rate decay and a cosine schedule.
Writes CKPT in Meta's format ({"model": state_dict}), loadable with --checkpoint CKPT --model NAME. Running the same
command again after an interruption continues from the last save.
"""

TRAIN_EPILOG = """\
DATA: label stores written by napari-sam2 (with --image for their stack), Cell Tracking Challenge folders
(NN/ + NN_GT/SEG or TRA), OME-Zarr with labels/, an image stack and its label stack given as IMAGE:LABELS (TIFF,
zarr or .npz), 'synthetic' (generated fluorescent nuclei and phase-contrast cells), or open-data:DIR (the training
part of the openly licensed stacks in napari-sam2's shared data folder DIR: the starter model's real data).

examples:
  napari-sam2 train labels.zarr --image movie.tif --from sam2.1_hiera_tiny --out tuned.pt --steps 2000
  napari-sam2 train synthetic movie.tif:movie_labels.tif --from scratch --model starter --out mine.pt
"""

SCRATCH = "scratch"
FINE_TUNE_LR, FINE_TUNE_VISION_LR = 5e-6, 3e-6  # Meta's SAM 2.1 fine-tuning learning rates
SCRATCH_LR = 3e-4


def add_train_parser(commands, positive_int, image_size, device) -> None:
    p = commands.add_parser("train", help="train or fine-tune SAM 2 on labelled stacks (resumable)",
                            description=TRAIN_HELP, epilog=TRAIN_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA", help="labelled data (see below)")
    p.add_argument("--image", metavar="STACK", help="the image stack of label-store DATA")
    p.add_argument("--axis", metavar="t|z", help="axis clips run along (default: t, or z for a volume)")
    p.add_argument("--from", dest="start", default=SCRATCH, metavar="NAME|CKPT|scratch",
                   help="a model name (published or 'starter') to fine-tune, a checkpoint file, or scratch")
    p.add_argument("--model", metavar="NAME", help="architecture for --from scratch or a checkpoint (default starter)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write")
    p.add_argument("--steps", type=positive_int, default=1000, metavar="N", help="optimiser steps (default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=4, metavar="B", help="clips per step (default 4)")
    p.add_argument("--image-size", type=image_size, metavar="S", help="model input size (default: the model's)")
    p.add_argument("--crop-size", type=positive_int, default=256, metavar="N",
                   help="pixels cut from a frame before resizing to the input (default 256)")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default 5e-6 fine-tuning, 3e-4 scratch)")
    p.add_argument("--vision-lr", type=float, metavar="LR", help="image encoder learning rate (default 3e-6 / lr)")
    p.add_argument("--warmup", type=int, metavar="N", help="warm-up steps (default 0 fine-tuning, 5%% scratch)")
    p.add_argument("--synthetic", type=int, default=64, metavar="N",
                   help="synthetic stacks to generate when DATA includes 'synthetic' (default 64)")
    p.add_argument("--synthetic-size", type=int, default=256, metavar="PX", help="their frame size (default 256)")
    p.add_argument("--val-every", type=int, default=100, metavar="N", help="validation J&F every N steps (0: off)")
    p.add_argument("--save-every", type=positive_int, default=100, metavar="N", help="save every N steps")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="data-loading processes (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights-dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype of the written weights (float16 halves the file)")
    p.add_argument("--device", default="auto", type=device, metavar="auto|cpu|cuda|mps")
    p.add_argument("--quiet", "-q", action="store_true", help="errors only")


def _start_model(args):
    """(model, is_fine_tuning) for --from / --model / --image-size."""
    import torch

    from napari_sam2.model import ALL_MODEL_NAMES, STARTER_NAME, CheckpointError, build_sam2, fetch_checkpoint
    from napari_sam2.model.build import guess_model_name
    from napari_sam2.model.checkpoint import read_state_dict
    from napari_sam2.model.hub import CheckpointUnavailable

    def check(name: str) -> str:
        if name not in ALL_MODEL_NAMES:
            raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(ALL_MODEL_NAMES)}")
        return name

    try:
        if args.start == SCRATCH:
            torch.manual_seed(args.seed)
            return build_sam2(check(args.model or STARTER_NAME), image_size=args.image_size), False
        if args.start in ALL_MODEL_NAMES:
            if args.model and args.model != args.start:
                raise UsageError(f"--from {args.start} fixes the model; drop --model {args.model}")
            try:
                path = fetch_checkpoint(args.start)
            except CheckpointUnavailable as exc:
                raise CliError(f"no checkpoint for {args.start}: {exc}") from None
            return build_sam2(args.start, path, image_size=args.image_size), True
        path = Path(args.start)
        if not path.is_file():
            raise UsageError(f"--from {args.start}: neither a model name, 'scratch', nor an existing checkpoint file")
        name = args.model or guess_model_name(read_state_dict(path)) or STARTER_NAME
        return build_sam2(check(name), path, image_size=args.image_size), True
    except (CheckpointError, ValueError) as exc:
        if isinstance(exc, CliError):
            raise
        raise CliError(str(exc)) from None


OPEN_DATA_PREFIX = "open-data:"


def _synthetic_one(job: tuple[int, int, int]):
    import numpy as np

    from napari_sam2.train import synthetic_stack

    seed, index, size = job
    rng = np.random.default_rng([seed, index])
    kind = "nuclei" if index % 2 == 0 else "phase"
    dtype = np.uint16 if index % 3 else np.uint8
    return synthetic_stack(rng, kind=kind, num_frames=12, size=size, dtype=dtype)


def synthetic_stacks(count: int, size: int, seed: int, workers: int) -> list:
    """``count`` generated stacks (half fluorescent nuclei, half phase contrast; 8 and 16 bit), in parallel."""
    jobs = [(seed, i, size) for i in range(count)]
    if workers <= 1:
        return [_synthetic_one(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_synthetic_one, jobs, chunksize=4))


def _training_stacks(args):
    from napari_sam2.train import open_starter_data, open_training_data
    from napari_sam2.train.labeled_stack import TrainingDataError

    paths = [d for d in args.data if d != "synthetic" and not d.startswith(OPEN_DATA_PREFIX)]
    try:
        stacks = open_training_data(paths, image=args.image, axis=args.axis) if paths else []
        for entry in args.data:
            if entry.startswith(OPEN_DATA_PREFIX):
                stacks += open_starter_data(entry[len(OPEN_DATA_PREFIX):])
    except TrainingDataError as exc:
        raise CliError(str(exc)) from None
    real = len(stacks)
    if "synthetic" in args.data:
        stacks += synthetic_stacks(args.synthetic, args.synthetic_size, args.seed, args.workers)
    if not stacks:
        raise CliError("no training data: give label stores, CTC folders, IMAGE:LABELS pairs or 'synthetic'")
    # real and generated data are drawn equally often, whatever their numbers of stacks
    weights = [1.0 / max(1, real)] * real + [1.0 / max(1, len(stacks) - real)] * (len(stacks) - real)
    return stacks, weights


def build_trainer(args: argparse.Namespace):
    """``(trainer, description)`` for parsed ``train`` arguments: the model, data, settings and optimiser, resumed
    from an earlier save of the same run where there is one. Raises CliError / UsageError (one line)."""
    from napari_sam2.cli.weights import pick_device
    from napari_sam2.train import ClipSampler
    from napari_sam2.train.loop import Trainer, TrainSettings
    from napari_sam2.train.optim import OptimiserSettings

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out {out}: the folder {out.parent} does not exist")
    device = pick_device(args.device)
    model, fine_tuning = _start_model(args)
    stacks, weights = _training_stacks(args)
    lr = args.lr or (FINE_TUNE_LR if fine_tuning else SCRATCH_LR)
    vision_lr = args.vision_lr or (FINE_TUNE_VISION_LR if fine_tuning and args.lr is None else lr)
    warmup = args.warmup if args.warmup is not None else (0 if fine_tuning else max(1, args.steps // 20))
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, crop_size=args.crop_size, seed=args.seed,
                             val_every=args.val_every, save_every=args.save_every, workers=args.workers,
                             weights_dtype=args.weights_dtype, log_every=max(1, min(50, args.steps // 20)))
    optimiser = OptimiserSettings(lr=lr, vision_lr=vision_lr, total_steps=args.steps, warmup_steps=warmup)
    sampler = ClipSampler(stacks, clip_len=settings.clip_len, max_objects=settings.max_objects,
                          crop_size=settings.crop_size, seed=args.seed, weights=weights)
    validation = ClipSampler(stacks, clip_len=settings.clip_len, max_objects=settings.max_objects,
                             crop_size=settings.crop_size, seed=args.seed + 7919, weights=weights)
    trainer = Trainer(model, sampler, settings, optimiser, out, device=device, validation_sampler=validation)
    try:
        resumed = trainer.try_resume()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    frames = sum(len(s) for s in stacks)
    description = (f"training {model.config.name} at {model.image_size} px on {len(stacks)} stacks ({frames} frames), "
                   f"{'fine-tuning' if fine_tuning else 'from scratch'}, {args.steps} steps on {device}"
                   + (f"; resuming at step {trainer.run_state.step}" if resumed else ""))
    return trainer, description


def run_train(args: argparse.Namespace) -> int:
    import torch

    out = Path(args.out)
    trainer, description = build_trainer(args)
    model = trainer.model
    bar = Progress(trainer.settings.steps, done=trainer.run_state.step, label="train", enabled=not args.quiet,
                   unit="step")
    say = bar.message
    say(description)
    stop = {"signal": None}

    def request_stop(signum, _frame) -> None:
        stop["signal"] = signum

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def report(p) -> None:
        left = format_duration(p.seconds_per_step * (p.steps - p.step)) if p.seconds_per_step == p.seconds_per_step \
            else "?"
        parts = [f"step {p.step}/{p.steps}"]
        if p.loss:
            parts.append(f"loss {p.loss['total']:.3f} (mask {p.loss['mask']:.4f} dice {p.loss['dice']:.3f} "
                         f"iou {p.loss['iou']:.3f} score {p.loss['object_score']:.3f}), "
                         f"{p.seconds_per_step:.3f} s/step, left {left}")
        if p.validation is not None:
            parts.append(f"val J {p.validation.j:.3f} F {p.validation.f:.3f} J&F {p.validation.jf:.3f}")
        if p.saved:
            parts.append("saved")
        bar.advance(p.step - bar.done)
        say(" · ".join(parts))

    try:
        state = trainer.run(report, should_stop=lambda: stop["signal"] is not None)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}; the last save is intact") from None
    except FloatingPointError as exc:
        raise CliError(f"{exc}; lower --lr, or resume from the last save with the same command") from None
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        torch.set_grad_enabled(True)
    if stop["signal"] is not None:
        code = 130 if stop["signal"] == signal.SIGINT else 143
        raise Interrupted(f"stopped at step {state.step}; saved — run the same command again to continue", code)
    say(f"wrote {out} ({model.config.name}; load it with --model {model.config.name} --checkpoint {out})")
    return 0
