"""Lazy crops of a stack for the tiles of a tiled session: each full frame read once and shared by the tiles, and
the strided sample of large frames that the intensity range is estimated from."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .tiles import Box


class SharedFrames:
    """The last few full frames read from a stack, shared by the tiles' crops (one read per frame, not per tile).

    ``keep`` covers the frames the tiles have in flight at once on a GPU (the frame shown, the one computed ahead
    and the one read ahead), with room to spare: a frame evicted while other tiles still need it is read again."""

    def __init__(self, frames: Any, keep: int = 8) -> None:
        self.frames = frames
        self.keep = keep
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def frame(self, index: int) -> np.ndarray:
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            frame = np.asarray(self.frames[index])
            self._cache[index] = frame
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
            return frame


class TileFrames:
    """A lazy (N, h, w[, C]) view of one tile of a stack: frame i is read (shared) and cropped when asked for."""

    def __init__(self, shared: SharedFrames, num_frames: int, box: Box, rgb: bool) -> None:
        self.shared, self.box, self.is_rgb = shared, box, rgb
        self.num_frames = num_frames
        self.shape2d = (box[2] - box[0], box[3] - box[1])

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        y0, x0, y1, x1 = self.box
        return self.shared.frame(int(index))[y0:y1, x0:x1]


class SampledFrames:
    """Frames as ``estimate_intensity_range`` reads them, every s-th pixel along y and x so a sampled frame has at
    most ``SAMPLE_PIXELS`` (percentiles of 16 full 4,096² frames would take 2 GB); a source's own
    ``intensity_range`` is kept."""

    SAMPLE_PIXELS = 1 << 20

    def __init__(self, frames: Any, height: int, width: int) -> None:
        self.frames = frames
        self.step = max(1, math.ceil(math.sqrt(height * width / self.SAMPLE_PIXELS)))
        own = getattr(frames, "intensity_range", None)
        if callable(own):
            self.intensity_range = own

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.frames[index])[:: self.step, :: self.step]
