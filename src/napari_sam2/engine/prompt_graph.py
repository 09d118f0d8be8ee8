"""A click's decoder pass on static buffers, replayed as a CUDA graph.

A click on an object that has no memory yet (its first prompted frame, or clicks before any propagation) runs the
prompt encoder, the mask decoder and hole filling for one object: ~300 small kernels, each launched from Python.
On the GPU the work takes a millisecond or two; the launches take most of the click's time, and more on a slower
host. Here that pass is captured once per *shape* — number of points, whether an earlier mask goes in with the
clicks, single- or multi-mask output, dtype and feature size — and replayed: the frame's features and the clicks are
copied into the graph's static buffers, one replay computes the hole-filled low-resolution logits, the object
pointer and the object score, and they are copied out. The first click of a shape runs uncaptured and queues the
capture (two warm-ups and the capture) behind itself on the session's compute thread, where it runs while the user
looks at the mask; later clicks of that shape replay it. On the CPU the same code runs on the same buffers without
capture (how the tests compare it with the eager pass).
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from napari_sam2.model import FrameFeatures, SAM2Model

from .postprocess import fill_holes
from .step_graph import capture_graph, fill_features, static_features


@dataclass
class PromptOutputs:
    """One object's click result: hole-filled low-resolution logits (1, 1, S/4, S/4) float32, object pointer
    (1, C) float32, object-score logit (1,) float32."""

    low_res_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor


class _PromptBuffers:
    """Static inputs (a frame's features, the clicks, the earlier mask) and, once captured, the graph and outputs."""

    def __init__(self, features: FrameFeatures, coords: torch.Tensor, labels: torch.Tensor,
                 prev_logits: torch.Tensor | None) -> None:
        self.features = static_features(features)
        device = features.vision.device
        self.coords = torch.zeros_like(coords, device=device)
        self.labels = torch.zeros_like(labels, device=device)
        self.prev_logits = None if prev_logits is None else torch.zeros_like(prev_logits, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: PromptOutputs | None = None
        self.capture_queued = False

    def fill(self, features: FrameFeatures, coords: torch.Tensor, labels: torch.Tensor,
             prev_logits: torch.Tensor | None) -> None:
        fill_features(self.features, features)
        self.coords.copy_(coords)
        self.labels.copy_(labels)
        if prev_logits is not None:
            self.prev_logits.copy_(prev_logits)


class PromptGraphs:
    """Runs one object's memory-free click pass on static buffers per shape, as CUDA graphs where the device allows.

    fill_hole_area: as the tracker's; use_graphs: capture on CUDA (None, the default), always (True), never (False;
    also after a capture failed); max_graphs: shapes kept (least recently used dropped).
    """

    def __init__(self, model: SAM2Model, *, fill_hole_area: int, use_graphs: bool | None = None,
                 max_graphs: int = 8, defer: Callable[[Callable[[], None]], object] | None = None) -> None:
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.use_graphs = use_graphs
        self.max_graphs = max_graphs
        self.defer = defer
        self._shapes: OrderedDict[tuple, _PromptBuffers] = OrderedDict()
        self.captures = 0
        self.replays = 0

    def run(self, features: FrameFeatures, coords: torch.Tensor, labels: torch.Tensor,
            prev_logits: torch.Tensor | None, *, multimask: bool) -> PromptOutputs:
        """features: the frame's (batch 1); coords (1, P, 2) (x, y) in model-input pixels and labels (1, P) on the
        compute device or the host; prev_logits: (1, 1, H', W') earlier logits fed with the clicks, or None.

        A shape seen for the first time runs uncaptured; its capture follows the click, through ``defer`` (the
        session's compute queue, so it runs while the user looks at the mask) or at once without it.
        """
        key = (tuple(coords.shape), coords.dtype, labels.dtype, None if prev_logits is None else
               (tuple(prev_logits.shape), prev_logits.dtype), multimask, features.vision.dtype,
               tuple(features.vision.shape[1:]))
        buffers = self._shapes.get(key)
        if buffers is None:
            buffers = self._shapes[key] = _PromptBuffers(features, coords, labels, prev_logits)
            while len(self._shapes) > self.max_graphs:
                self._shapes.popitem(last=False)
        self._shapes.move_to_end(key)
        buffers.fill(features, coords, labels, prev_logits)
        if buffers.graph is not None:
            buffers.graph.replay()
            self.replays += 1
            out = buffers.outputs
        else:
            out = self._core(buffers, multimask)
        result = PromptOutputs(out.low_res_masks.clone(), out.obj_ptr.clone(), out.object_score.clone())
        capture = features.vision.is_cuda if self.use_graphs is None else self.use_graphs
        if buffers.graph is None and capture and not buffers.capture_queued:
            buffers.capture_queued = True
            job = functools.partial(self._capture, key, buffers, multimask)
            if self.defer is None:
                job()
            else:
                self.defer(job)
        return result

    def _capture(self, key: tuple, buffers: _PromptBuffers, multimask: bool) -> None:
        if self._shapes.get(key) is not buffers or self.use_graphs is False:
            return  # dropped meanwhile, or captures gave up
        try:
            buffers.graph, buffers.outputs = capture_graph(lambda: self._core(buffers, multimask))
            self.captures += 1
        except Exception as error:  # noqa: BLE001 — a click must not fail because its pass could not be captured
            warnings.warn(f"napari-sam2: clicks run without CUDA graphs ({str(error).splitlines()[0]})",
                          RuntimeWarning, stacklevel=2)
            self.use_graphs = False
            buffers.graph = None
            if torch.cuda.is_available():
                torch.cuda.synchronize()

    def clear(self) -> None:
        self._shapes.clear()

    def _core(self, buffers: _PromptBuffers, multimask: bool) -> PromptOutputs:
        """What the graph captures: ``track_step`` of one object without memory and without memory encoding, and
        the tracker's hole filling."""
        features = buffers.features
        pix_feat = self.model.condition_on_memory(features, (), (), num_frames=1)
        heads = self.model.run_heads(pix_feat, features.high_res, point_coords=buffers.coords,
                                     point_labels=buffers.labels, mask_inputs=buffers.prev_logits,
                                     multimask_output=multimask)
        return PromptOutputs(fill_holes(heads.low_res_masks.float(), self.fill_hole_area), heads.obj_ptr.float(),
                             heads.object_score_logits[:, 0].float())
