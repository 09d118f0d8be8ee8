"""The training loop: clips → simulated interaction → losses → AdamW, resumable exactly, with validation J&F.

Everything random in a step is derived from (seed, step): the clips (``ClipSampler.clip`` is a pure function of its
index), their augmentation and the interaction. So a run's whole state is the model, the optimiser, the scheduler and
the step counter, saved atomically next to the output checkpoint every ``save_every`` steps; running the same
command again continues from there and gives the same weights as an uninterrupted run (bit-exact on the CPU).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam2.model import SAM2Model

from .augment import grey_to_model_input
from .clips import ClipSampler, augment_clip, collate_clips
from .forward import SimulatedUser, forward_clips
from .interaction import InteractionRecipe, sample_schedule
from .losses import LossWeights, StepLoss, step_loss
from .optim import OptimiserSettings, make_optimiser
from .validation import Scores, validate

STATE_SUFFIX = ".train-state.pt"


@dataclass(frozen=True)
class TrainSettings:
    """steps: optimiser steps; batch_size: clips per step; crop_size: native pixels cut from a frame before the
    resize to the model's input; val_every / save_every / log_every: in steps (0: never)."""

    steps: int
    batch_size: int = 4
    clip_len: int = 8
    max_objects: int = 3
    crop_size: int = 256
    seed: int = 0
    log_every: int = 10
    val_every: int = 100
    save_every: int = 100
    workers: int = 0
    weights_dtype: str = "float32"  # of the written checkpoint: float32, float16 or bfloat16


@dataclass
class Progress:
    """What the loop reports: after every logged step, validation and save."""

    step: int
    steps: int
    loss: dict[str, float]
    seconds_per_step: float
    validation: Scores | None = None
    saved: bool = False


@dataclass
class RunState:
    """What a resume needs besides the model and optimiser: the step and the history of losses and scores."""

    step: int = 0
    history: list[dict] = field(default_factory=list)


def state_path_for(out: Path) -> Path:
    return out.with_name(out.name + STATE_SUFFIX)


def to_model_input(frames: torch.Tensor, masks: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips without augmentation: frames (B, T, H, W) in [0, 1], masks (B, T, K, H, W) → images (B, T, 3, S, S)
    normalised as the session normalises, masks (B, T, K, S, S) bool."""
    b, t, h, w = frames.shape
    size = (image_size, image_size)
    x = frames.float()
    if (h, w) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    images = grey_to_model_input(x)
    m = masks.reshape(b * t, -1, h, w).float()
    if (h, w) != size:
        m = F.interpolate(m, size=size, mode="nearest")
    return images, m.reshape(b, t, -1, *size) > 0.5


def write_checkpoint(model: SAM2Model, path: Path, dtype: str = "float32") -> None:
    """Meta's checkpoint format, ``{"model": state_dict}``, written atomically (loads strictly into build_sam2)."""
    target = getattr(torch, dtype)
    state = {k: (v.detach().to("cpu", target) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    _atomic_save({"model": state}, path)


def _atomic_save(payload, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        try:
            torch.save(payload, tmp)
        except RuntimeError as err:  # torch reports a full disk or a file-size limit as RuntimeError
            raise OSError(f"{tmp}: {str(err).splitlines()[0]}") from err
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Trainer:
    """Trains ``model`` on clips of ``sampler`` and writes ``out`` (Meta's format) plus a resume state beside it."""

    def __init__(
        self,
        model: SAM2Model,
        sampler: ClipSampler,
        settings: TrainSettings,
        optimiser: OptimiserSettings,
        out: str | Path,
        *,
        device: torch.device,
        validation_sampler: ClipSampler | None = None,
        validation_clips: int = 8,
        recipe: InteractionRecipe | None = None,
        loss_weights: LossWeights | None = None,
        precision: str = "auto",
    ) -> None:
        self.model = model.to(device)
        self.sampler = sampler
        self.settings = settings
        self.optimiser_settings = optimiser
        self.out = Path(out)
        self.state_path = state_path_for(self.out)
        self.device = device
        self.recipe = recipe or InteractionRecipe()
        self.loss_weights = loss_weights or LossWeights()
        use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.optimiser, self.scheduler = make_optimiser(self.model, optimiser)
        self.run_state = RunState()
        self.validation_batch = None
        if validation_sampler is not None and validation_clips > 0 and settings.val_every > 0:
            clips = [validation_sampler.clip(i) for i in range(validation_clips)]
            frames, masks, valid = collate_clips(clips)
            images, masks = to_model_input(frames, masks, model.image_size)
            self.validation_batch = (images, masks, valid)

    # -- resume --------------------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """What must not change between a run and its resume."""
        return {"settings": asdict(self.settings) | {"workers": None}, "optimiser": asdict(self.optimiser_settings),
                "model": self.model.config.name, "image_size": self.model.image_size}

    def try_resume(self) -> bool:
        """Load the saved state if there is one for this very run; False if starting afresh."""
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint():
            raise ValueError(f"{self.state_path} was saved by a run with other settings; delete it to start afresh "
                             f"or write to another --out")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.run_state = RunState(**state["run"])
        return True

    def save(self) -> None:
        """Write the checkpoint and the resume state (each atomically; the checkpoint first)."""
        write_checkpoint(self.model, self.out, self.settings.weights_dtype)
        _atomic_save({"fingerprint": self.fingerprint(), "model": self.model.state_dict(),
                      "optimiser": self.optimiser.state_dict(), "scheduler": self.scheduler.state_dict(),
                      "run": asdict(self.run_state)}, self.state_path)

    # -- one step ------------------------------------------------------------------------------------------
    def _batch(self, step: int):
        b = self.settings.batch_size
        return collate_clips([self.sampler.clip(step * b + i) for i in range(b)])

    def train_step(self, step: int, batch) -> StepLoss:
        """One optimiser step on a collated batch (frames, masks, valid) drawn for ``step``."""
        frames, masks, valid = (x.to(self.device, non_blocking=True) for x in batch)
        generator = torch.Generator(self.device).manual_seed(self.settings.seed * 1_000_003 + step)
        images, masks = augment_clip(frames, masks, generator=generator, image_size=self.model.image_size)
        schedule = sample_schedule(images.shape[1], np.random.default_rng([self.settings.seed, step]), self.recipe)
        user = SimulatedUser(schedule, generator, self.recipe)
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            results = forward_clips(self.model, images, masks, schedule, user)
            total = self._loss(results, masks, valid)
        self.optimiser.zero_grad(set_to_none=True)
        objective = total.total(self.loss_weights)
        if objective.requires_grad:  # False when every frame of the clip was given as a mask: nothing to learn
            objective.backward()
            if self.optimiser_settings.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optimiser_settings.clip_grad_norm)
            self.optimiser.step()
        self.scheduler.step()
        return total

    def _loss(self, results, masks: torch.Tensor, valid: torch.Tensor) -> StepLoss:
        gt = masks.permute(1, 0, 2, 3, 4).flatten(1, 2)  # (T, N, S, S)
        flat_valid = valid.flatten()
        num_objects = float(flat_valid.sum())
        total = None
        for frame in results:
            for heads in frame.steps:
                loss = step_loss(heads.high_res_multimasks, heads.ious, heads.object_score_logits, gt[frame.frame],
                                 flat_valid, num_objects, self.loss_weights)
                total = loss if total is None else total + loss
        if total is None:
            zero = masks.new_zeros((), dtype=torch.float32)
            total = StepLoss(zero, zero, zero, zero)
        return total

    def run_validation(self) -> Scores | None:
        if self.validation_batch is None:
            return None
        self.model.eval()
        images, masks, valid = (x.to(self.device) for x in self.validation_batch)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            return validate(self.model, images, masks, valid)

    # -- the loop ------------------------------------------------------------------------------------------
    def _batches(self, start: int):
        if self.settings.workers <= 0:
            for step in range(start, self.settings.steps):
                yield step, self._batch(step)
            return
        b = self.settings.batch_size
        index = [[step * b + i for i in range(b)] for step in range(start, self.settings.steps)]
        loader = torch.utils.data.DataLoader(_ClipsByIndex(self.sampler), batch_sampler=index,
                                             num_workers=self.settings.workers, collate_fn=collate_clips,
                                             pin_memory=self.device.type == "cuda", prefetch_factor=4,
                                             persistent_workers=False, worker_init_fn=_ignore_stop_signals)
        yield from zip(range(start, self.settings.steps), loader, strict=False)

    def run(self, on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunState:
        """Train from the current step to ``settings.steps``; saves on the way, on stop requests and at the end."""
        s = self.settings
        sums: dict[str, float] = {}
        count, started = 0, time.perf_counter()
        step = self.run_state.step
        for step, batch in self._batches(self.run_state.step):
            loss = self.train_step(step, batch)
            terms = {"total": loss.total(self.loss_weights), "mask": loss.mask, "dice": loss.dice, "iou": loss.iou,
                     "object_score": loss.object_score}
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
            self.run_state.step = step + 1
            done = step + 1
            report = None
            if s.log_every and (done % s.log_every == 0 or done == s.steps):
                report = Progress(done, s.steps, {k: v / count for k, v in sums.items()},
                                  (time.perf_counter() - started) / count)
                if not all(math.isfinite(v) for v in report.loss.values()):
                    raise FloatingPointError(f"the loss is not finite at step {done}: {report.loss}")
                self.run_state.history.append({"step": done, **report.loss})
                sums, count, started = {}, 0, time.perf_counter()
            if s.val_every and (done % s.val_every == 0 or done == s.steps):
                scores = self.run_validation()
                if scores is not None:
                    report = report or Progress(done, s.steps, {}, float("nan"))
                    report.validation = scores
                    self.run_state.history.append({"step": done, "val_j": scores.j, "val_f": scores.f})
            stop = should_stop is not None and should_stop()
            if (s.save_every and done % s.save_every == 0) or done == s.steps or stop:
                self.save()
                report = report or Progress(done, s.steps, {}, float("nan"))
                report.saved = True
            if report is not None and on_progress is not None:
                on_progress(report)
            if stop:
                break
        if self.run_state.step >= s.steps and not self.out.is_file():
            self.save()
        return self.run_state


def _ignore_stop_signals(_worker: int) -> None:
    """Data workers leave Ctrl-C and SIGTERM to the main process, which stops at a step's end and saves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _ClipsByIndex(torch.utils.data.Dataset):
    def __init__(self, sampler: ClipSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, index: int):
        return self.sampler.clip(index)
