"""Training stacks from Cell Tracking Challenge folders: ``NN/tTTT.tif`` with ``NN_GT/SEG/man_segTTT.tif`` or
``NN_GT/TRA/man_trackTTT.tif`` (silver truth ``NN_ST/SEG`` too).

Per sequence the ground truth used is, in this order: full-mask segmentation on every frame (gold SEG, then silver
ST SEG), the tracking markers (TRA, whose ids are track ids), else the frames that have SEG. Only frames with ground
truth are used, as runs of consecutive frames. SEG ids are not promised to be linked over time, so SEG frames are
linked by overlap. 3D sequences (volumes per time point) give one stack per time point along z, whose ids are
those of the volume.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tifffile

from napari_sam2.io.lzw import ensure_lzw_decoder
from napari_sam2.train.labeled_stack import LabeledStack, TrainingDataError, contiguous_runs, link_by_overlap

_IMAGE = re.compile(r"t(\d+)\.tiff?$")
_SEG = re.compile(r"man_seg(\d+)\.tiff?$")
_TRA = re.compile(r"man_track(\d+)\.tiff?$")
_SEQUENCE = re.compile(r"\d+$")


def _numbered(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    """``{frame index: file}`` of the files in ``folder`` whose name matches ``pattern``."""
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): p for p in folder.iterdir() if (m := pattern.match(p.name))}


def ctc_sequences(folder: Path) -> list[Path]:
    """The sequence folders (``01``, ``02``…) of a CTC data set folder, or ``[folder]`` if it is one itself; each
    has a ground-truth folder beside it."""
    def has_truth(seq: Path) -> bool:
        return any((seq.parent / f"{seq.name}_{kind}").is_dir() for kind in ("GT", "ST"))

    if folder.is_dir() and _SEQUENCE.match(folder.name) and has_truth(folder):
        return [folder]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and _SEQUENCE.match(p.name) and has_truth(p))


def _choose_truth(sequence: Path, images: dict[int, Path]) -> tuple[dict[int, Path], bool]:
    """``(files by frame, ids need linking)``: the ground truth to use for a sequence (module docstring)."""
    gold_seg = _numbered(sequence.parent / f"{sequence.name}_GT" / "SEG", _SEG)
    silver_seg = _numbered(sequence.parent / f"{sequence.name}_ST" / "SEG", _SEG)
    tra = _numbered(sequence.parent / f"{sequence.name}_GT" / "TRA", _TRA)
    for seg in (gold_seg, silver_seg):
        if seg and set(images) <= set(seg):
            return seg, True
    if tra:
        return tra, False
    return gold_seg or silver_seg, True


def _read(path: Path) -> np.ndarray:
    try:
        return tifffile.imread(path)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise TrainingDataError(f"{path} is not a readable TIFF: {exc}") from exc


def load_ctc(folder: Path | str) -> list[LabeledStack]:
    """The sequences of a Cell Tracking Challenge folder (a data set folder or one ``NN`` folder) as stacks."""
    folder = Path(folder)
    if not folder.exists():
        raise TrainingDataError(f"{folder} does not exist")
    sequences = ctc_sequences(folder)
    if not sequences:
        raise TrainingDataError(
            f"{folder} is not a Cell Tracking Challenge folder: no NN/ sequence folder with NN_GT/ or NN_ST/ beside it"
        )
    ensure_lzw_decoder()
    stacks = []
    for sequence in sequences:
        images = _numbered(sequence, _IMAGE)
        truth, link = _choose_truth(sequence, images)
        usable = sorted(set(images) & set(truth))
        if not usable:
            raise TrainingDataError(f"{sequence}: no frame has both an image tTTT.tif and ground truth")
        for start, stop in contiguous_runs(usable):
            frames = np.stack([_read(images[i]) for i in range(start, stop)])
            labels = np.stack([_read(truth[i]) for i in range(start, stop)])
            if frames.shape[:labels.ndim] != labels.shape:
                raise TrainingDataError(
                    f"{sequence}: images {frames.shape} and ground truth {labels.shape} of frames {start}-{stop - 1} "
                    "differ in shape"
                )
            name = f"{sequence} frames {start}-{stop - 1}"
            if frames.ndim == 4 and frames.shape[-1] != 3:  # a volume per time point: one stack per t along z
                stacks += [LabeledStack(frames[t], labels[t], f"{name} t={start + t}") for t in range(len(frames))]
            else:
                stacks.append(LabeledStack(frames, link_by_overlap(labels) if link else labels, name))
    return stacks
