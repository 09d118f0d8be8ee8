"""The image encoder on one static block of frames, replayed as a CUDA graph.

A block of 8 frames through Hiera-T's compiled blocks is 12 compiled calls (dynamo's guards, ~160 Triton launches)
plus the neck's kernels: 19 ms of host time on the H200 machine (cProfile), 2.4 ms a frame — more than the GPU's
1.8 ms. One object's tracking step is a replayed graph (``step_graph``), so at few objects this host time bounds the
frame rate. Captured once, the block is one replay.

One graph per model, block shape, dtypes and device, shared by every session of the process (a tiled run's sessions
share it, and its memory pool, instead of capturing one each), behind a lock: an ``encode`` copies the block into the
static input, replays, and hands back each frame's features as its own copy. With ``capture=False`` (the CPU) the
same static-input code runs without a graph. A capture that fails leaves the block running uncaptured, with one
warning. The graph runs the kernels an uncaptured call runs, so features are bit-identical either way.

The capture runs with autocast's weight cache off: the graph casts the weights itself on every replay (~0.3 ms for
Hiera-L's on an H200) instead of reading the cached copies of the thread that captured it, which are freed when that
session's compute thread ends while the graph lives on for other sessions. The key holds the weights' address, so a
model moved to another device and back is captured again.
"""

from __future__ import annotations

import logging
import threading
import weakref

import torch

from napari_sam2.model import FrameFeatures, SAM2Model
from napari_sam2.model.hiera import BlockRunner, runner_key

from .step_graph import capture_graph

log = logging.getLogger(__name__)

_GRAPHS: weakref.WeakKeyDictionary[SAM2Model, dict[tuple, EncoderGraph]] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def split_frames(features: FrameFeatures, count: int | None = None) -> list[FrameFeatures]:
    """Per-frame copies (batch 1 each, their own memory) of the first ``count`` frames of batched features."""
    count = features.vision.shape[0] if count is None else count
    return [
        FrameFeatures(features.vision[i : i + 1].clone(), features.vision_pos[i : i + 1].clone(),
                      tuple(x[i : i + 1].clone() for x in features.high_res))
        for i in range(count)
    ]


class EncoderGraph:
    """``encode(images)`` ≡ ``split_frames(model.encode_image(images, run_block))`` for images of one shape
    (B, 3, S, S), through a static input and, with ``capture``, one CUDA graph."""

    def __init__(self, model: SAM2Model, run_block: BlockRunner | None, capture: bool) -> None:
        # weakly: the process's registry is keyed weakly by the model, and a graph holding it would keep both alive
        self._model = weakref.ref(model)
        self.run_block = run_block
        self.capture = capture
        self.captured = False
        self.replays = 0
        self._lock = threading.Lock()
        self._input: torch.Tensor | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._outputs: FrameFeatures | None = None

    @property
    def model(self) -> SAM2Model:
        model = self._model()
        if model is None:
            raise RuntimeError("the encoder graph's model was freed")
        return model

    def encode(self, images: torch.Tensor, count: int | None = None) -> list[FrameFeatures]:
        """Features of the first ``count`` (default all) of ``images`` (B, 3, S, S), one FrameFeatures each."""
        with self._lock:
            if self._input is None:
                self._input = images.clone()
                if self.capture:
                    self._capture()
            else:
                if images.shape != self._input.shape:
                    raise ValueError(f"encoder graph of {tuple(self._input.shape)} got images {tuple(images.shape)}")
                self._input.copy_(images)
            if self._graph is not None:
                self._graph.replay()
                self.replays += 1
                outputs = self._outputs
            else:
                outputs = self.model.encode_image(self._input, self.run_block)
            return split_frames(outputs, count)

    def _capture(self) -> None:
        device = self._input.device.type
        try:
            with torch.autocast(device, dtype=torch.get_autocast_dtype(device), enabled=torch.is_autocast_enabled(
                    device), cache_enabled=False):
                self._graph, self._outputs = capture_graph(
                    lambda: self.model.encode_image(self._input, self.run_block))
            self.captured = True
        except Exception as error:  # an operation that cannot be captured: the block runs uncaptured
            self._graph = self._outputs = None
            log.warning("napari-sam2: capturing the image encoder as a CUDA graph failed (%s); running it "
                        "uncaptured", str(error).splitlines()[0] if str(error) else type(error).__name__)


def shared_encoder_graph(model: SAM2Model, run_block: BlockRunner | None, images: torch.Tensor,
                         capture: bool) -> EncoderGraph:
    """The process's ``EncoderGraph`` for ``model`` and images like ``images`` (shape, dtype, device), under the
    thread's autocast, compiled blocks or not."""
    device = images.device.type
    autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    weights = next(model.parameters()).data_ptr()
    key = (tuple(images.shape), images.dtype, str(images.device), autocast, runner_key(run_block), capture,
           weights)
    with _REGISTRY_LOCK:
        graphs = _GRAPHS.setdefault(model, {})
        for stale in [k for k in graphs if k[-1] != weights]:  # captured on weights since moved: freed
            del graphs[stale]
        graph = graphs.get(key)
        if graph is None:
            graph = graphs[key] = EncoderGraph(model, run_block, capture)
        return graph
