"""Reading frames lazily and preparing them as SAM 2 input tensors.

uint8 RGB frames are prepared exactly as Meta's video predictor prepares JPEG frames
(``load_video_frames`` in sam2/utils/misc.py): ÷255 in float64, cast to float32, ImageNet mean/std.
Other dtypes are first mapped to [0, 1] with an intensity range (robust percentiles of a sample of frames
by default); grayscale is replicated to 3 channels. Frames not at image_size × image_size are resized with
antialiased bilinear interpolation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_PERCENTILES = (0.5, 99.5)
SAMPLE_FRAMES = 16


class FrameError(ValueError):
    """A frame stack SAM 2 cannot read: wrong dimensions, channels or values."""


def describe_frames(frames: Any) -> tuple[int, int, int, int]:
    """(num_frames, height, width, channels) of a frame stack, checked without reading pixel data.

    ``frames`` is an array-like shaped (N, H, W) or (N, H, W, C) with C = 1 or 3, or a frame source of the
    I/O layer (``len()`` plus ``shape2d``).
    """
    shape2d = getattr(frames, "shape2d", None)
    if shape2d is not None:
        channels = 3 if getattr(frames, "is_rgb", False) else 1
        return len(frames), int(shape2d[0]), int(shape2d[1]), channels
    shape = getattr(frames, "shape", None)
    if shape is None:
        raise FrameError(f"frames must be an array (N, H, W) or (N, H, W, C) or a frame source, got {type(frames)}")
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        n, h, w, c = *shape, 1
    elif len(shape) == 4 and shape[-1] in (1, 3):
        n, h, w, c = shape
    else:
        raise FrameError(
            f"frames must be shaped (N, H, W) or (N, H, W, C) with C = 1 or 3, got shape {shape}; "
            "pick a channel or the propagation axis first (napari_sam2.io.open_stack does this)"
        )
    if n < 1 or h < 1 or w < 1:
        raise FrameError(f"frames have an empty dimension: shape {shape}")
    return n, h, w, c


@dataclass
class IntensityRange:
    """Maps raw intensities to [0, 1]: (x − low) / (high − low), clipped."""

    low: float
    high: float

    def apply(self, frame: np.ndarray) -> np.ndarray:
        scale = self.high - self.low
        out = (frame.astype(np.float32) - np.float32(self.low)) / np.float32(scale if scale > 0 else 1.0)
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def estimate_intensity_range(
    frames: Any, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, sample: int = SAMPLE_FRAMES
) -> IntensityRange:
    """Robust percentiles of up to ``sample`` evenly spaced frames, NaN/inf ignored.

    Uses the frame source's own ``intensity_range()`` when it has one.
    """
    own = getattr(frames, "intensity_range", None)
    if callable(own):
        low, high = own()
        return IntensityRange(float(low), float(high))
    n = len(frames)
    picks = np.unique(np.linspace(0, n - 1, min(n, sample)).round().astype(int))
    values = np.concatenate([np.asarray(frames[int(i)], dtype=np.float64).ravel() for i in picks])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return IntensityRange(0.0, 1.0)
    low, high = np.percentile(values, percentiles)
    if high <= low:  # constant stack: keep it constant, avoid dividing by zero
        high = low + 1.0
    return IntensityRange(float(low), float(high))


class FramePreparer:
    """Reads frame i of a stack and turns it into a normalised (3, S, S) float32 tensor.

    normalization: "auto" (uint8 as the reference, other dtypes by percentiles), "percentile", "minmax"
    (the whole frame's own min and max), or a callable frame → float array in [0, 1].
    """

    def __init__(
        self,
        frames: Any,
        image_size: int,
        *,
        normalization: str | Callable[[np.ndarray], np.ndarray] = "auto",
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        intensity_range: tuple[float, float] | None = None,
    ) -> None:
        self.frames = frames
        self.num_frames, self.height, self.width, _ = describe_frames(frames)
        self.image_size = image_size
        self.normalization = normalization
        self.percentiles = percentiles
        self._range = IntensityRange(*intensity_range) if intensity_range is not None else None
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
        self._uint16 = False  # frames are uint16, carried to the device as int16 bits

    def __len__(self) -> int:
        return self.num_frames

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as a numpy array (H, W) or (H, W, C), read from the source now."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} is outside the stack of {self.num_frames} frames")
        frame = np.asarray(self.frames[index])
        if frame.shape[:2] != (self.height, self.width):
            raise FrameError(f"frame {index} has shape {frame.shape}, expected {(self.height, self.width)}")
        return frame

    def load(self, index: int) -> torch.Tensor:
        """Frame ``index`` read from the source, as little host work as possible: (H, W) or (H, W, 3) in the
        frame's own dtype (uint16 carried as int16 bits, float64 as float32) for the "auto"/"percentile" modes,
        float32 in [0, 1] for "minmax" and callables. ``finish`` does the rest on the compute device."""
        return self.load_frame(self.read(index))

    def load_frame(self, frame: np.ndarray) -> torch.Tensor:
        """``load`` for a frame already read."""
        if frame.ndim == 3 and frame.shape[-1] == 1:
            frame = frame[..., 0]
        if callable(self.normalization) or self.normalization == "minmax":
            return torch.from_numpy(np.ascontiguousarray(self._host_unit(frame)))
        if self.normalization not in ("auto", "percentile"):
            raise ValueError(f"unknown normalization {self.normalization!r}")
        if frame.dtype == np.uint8 and self.normalization == "auto":
            return torch.from_numpy(np.ascontiguousarray(frame))
        if self._range is None:
            self._range = estimate_intensity_range(self.frames, self.percentiles)
        if frame.dtype == np.uint16:
            self._uint16 = True
            return torch.from_numpy(np.ascontiguousarray(frame).view(np.int16))
        if frame.dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32):
            return torch.from_numpy(np.ascontiguousarray(frame))
        return torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))

    def _host_unit(self, frame: np.ndarray) -> np.ndarray:
        if callable(self.normalization):
            return np.asarray(self.normalization(frame), dtype=np.float32)
        finite = frame[np.isfinite(frame)] if frame.dtype.kind == "f" else frame
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        return IntensityRange(low, high if high > low else low + 1.0).apply(frame)

    def finish(self, loaded: torch.Tensor, *, resize: bool = True, normalise: bool = True) -> torch.Tensor:
        """Loaded frames (B, H, W) or (B, H, W, 3) on any device → (B, 3, S, S) float32 model input.

        uint8 in the "auto" mode is divided by 255 in float64 and then rounded to float32, as the reference does
        in numpy (``load_video_frames``), so the input tensor is bit-identical to the reference's; raw intensities
        are mapped through the intensity range (NaN → 0, ±inf → 1/0, clipped to [0, 1]) in float32. Grayscale is
        resized once and repeated to 3 channels (equal to resizing each copy). ``normalise=False`` stops before
        the ImageNet mean/std (images in [0, 1]).
        """
        if loaded.dtype == torch.uint8 and self.normalization == "auto":
            wide = torch.float32 if loaded.device.type == "mps" else torch.float64  # MPS has no float64
            images = (loaded.to(wide) / 255.0).to(torch.float32)
        elif loaded.dtype == torch.float32 and (callable(self.normalization) or self.normalization == "minmax"):
            images = loaded
        else:
            values = loaded
            if loaded.dtype == torch.int16 and self._uint16:
                values = loaded.to(torch.int32) & 0xFFFF  # uint16 bits carried as int16
            low, high = self._range.low, self._range.high
            scale = high - low if high - low > 0 else 1.0
            images = (values.to(torch.float32) - np.float32(low)) / np.float32(scale)
            images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        if resize and images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size,) * 2, mode="bilinear", align_corners=False,
                                   antialias=True)
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        if not normalise:
            return images
        mean, std = self._mean_std(images.device)
        return (images - mean) / std

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """ImageNet mean and std on ``device``, uploaded once (an upload per block would wait for the GPU)."""
        if self._mean.device != device:
            self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self._mean, self._std

    def prepare(self, index: int) -> torch.Tensor:
        """Frame ``index`` as a normalised (3, S, S) float32 tensor on the CPU."""
        return self.finish(self.load(index)[None])[0]
