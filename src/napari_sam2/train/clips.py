"""Training clips: a few consecutive frames of a labelled stack, cropped, with the masks of up to a few objects.

``ClipSampler.clip(index)`` is a pure function of ``(seed, index)``: resuming a run needs only its step counter, and
data-loading workers compute clips by index. A clip is: a stack (chosen by weight), ``clip_len`` consecutive frames
starting on a frame where a trainable object is present, run forwards or backwards (a stack shorter than a clip
is run back and forth), a crop (random position, side ``crop_size`` × a random zoom in [0.6, 1.6], clamped to the
frame, then resized to ``crop_size`` × ``crop_size`` so that clips batch together), and up to ``max_objects``
objects present on the clip's first frame (chosen at random, favouring those present on most of its frames).
Intensities are mapped to [0, 1] as inference maps them (``engine.frames``): uint8 ÷ 255, other dtypes by the
stack's robust percentiles (0.5, 99.5), computed once per stack; RGB becomes grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam2.engine.frames import IntensityRange, estimate_intensity_range
from napari_sam2.train.augment import augment_clip
from napari_sam2.train.labeled_stack import LabeledStack

__all__ = ["Clip", "ClipSampler", "augment_clip", "collate_clips"]

ZOOM_RANGE = (0.6, 1.6)
MIN_OBJECT_PIXELS = 12  # an object counts as on the crop's first frame from this many pixels (or all of it)
CROP_TRIES = 8
PRESENCE_BIAS = 0.5  # object weight = PRESENCE_BIAS + fraction of the clip's frames it is on
_UINT64 = (1 << 64) - 1  # seeds and indices as numpy's SeedSequence takes them (negative ones wrap)


@dataclass
class Clip:
    """``frames`` (T, H, W) float32 in [0, 1]; ``masks`` (T, K, H, W) bool, empty where object k is absent;
    ``obj_ids`` the K object ids; ``source`` says which stack and frames it came from."""

    frames: torch.Tensor
    masks: torch.Tensor
    obj_ids: tuple[int, ...]
    source: str = ""


def _to_unit(frames: np.ndarray, intensity: IntensityRange | None) -> np.ndarray:
    """Frames (T, H, W) or (T, H, W, 3) → float32 grey in [0, 1] (uint8 ÷ 255, else by ``intensity``)."""
    if frames.ndim == 4:
        frames = frames.astype(np.float32).mean(axis=-1)
        return frames / np.float32(255.0)
    if intensity is None:
        return frames.astype(np.float32) / np.float32(255.0)
    return intensity.apply(frames)


def _window(first: int, num_frames: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` frame indices from ``first``, forwards or backwards (at random where both fit); a stack too short
    for either is run back and forth."""
    forward_fits, backward_fits = first + length <= num_frames, first - length + 1 >= 0
    if forward_fits and backward_fits:
        step = 1 if rng.random() < 0.5 else -1
    elif forward_fits or backward_fits:
        step = 1 if forward_fits else -1
    else:
        step = 1 if rng.random() < 0.5 else -1
    raw = first + step * np.arange(length)
    if num_frames == 1:
        return np.zeros(length, int)
    period = 2 * (num_frames - 1)
    folded = np.mod(raw, period)
    return np.where(folded >= num_frames, period - folded, folded)


def _presence(labels: np.ndarray, ids: np.ndarray, max_label: int) -> np.ndarray:
    """(T, len(ids)) pixel counts of each id on each frame of ``labels`` (T, H, W)."""
    if max_label <= 1 << 20:
        return np.stack([np.bincount(frame.ravel(), minlength=max_label + 1)[ids] for frame in labels])
    return np.array([[np.count_nonzero(frame == i) for i in ids] for frame in labels]).reshape(len(labels), len(ids))


def _object_pixels(labels2d: np.ndarray, max_label: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, pixel counts)`` of the trainable objects on a frame (or part of one), ids sorted."""
    if max_label <= 1 << 20:
        counts = np.bincount(labels2d.ravel(), minlength=max_label + 1)
        counts[0] = 0
        ids = np.flatnonzero(counts)
        counts = counts[ids]
    else:
        ids, counts = np.unique(labels2d[labels2d > 0], return_counts=True)
    if allowed is not None:
        keep = np.isin(ids, allowed)
        ids, counts = ids[keep], counts[keep]
    return ids, counts


class ClipSampler:
    """Clips of ``clip_len`` frames with up to ``max_objects`` objects from ``stacks`` (see the module docstring).

    ``crop_size``: the side of the clips (None: whole frames at their own size, no zoom). ``weights``: how often
    each stack is picked, relative (default: equally; stacks without a trainable object are never picked).
    """

    def __init__(
        self,
        stacks: Sequence[LabeledStack],
        *,
        clip_len: int = 8,
        max_objects: int = 3,
        crop_size: int | None = None,
        seed: int = 0,
        weights: Sequence[float] | None = None,
    ) -> None:
        if clip_len < 1 or max_objects < 1 or (crop_size is not None and crop_size < 8):
            raise ValueError(f"need clip_len ≥ 1, max_objects ≥ 1, crop_size ≥ 8; got {clip_len}, {max_objects}, "
                             f"{crop_size}")
        self.stacks = list(stacks)
        if not self.stacks:
            raise ValueError("no stacks to cut clips from")
        self.clip_len, self.max_objects, self.crop_size, self.seed = clip_len, max_objects, crop_size, int(seed)
        if weights is not None and len(weights) != len(self.stacks):
            raise ValueError(f"{len(weights)} weights for {len(self.stacks)} stacks")
        self._intensity = [None if s.frames.dtype == np.uint8 else estimate_intensity_range(s.frames)
                           for s in self.stacks]
        self._max_label = [int(s.labels.max(initial=0)) for s in self.stacks]
        self._start_frames = [self._frames_with_objects(s) for s in self.stacks]
        p = np.asarray(weights if weights is not None else np.ones(len(self.stacks)), dtype=np.float64)
        if (p < 0).any() or not np.isfinite(p).all():
            raise ValueError(f"stack weights must be finite and ≥ 0, got {p.tolist()}")
        p = p * np.array([len(f) > 0 for f in self._start_frames], dtype=np.float64)
        if p.sum() <= 0:
            raise ValueError("no stack (of non-zero weight) has a trainable object on any frame")
        self._p = p / p.sum()

    @staticmethod
    def _frames_with_objects(stack: LabeledStack) -> np.ndarray:
        """Frames on which at least one trainable object is present."""
        labels = stack.labels
        if stack.object_ids is None:
            present = labels.reshape(len(labels), -1).max(axis=1) > 0
        else:
            allowed = np.asarray(stack.object_ids)
            present = np.array([np.isin(frame, allowed).any() for frame in labels])
        return np.flatnonzero(present)

    def __getitem__(self, index: int) -> Clip:
        return self.clip(index)

    def clip(self, index: int) -> Clip:
        """Clip number ``index`` (a pure function of the sampler's seed and ``index``)."""
        rng = np.random.default_rng([self.seed & _UINT64, int(index) & _UINT64])
        k = int(rng.choice(len(self.stacks), p=self._p))
        stack = self.stacks[k]
        first = int(rng.choice(self._start_frames[k]))
        order = _window(first, len(stack), self.clip_len, rng)
        box, candidates = self._crop(stack, k, order, rng)
        (y0, y1), (x0, x1) = box
        labels = stack.labels[order, y0:y1, x0:x1]
        counts = _presence(labels, candidates, self._max_label[k])
        weight = PRESENCE_BIAS + (counts > 0).mean(axis=0)
        chosen = rng.choice(len(candidates), size=min(self.max_objects, len(candidates)), replace=False,
                            p=weight / weight.sum())
        obj_ids = tuple(int(candidates[c]) for c in chosen)
        frames = torch.from_numpy(np.ascontiguousarray(_to_unit(stack.frames[order, y0:y1, x0:x1], self._intensity[k])))
        masks = torch.from_numpy(labels[:, None] == np.asarray(obj_ids)[None, :, None, None])
        if self.crop_size is not None:
            frames, masks = _resize(frames, masks, self.crop_size)
        source = f"{stack.name} frames {order.tolist()} y {y0}:{y1} x {x0}:{x1}"
        return Clip(frames.contiguous(), masks.contiguous(), obj_ids, source)

    def _crop(self, stack: LabeledStack, k: int, order: np.ndarray, rng: np.random.Generator):
        """``(((y0, y1), (x0, x1)), candidate ids)``: a crop whose first frame holds at least one trainable object
        (with ``MIN_OBJECT_PIXELS`` pixels, or all of it if it is smaller)."""
        height, width = stack.shape2d
        first_labels = stack.labels[order[0]]
        allowed = None if stack.object_ids is None else np.asarray(stack.object_ids)
        ids, totals = _object_pixels(first_labels, self._max_label[k], allowed)
        if self.crop_size is None:
            return ((0, height), (0, width)), ids
        side = int(round(self.crop_size * rng.uniform(*ZOOM_RANGE)))
        ch, cw = min(side, height), min(side, width)
        for _ in range(CROP_TRIES):
            y0, x0 = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
            inside, counts = _object_pixels(first_labels[y0 : y0 + ch, x0 : x0 + cw], self._max_label[k], allowed)
            enough = counts >= np.minimum(MIN_OBJECT_PIXELS, totals[np.searchsorted(ids, inside)])
            if enough.any():
                return ((y0, y0 + ch), (x0, x0 + cw)), inside[enough]
        anchor = int(rng.choice(ids))  # no luck at random: a crop around a pixel of one object
        ys, xs = np.nonzero(first_labels == anchor)
        pick = int(rng.integers(len(ys)))
        y0 = int(np.clip(ys[pick] - rng.integers(0, ch), 0, height - ch))
        x0 = int(np.clip(xs[pick] - rng.integers(0, cw), 0, width - cw))
        inside, _ = _object_pixels(first_labels[y0 : y0 + ch, x0 : x0 + cw], self._max_label[k], allowed)
        return ((y0, y0 + ch), (x0, x0 + cw)), inside

    def collate(self, clips: Sequence[Clip]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`collate_clips` with objects padded to this sampler's ``max_objects``."""
        return collate_clips(clips, max_objects=self.max_objects)


def _resize(frames: torch.Tensor, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip's frames (T, h, w) and masks (T, K, h, w) resized to (size, size): antialiased bilinear, masks
    thresholded at one half."""
    if frames.shape[-2:] == (size, size):
        return frames, masks
    t, k = masks.shape[:2]
    frames = F.interpolate(frames[:, None], size=(size, size), mode="bilinear", align_corners=False,
                           antialias=True)[:, 0].clamp_(0, 1)
    if k:
        scaled = F.interpolate(masks.reshape(t * k, 1, *masks.shape[-2:]).float(), size=(size, size),
                               mode="bilinear", align_corners=False, antialias=True)
        masks = (scaled >= 0.5).reshape(t, k, size, size)
    else:
        masks = torch.zeros((t, 0, size, size), dtype=torch.bool)
    return frames, masks


def collate_clips(
    clips: Sequence[Clip], *, max_objects: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips of the same length → ``frames`` (B, T, H, W) float32, ``masks`` (B, T, K, H, W) bool and ``valid``
    (B, K) bool. Frames smaller than the batch's largest are padded with zeros (bottom, right); objects are padded
    to K = max(``max_objects``, most objects of a clip), the padding marked invalid with empty masks."""
    if not clips:
        raise ValueError("no clips to collate")
    lengths = {c.frames.shape[0] for c in clips}
    if len(lengths) != 1:
        raise ValueError(f"clips of different lengths {sorted(lengths)} cannot be batched")
    (t,) = lengths
    h = max(c.frames.shape[1] for c in clips)
    w = max(c.frames.shape[2] for c in clips)
    k = max([max_objects or 0, *(len(c.obj_ids) for c in clips)])
    frames = torch.zeros((len(clips), t, h, w), dtype=torch.float32)
    masks = torch.zeros((len(clips), t, k, h, w), dtype=torch.bool)
    valid = torch.zeros((len(clips), k), dtype=torch.bool)
    for b, c in enumerate(clips):
        ch, cw, ck = c.frames.shape[1], c.frames.shape[2], len(c.obj_ids)
        frames[b, :, :ch, :cw] = c.frames
        masks[b, :, :ck, :ch, :cw] = c.masks
        valid[b, :ck] = True
    return frames, masks, valid
