"""Image features per frame: computed once, kept in a size-limited LRU, prepared ahead in the background.

The image encoder is the one part of SAM 2 whose result does not depend on prompts or memory, so a
correction never recomputes it for a frame still in the cache. Reading the next frames runs in a background
thread while the current frame computes; their scaling and normalisation run on the compute device.

With ``batch_size`` B > 1, frames are encoded in fixed, aligned blocks (frames B·k … B·k + B − 1): a batched
encoder's result depends in its last bits on a frame's batch-mates, so a frame always gets the same ones —
whichever frame asked first, in either direction, and in a run resumed elsewhere.

With ``run_block`` (``CompiledBlocks``) the encoder's blocks run compiled; with ``graph`` the block is encoded through
the process's ``EncoderGraph`` (a CUDA graph where ``capture``). Either needs one static shape: a stack's last,
shorter block is then padded with blank images to B frames (the same padding whichever frame asks), and ``warm_up``
compiles and captures before the first frame is needed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from napari_sam2.model import FrameFeatures, SAM2Model
from napari_sam2.model.hiera import BlockRunner, runner_key

from .encoder_graph import shared_encoder_graph, split_frames
from .frames import FramePreparer

_WARMED: set[tuple] = set()  # (model, weights, block size, device, autocast dtype, ways) compiled and captured


def _feature_bytes(f: FrameFeatures) -> int:
    tensors = (f.vision, f.vision_pos, *f.high_res)
    return sum(t.numel() * t.element_size() for t in tensors)


class FeatureCache:
    """LRU of per-frame :class:`FrameFeatures` (batch 1) on the compute device, bounded in bytes."""

    def __init__(
        self,
        model: SAM2Model,
        preparer: FramePreparer,
        device: torch.device,
        *,
        max_bytes: int = 1 << 30,
        batch_size: int = 1,
        run_block: BlockRunner | None = None,
        graph: bool = False,
        capture: bool = False,
    ) -> None:
        self.model = model
        self.run_block = run_block
        self.graph = graph
        self.capture = capture
        self.preparer = preparer
        self.device = device
        self.max_bytes = max_bytes
        self.batch_size = max(1, batch_size)
        self._cache: OrderedDict[int, FrameFeatures] = OrderedDict()
        self._bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sam2-frames")
        self._pending: dict[int, Future] = {}
        self.encoded_frames = 0  # how many frames went through the image encoder (for tests and stats)

    def __contains__(self, frame: int) -> bool:
        return frame in self._cache

    def block(self, frame: int) -> list[int]:
        """The frames encoded together with ``frame``: its aligned block of ``batch_size`` frames."""
        if self.batch_size == 1:
            return [frame]
        start = frame - frame % self.batch_size
        return list(range(start, min(start + self.batch_size, len(self.preparer))))

    def get(self, frame: int, upcoming: Sequence[int] = ()) -> FrameFeatures:
        """Features of ``frame`` (its whole block is encoded and cached if it was not); the blocks of the
        ``upcoming`` frames are read and prepared in the background meanwhile."""
        if frame in self._cache:
            self._cache.move_to_end(frame)
            self._prefetch(upcoming)
            return self._cache[frame]
        todo = self.block(frame)
        loaded = torch.stack([self._loaded(t) for t in todo])
        if self.device.type == "cuda":
            loaded = loaded.pin_memory()
        images = self._padded(self.preparer.finish(loaded.to(self.device, non_blocking=True)))
        self._prefetch(upcoming)
        rows = self._encode(images, len(todo))
        self.encoded_frames += len(todo)
        # the asked frame is stored last: a budget smaller than a block evicts its block-mates, never it
        order = [i for i, t in enumerate(todo) if t != frame and t not in self._cache] + [todo.index(frame)]
        for i in order:
            self._store(todo[i], rows[i])
        return self._cache[frame]

    def _encode(self, images: torch.Tensor, count: int) -> list[FrameFeatures]:
        """Features of the first ``count`` of ``images`` (B, 3, S, S), one FrameFeatures each, in memory of its own
        (un-batched copies: one evicted frame frees its memory)."""
        if self.graph:
            encoder = shared_encoder_graph(self.model, self.run_block, images, self.capture)
            return encoder.encode(images, count)
        return split_frames(self.model.encode_image(images, self.run_block), count)

    @property
    def warms_up(self) -> bool:
        """Whether ``warm_up`` has work to do: blocks to compile or a graph to capture."""
        return self.run_block is not None or self.capture

    def warm_up(self) -> None:
        """Run the encoder once on a blank block (B, 3, S, S), so that compiling its blocks (``run_block``) and
        capturing its graph happen now rather than when a frame is first asked for; nothing is cached. Once per
        process for a model, block size, device and way of running (compiled blocks and graphs are shared: a tiled
        run's many sessions warm up once)."""
        if not self.warms_up:
            return
        device = self.device.type
        key = (id(self.model), next(self.model.parameters()).data_ptr(), self.batch_size, str(self.device),
               torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device), runner_key(self.run_block),
               self.graph, self.capture)
        if key in _WARMED:
            return
        size = self.model.image_size
        self._encode(torch.zeros(self.batch_size, 3, size, size, device=self.device), 0)
        _WARMED.add(key)

    def _padded(self, images: torch.Tensor) -> torch.Tensor:
        """images (b, 3, S, S) → (B, 3, S, S) with blank images after them when the blocks run compiled (one static
        shape, or through the encoder graph); unchanged otherwise."""
        missing = self.batch_size - images.shape[0]
        if (self.run_block is None and not self.graph) or missing <= 0:
            return images
        return torch.cat([images, images.new_zeros(missing, *images.shape[1:])])

    def adopt(self, frame: int, features: FrameFeatures) -> None:
        """Cache ``features`` as those of ``frame``, computed elsewhere from the same pixels with the same preparation
        (another session over the same plane), so that this cache does not encode it again."""
        old = self._cache.pop(frame, None)
        if old is not None:
            self._bytes -= _feature_bytes(old)
        self._store(frame, split_frames(features)[0])
        self._cache.move_to_end(frame)

    def _loaded(self, frame: int) -> torch.Tensor:
        future = self._pending.pop(frame, None)
        return future.result() if future is not None else self.preparer.load(frame)

    def _prefetch(self, upcoming: Sequence[int]) -> None:
        """Read ahead the frames of the first block (of the upcoming frames) that is not cached."""
        for t in upcoming:
            if t in self._cache:
                continue
            for u in self.block(t):
                if u not in self._cache and u not in self._pending:
                    self._pending[u] = self._pool.submit(self.preparer.load, u)
            return

    def _store(self, frame: int, features: FrameFeatures) -> None:
        self._cache[frame] = features
        self._bytes += _feature_bytes(features)
        while self._bytes > self.max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= _feature_bytes(old)

    def clear(self) -> None:
        self._cache.clear()
        self._bytes = 0
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def close(self) -> None:
        self.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
