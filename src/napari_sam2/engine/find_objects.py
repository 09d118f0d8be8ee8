"""Automatic masklets: every object on a frame from a grid of point prompts, without clicks.

A thin layer over the session's cached image features, shaped like Meta's automatic mask generator
(``sam2/automatic_mask_generator.py``): a regular grid of single positive points, decoded in batches by the prompt
encoder and mask decoder with multimask output (three candidates per point) and no memory; candidates kept by
the decoder's predicted IoU, by their stability score (IoU of the mask thresholded at logit +1 and at −1) and by
an area range; duplicates removed by mask NMS. Differences, for cells: the grid's spacing follows the expected
object diameter (half a diameter between points) instead of a fixed 32 × 32; duplicates are judged on the masks,
not only their boxes; regions that the session's objects already cover on the frame are skipped (grid points
there are not decoded, candidates mostly inside them are dropped, the rest lose the covered pixels); the
survivors are made disjoint, best first (one that loses more than ``covered_fraction`` of its pixels to better ones
is a fragment of them and dropped). Optional crop layers: layer i cuts the frame into 2^i × 2^i crops that
overlap by one diameter, each encoded on its own and prompted with the same spacing in frame pixels; a candidate
touching a crop's inner border is dropped there (a whole crop elsewhere sees it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam2.model import FrameFeatures
from napari_sam2.model.mask_decoder import stability_score

if TYPE_CHECKING:
    from .session import Session

DEFAULT_DIAMETER_FRACTION = 1 / 24  # default object diameter: this fraction of the frame's longer side
MIN_DEFAULT_DIAMETER = 8.0
GRID_SPACING = 0.5  # grid points per object: a point every half diameter, so every object gets ≥ 2 × 2 points


DEFAULT_THRESHOLDS = (0.6, 0.75)  # (predicted IoU, stability) for Meta's models
MODEL_THRESHOLDS = {  # models whose IoU head predicts lower values for good masks
    "starter": (0.3, 0.6),  # its best nucleus masks on GOWT1 get predicted IoUs of 0.3–0.48 (docs/automatic.md)
}


def default_thresholds(model_name: str) -> tuple[float, float]:
    """(predicted IoU, stability) thresholds that suit model ``model_name`` when the settings give none."""
    return MODEL_THRESHOLDS.get(model_name, DEFAULT_THRESHOLDS)


@dataclass(frozen=True)
class FindSettings:
    """How :func:`find_masks` looks for objects.

    object_diameter: expected object diameter in frame pixels (None: 1/24 of the frame's longer side, at least
    8 px); points_per_side: grid points along the frame's longer side (None: one every half diameter);
    pred_iou_threshold / stability_threshold: keep candidates at or above these (stability at logit ±
    ``stability_offset``; None: the model's defaults, ``default_thresholds``); min_area / max_area: area range
    in frame pixels (None: a sixth of, and four times, the area of a disc of the diameter); nms_iou: a candidate
    whose mask overlaps a better one by more than this IoU is a duplicate; skip_covered: skip what the session's
    objects cover on the frame (a candidate with more than ``covered_fraction`` of its area covered is dropped);
    crop_layers: extra layers of crops (0: the whole frame only); points_per_batch: grid points per decoder call.
    """

    object_diameter: float | None = None
    points_per_side: int | None = None
    pred_iou_threshold: float | None = None
    stability_threshold: float | None = None
    stability_offset: float = 1.0
    min_area: int | None = None
    max_area: int | None = None
    nms_iou: float = 0.5
    skip_covered: bool = True
    covered_fraction: float = 0.5
    crop_layers: int = 0
    points_per_batch: int = 64

    def diameter(self, height: int, width: int) -> float:
        if self.object_diameter is not None:
            if self.object_diameter <= 0:
                raise ValueError(f"object_diameter must be positive, got {self.object_diameter}")
            return float(self.object_diameter)
        return max(MIN_DEFAULT_DIAMETER, max(height, width) * DEFAULT_DIAMETER_FRACTION)

    def area_range(self, height: int, width: int) -> tuple[int, int]:
        disc = math.pi * self.diameter(height, width) ** 2 / 4
        low = self.min_area if self.min_area is not None else max(4, int(disc / 6))
        high = self.max_area if self.max_area is not None else int(disc * 4)
        if low > high:
            raise ValueError(f"min_area {low} is larger than max_area {high}")
        return low, high

    def spacing(self, height: int, width: int) -> float:
        """Grid spacing in frame pixels."""
        if self.points_per_side is not None:
            if self.points_per_side < 1:
                raise ValueError(f"points_per_side must be at least 1, got {self.points_per_side}")
            return max(height, width) / self.points_per_side
        return max(1.0, self.diameter(height, width) * GRID_SPACING)


@dataclass
class Candidate:
    """One candidate mask: its box (y0, x0, y1, x1; end exclusive) in frame pixels, the (y1-y0, x1-x0) bool mask
    inside it, and its score (the decoder's predicted IoU)."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    score: float

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        y0, x0, y1, x1 = self.box
        out[y0:y1, x0:x1] = self.mask
        return out


def grid_points(y0: int, x0: int, y1: int, x1: int, spacing: float) -> np.ndarray:
    """(P, 2) (y, x) pixel centres of a regular grid over the region [y0, y1) × [x0, x1), ``spacing`` apart,
    centred in the region."""
    def axis(lo: int, hi: int) -> np.ndarray:
        n = max(1, int(round((hi - lo) / spacing)))
        step = (hi - lo) / n
        return lo + step * (np.arange(n) + 0.5) - 0.5

    ys, xs = axis(y0, y1), axis(x0, x1)
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)


def crop_boxes(height: int, width: int, layers: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The whole frame, then for each layer i ≥ 1 its 2^i × 2^i crops overlapping by ``overlap`` pixels."""
    boxes = [(0, 0, height, width)]
    for layer in range(1, layers + 1):
        n = 2**layer
        for i in range(n):
            for j in range(n):
                y0 = max(0, int(i * height / n - overlap / 2))
                y1 = min(height, int(math.ceil((i + 1) * height / n + overlap / 2)))
                x0 = max(0, int(j * width / n - overlap / 2))
                x1 = min(width, int(math.ceil((j + 1) * width / n + overlap / 2)))
                boxes.append((y0, x0, y1, x1))
    return boxes


def mask_iou(a: Candidate, b: Candidate) -> float:
    """IoU of two candidates' masks (0 when their boxes do not meet)."""
    y0, x0 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    y1, x1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if y1 <= y0 or x1 <= x0:
        return 0.0
    inter = np.count_nonzero(a.mask[y0 - a.box[0] : y1 - a.box[0], x0 - a.box[1] : x1 - a.box[1]]
                             & b.mask[y0 - b.box[0] : y1 - b.box[0], x0 - b.box[1] : x1 - b.box[1]])
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def mask_nms(candidates: list[Candidate], iou_threshold: float) -> list[Candidate]:
    """Greedy non-maximum suppression on masks: best score first, dropping any candidate whose mask IoU with a
    kept one exceeds ``iou_threshold``. Boxes only gate which pairs are compared."""
    kept: list[Candidate] = []
    boxes = np.zeros((0, 4), int)
    for cand in sorted(candidates, key=lambda c: -c.score):
        y0, x0, y1, x1 = cand.box
        meet = (boxes[:, 0] < y1) & (boxes[:, 2] > y0) & (boxes[:, 1] < x1) & (boxes[:, 3] > x0)
        if any(mask_iou(cand, kept[k]) > iou_threshold for k in np.flatnonzero(meet)):
            continue
        kept.append(cand)
        boxes = np.vstack([boxes, np.asarray(cand.box)[None]])
    return kept


def make_disjoint(
    candidates: list[Candidate], height: int, width: int, min_area: int, max_taken: float = 0.5
) -> list[np.ndarray]:
    """(H, W) masks that share no pixel: each pixel goes to the best-scoring candidate that has it; a candidate that
    lost more than ``max_taken`` of its pixels to better ones (a fragment of one of them) or kept fewer than
    ``min_area`` is dropped. Best score first."""
    taken = np.zeros((height, width), bool)
    out = []
    for cand in sorted(candidates, key=lambda c: -c.score):
        mask = cand.full(height, width) & ~taken
        kept = int(mask.sum())
        if kept >= min_area and kept >= (1 - max_taken) * cand.area:
            taken |= mask
            out.append(mask)
    return out


def _to_candidate(mask: np.ndarray, score: float, offset: tuple[int, int]) -> Candidate | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Candidate((int(y0 + offset[0]), int(x0 + offset[1]), int(y1 + offset[0]), int(x1 + offset[1])),
                     mask[y0:y1, x0:x1].copy(), float(score))


def _crop_features(session: Session, frame: int, box: tuple[int, int, int, int]) -> FrameFeatures:
    """Image features of the whole frame (cached) or of a crop of it (encoded now, not cached)."""
    if box == (0, 0, session.height, session.width):
        return session.features.get(frame)
    y0, x0, y1, x1 = box
    loaded = session.preparer.load(frame)[y0:y1, x0:x1][None].to(session.device)
    return session.model.encode_image(session.preparer.finish(loaded))


def _decode_region(
    session: Session, frame: int, box: tuple[int, int, int, int], points: np.ndarray, settings: FindSettings,
    area_range: tuple[int, int], covered: np.ndarray | None,
) -> Iterator[Candidate]:
    """Candidates from the grid ``points`` (P, 2) (y, x frame pixels) inside the region ``box``."""
    model, size = session.model, session.model.image_size
    y0, x0, y1, x1 = box
    h, w = y1 - y0, x1 - x0
    whole = box == (0, 0, session.height, session.width)
    features = _crop_features(session, frame, box)
    pix_feat = model.condition_on_memory(features, (), (), num_frames=session.num_frames)  # no memory
    default_iou, default_stability = default_thresholds(model.config.name)
    min_iou = default_iou if settings.pred_iou_threshold is None else settings.pred_iou_threshold
    min_stability = default_stability if settings.stability_threshold is None else settings.stability_threshold
    scale = torch.tensor([size / w, size / h], device=session.device)
    for begin in range(0, len(points), settings.points_per_batch):
        chunk = points[begin : begin + settings.points_per_batch]
        b = len(chunk)
        xy = torch.tensor((chunk - [y0, x0])[:, ::-1].copy(), dtype=torch.float32, device=session.device)
        coords = ((xy + 0.5) * scale)[:, None]  # pixel centres, as the reference's grid in model-input space
        labels = torch.ones(b, 1, dtype=torch.int32, device=session.device)
        heads = model.run_heads(pix_feat.expand(b, -1, -1, -1), tuple(x.expand(b, -1, -1, -1) for x in
                                features.high_res), point_coords=coords, point_labels=labels, multimask_output=True)
        logits = heads.low_res_multimasks.float().flatten(0, 1)  # (B·3, s, s)
        ious = heads.ious.float().flatten()
        stable = stability_score(logits, settings.stability_offset)
        keep = (ious >= min_iou) & (stable >= min_stability)
        keep &= (logits > 0).flatten(1).any(1)
        index = torch.nonzero(keep).flatten()
        for start in range(0, len(index), 16):  # upsample a few at a time: full-size masks are large
            part = index[start : start + 16]
            masks = F.interpolate(logits[part][:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0] > 0
            for mask, score in zip(masks.cpu().numpy(), ious[part].cpu().numpy(), strict=True):
                if not whole and _touches_inner_border(mask, box, session.height, session.width):
                    continue
                if covered is not None:
                    region = covered[y0:y1, x0:x1]
                    inside = np.count_nonzero(mask & region)
                    if inside > settings.covered_fraction * np.count_nonzero(mask):
                        continue
                    mask = mask & ~region
                area = int(mask.sum())
                if not area_range[0] <= area <= area_range[1]:
                    continue
                cand = _to_candidate(mask, score, (y0, x0))
                if cand is not None:
                    yield cand


def _touches_inner_border(mask: np.ndarray, box: tuple[int, int, int, int], height: int, width: int) -> bool:
    y0, x0, y1, x1 = box
    return bool((y0 > 0 and mask[0].any()) or (x0 > 0 and mask[:, 0].any())
                or (y1 < height and mask[-1].any()) or (x1 < width and mask[:, -1].any()))


def find_candidates(
    session: Session, frame: int, settings: FindSettings, covered: np.ndarray | None
) -> list[Candidate]:
    """The candidates of ``frame`` after duplicate removal (``mask_nms``), best first, before they are made
    disjoint; the thresholds and the area range use ``area_range`` of the session's frame size. Runs on the calling
    thread (``find_masks`` runs it on the session's compute thread)."""
    height, width = session.height, session.width
    area_range = settings.area_range(height, width)
    spacing = settings.spacing(height, width)
    overlap = settings.diameter(height, width)
    candidates: list[Candidate] = []
    for box in crop_boxes(height, width, settings.crop_layers, overlap):
        points = grid_points(*box, spacing)
        if covered is not None:
            yx = np.clip(np.rint(points).astype(int), 0, [height - 1, width - 1])
            points = points[~covered[yx[:, 0], yx[:, 1]]]
        if len(points):
            candidates += _decode_region(session, frame, box, points, settings, area_range, covered)
    return mask_nms(candidates, settings.nms_iou)


def find_masks(
    session: Session, frame: int, settings: FindSettings | None = None, *, covered: np.ndarray | None = None
) -> list[np.ndarray]:
    """Masks (H, W) bool of the objects found on ``frame`` (see the module docstring), best first, disjoint.

    covered: (H, W) bool pixels to skip (default: what the session's objects cover there, with
    ``settings.skip_covered``). Runs on the session's compute thread; uses the frame's cached features.
    """
    settings = settings or FindSettings()
    session._check_frame(frame)
    height, width = session.height, session.width
    if covered is None and settings.skip_covered and session.obj_ids:
        covered = session.result(frame).masks.any(0)
    min_area = settings.area_range(height, width)[0]

    def work() -> list[np.ndarray]:
        kept = find_candidates(session, frame, settings, covered)
        return make_disjoint(kept, height, width, min_area, settings.covered_fraction)

    return session.compute.run(work)
