"""What a prompt or a propagation step returns: every object's result on one frame."""

from __future__ import annotations

import numpy as np
import torch

_COPY_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    """A side stream per GPU for copies to the host: a copy there waits for its result's own kernels only, not for
    the next frame's work that the compute thread queued after them on the main stream."""
    if device not in _COPY_STREAMS:
        _COPY_STREAMS[device] = torch.cuda.Stream(device)
    return _COPY_STREAMS[device]


def owner_index(logits: torch.Tensor) -> torch.Tensor:
    """(K, H, W) logits → (H, W) the index of the object with the highest logit at each pixel where that logit is
    > 0, −1 where none is (NaN counts as −∞; ties go to the first object): int16 (int32 beyond 32,767 objects).
    What the label store's merge needs of a result in which every object is written (``io.merge.RankedResult``)."""
    dtype = torch.int16 if logits.shape[0] <= torch.iinfo(torch.int16).max else torch.int32
    if logits.shape[0] == 0:
        return torch.full(logits.shape[1:], -1, dtype=dtype, device=logits.device)
    scores = logits.float().masked_fill(logits.isnan(), float("-inf"))
    top, best = scores.max(dim=0)
    return torch.where(top > 0, best, -1).to(dtype)


class FrameResult:
    """All objects' results on one frame: ``logits`` (len(obj_ids), H, W) float32 at the frame's resolution,
    and their object-score logits ``object_scores`` (len(obj_ids),) (< 0: the object is predicted absent).

    The logits stay on the compute device until first read, so a consumer that needs only ``masks`` or ``owners``
    (or nothing, e.g. while skipping frames) does not pay for moving float32 images off the GPU. On a GPU, reading
    results of a propagation (``start_host_copy``, which also starts the masks' copy into pinned memory) waits for
    this frame's kernels only, so the next frame can already be computing.
    """

    __slots__ = ("frame", "obj_ids", "_scores", "_logits", "_device_logits", "_ready", "_ready_device", "_host_masks",
                 "_owners")

    def __init__(self, frame: int, obj_ids: tuple[int, ...], logits, object_scores) -> None:
        self.frame = frame
        self.obj_ids = tuple(obj_ids)
        self._scores = object_scores
        self._logits = logits if isinstance(logits, np.ndarray) else None
        self._device_logits = None if isinstance(logits, np.ndarray) else logits
        self._ready: torch.cuda.Event | None = None
        self._ready_device: torch.device | None = None
        self._host_masks: tuple[torch.Tensor, torch.cuda.Event] | None = None
        self._owners: np.ndarray | tuple[torch.Tensor, torch.cuda.Event] | None = None

    def start_host_copy(self) -> None:
        """Mark this frame's work done (an event on the main stream) and start copying the masks to pinned host
        memory on the side stream, without waiting; later reads wait for that event only (GPU results only)."""
        logits = self._device_logits
        if logits is None or not logits.is_cuda or self._host_masks is not None:
            return
        self._ready, self._ready_device = torch.cuda.Event(), logits.device
        self._ready.record(torch.cuda.current_stream(self._ready_device))
        stream = _copy_stream(logits.device)
        stream.wait_event(self._ready)
        logits.record_stream(stream)  # not reused by the main stream while the side stream reads it
        with torch.cuda.stream(stream):
            host = torch.empty(logits.shape, dtype=torch.bool, pin_memory=True)
            host.copy_(logits > 0, non_blocking=True)
            owners = owner_index(logits)
            host_owners = torch.empty(owners.shape, dtype=owners.dtype, pin_memory=True)
            host_owners.copy_(owners, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        self._host_masks = (host, done)
        self._owners = (host_owners, done)

    def _to_host(self, make) -> np.ndarray:
        """``make()``, a tensor computed from this result, on the host; on a GPU made and copied on the side stream
        once this frame's kernels are done."""
        if self._ready is None:
            return make().cpu().numpy()
        stream = _copy_stream(self._ready_device)
        stream.wait_event(self._ready)
        with torch.cuda.stream(stream):
            return make().cpu().numpy()

    @property
    def object_scores(self) -> np.ndarray:
        if not isinstance(self._scores, np.ndarray):
            scores = self._scores
            self._scores = self._to_host(lambda: scores.float())
        return self._scores

    @property
    def logits(self) -> np.ndarray:
        if self._logits is None:
            logits = self._device_logits
            self._logits = self._to_host(lambda: logits.float())
            self._device_logits = None
        return self._logits

    @property
    def masks(self) -> np.ndarray:
        """(len(obj_ids), H, W) bool."""
        if self._logits is not None:
            return self._logits > 0
        if self._host_masks is not None:
            host, done = self._host_masks
            done.synchronize()
            return host.numpy()
        logits = self._device_logits
        return self._to_host(lambda: logits > 0)

    @property
    def owners(self) -> np.ndarray:
        """(H, W) ``owner_index`` of the logits: which object each pixel goes to, −1 for none (2 bytes a pixel
        instead of 4 per object and pixel for a writer that needs no more)."""
        if isinstance(self._owners, tuple):
            host, done = self._owners
            done.synchronize()
            self._owners = host.numpy()
        if self._owners is None:
            if self._logits is not None:
                self._owners = owner_index(torch.from_numpy(self._logits)).numpy()
            else:
                logits = self._device_logits
                self._owners = self._to_host(lambda: owner_index(logits))
        return self._owners

    def __repr__(self) -> str:
        return f"FrameResult(frame={self.frame}, obj_ids={self.obj_ids})"
