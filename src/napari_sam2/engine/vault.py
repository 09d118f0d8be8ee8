"""Where per-frame results live: host memory up to a budget, then a disk cache; a small device window.

The reference keeps every frame's memory features and masks on the device, so memory grows with the stack
until out-of-memory (sam2#264, #196, #288, #653). Here each large per-frame tensor is put into a
:class:`TensorVault` once and fetched by id: the host keeps the most recently used ones up to
``host_budget_bytes`` and writes older ones to files in a private temporary folder; a device-side LRU of
``device_slots`` tensors holds the working window (recent frames and prompted frames) on the GPU.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

_NUMPY_CARRIER = {torch.bfloat16: (torch.int16, np.int16), torch.float16: (torch.int16, np.int16)}


class TensorVault:
    """Id-addressed store of tensors with a host byte budget, disk spill and a device LRU."""

    def __init__(
        self,
        *,
        host_budget_bytes: int = 4 << 30,
        device: torch.device | str = "cpu",
        device_slots: int = 0,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.host_budget_bytes = host_budget_bytes
        self.device = torch.device(device)
        self.device_slots = device_slots if self.device.type != "cpu" else 0
        self._spill_root = Path(spill_dir) if spill_dir is not None else None
        self._spill_dir: Path | None = None
        self._ids = itertools.count()
        self._host: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._on_disk: dict[int, tuple[Path, torch.dtype, tuple[int, ...]]] = {}
        self._on_device: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._in_flight: OrderedDict[int, tuple[torch.Tensor, torch.cuda.Event]] = OrderedDict()
        self._staging_pool: dict[tuple, list[torch.Tensor]] = {}
        self.host_bytes = 0
        self.peak_host_bytes = 0
        self.spilled_bytes = 0

    def __len__(self) -> int:
        return len(self._host) + len(self._on_disk) + len(self._on_device) + len(self._in_flight)

    def put(self, tensor: torch.Tensor) -> int:
        """Store a tensor (any device) and return its id. A device tensor stays in the device window and is
        copied to the host only when the window evicts it (one transfer, off the per-frame path)."""
        key = next(self._ids)
        if self.device_slots and tensor.device.type != "cpu":
            self._remember_on_device(key, tensor.detach())
            return key
        self._keep_on_host(key, tensor.detach().to("cpu", copy=tensor.device.type == "cpu"))
        return key

    def get(self, key: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The tensor stored under ``key``, on ``device`` (default: the host). Do not modify it in place."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        if key in self._on_device:
            self._on_device.move_to_end(key)
            tensor = self._on_device[key]
            return tensor if device.type != "cpu" else tensor.cpu()
        host = self._host_copy(key)
        if device.type == "cpu":
            return host
        moved = host.to(device, non_blocking=True)
        if self.device_slots:
            self._forget_host(key)
            self._remember_on_device(key, moved)
        return moved

    def discard(self, key: int | None) -> None:
        """Forget a tensor (no error if it is already gone or ``key`` is None)."""
        if key is None:
            return
        self._forget_host(key)
        if key in self._in_flight:
            self._drain_copies(wait_for=key)
            self._forget_host(key)
        spilled = self._on_disk.pop(key, None)
        if spilled is not None:
            spilled[0].unlink(missing_ok=True)
        self._on_device.pop(key, None)

    def clear(self) -> None:
        for key in list(self._host) + list(self._on_disk) + list(self._on_device) + list(self._in_flight):
            self.discard(key)
        self._on_device.clear()

    def close(self) -> None:
        """Forget everything and delete the disk cache."""
        self.clear()
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- internals -----------------------------------------------------------------------------------------
    def _remember_on_device(self, key: int, tensor: torch.Tensor) -> None:
        self._on_device[key] = tensor
        self._on_device.move_to_end(key)
        while len(self._on_device) > self.device_slots:
            old_key, old = self._on_device.popitem(last=False)
            self._start_copy_to_host(old_key, old)

    def _keep_on_host(self, key: int, host: torch.Tensor) -> None:
        self._host[key] = host
        self.host_bytes += _nbytes(host)
        self.peak_host_bytes = max(self.peak_host_bytes, self.host_bytes)
        self._enforce_budget(keep=key)

    def _forget_host(self, key: int) -> None:
        host = self._host.pop(key, None)
        if host is not None:
            self.host_bytes -= _nbytes(host)

    def _start_copy_to_host(self, key: int, tensor: torch.Tensor) -> None:
        """Copy an evicted device tensor to the host without stalling the GPU queue: into a reused pinned
        staging buffer, asynchronously; it becomes an ordinary host tensor once the copy has finished."""
        self._drain_copies()
        if tensor.device.type != "cuda":
            self._keep_on_host(key, tensor.to("cpu"))
            return
        spec = (tuple(tensor.shape), tensor.dtype)
        free = self._staging_pool.get(spec)
        staging = free.pop() if free else torch.empty(spec[0], dtype=spec[1], pin_memory=True)
        staging.copy_(tensor, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._in_flight[key] = (staging, event)

    def _drain_copies(self, wait_for: int | None = None) -> None:
        """Move finished copies (and ``wait_for``, waiting for it) from staging buffers to host tensors."""
        for key in list(self._in_flight):
            staging, event = self._in_flight[key]
            if key == wait_for:
                event.synchronize()
            elif not event.query():
                continue
            del self._in_flight[key]
            self._keep_on_host(key, staging.clone())
            self._staging_pool.setdefault((tuple(staging.shape), staging.dtype), []).append(staging)

    def _host_copy(self, key: int) -> torch.Tensor:
        if key in self._in_flight:
            self._drain_copies(wait_for=key)
        if key in self._host:
            self._host.move_to_end(key)
            return self._host[key]
        try:
            path, dtype, shape = self._on_disk.pop(key)
        except KeyError:
            raise KeyError(f"no tensor stored under id {key}") from None
        carrier_torch, carrier_np = _NUMPY_CARRIER.get(dtype, (dtype, None))
        array = np.load(path)
        path.unlink(missing_ok=True)
        tensor = torch.from_numpy(array).reshape(shape)
        if carrier_np is not None:
            tensor = tensor.view(dtype)
        self._keep_on_host(key, tensor)
        return tensor

    def _enforce_budget(self, keep: int | None = None) -> None:
        while self.host_bytes > self.host_budget_bytes and len(self._host) > 1:
            key = next(iter(self._host))
            if key == keep:
                self._host.move_to_end(key)
                key = next(iter(self._host))
            self._spill(key)

    def _spill(self, key: int) -> None:
        tensor = self._host.pop(key)
        self.host_bytes -= _nbytes(tensor)
        if self._spill_dir is None:
            root = self._spill_root
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)
            self._spill_dir = Path(tempfile.mkdtemp(prefix="napari-sam2-cache-", dir=root))
        carrier = _NUMPY_CARRIER.get(tensor.dtype)
        array = (tensor.view(carrier[0]) if carrier else tensor).contiguous().numpy()
        path = self._spill_dir / f"{key}.npy"
        np.save(path, array)
        self._on_disk[key] = (path, tensor.dtype, tuple(tensor.shape))
        self.spilled_bytes += array.nbytes


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
