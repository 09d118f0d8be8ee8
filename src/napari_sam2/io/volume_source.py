"""``VolumeSource``: the (t, z) planes of a stack, for following objects in 3D over time.

``src[t, z]`` is the (H, W) plane at ``frame_axis`` = t and ``volume_axis`` = z (other non-spatial axes fixed by
``position``), read lazily through a :class:`FrameSource` along the volume axis at that t; ``shape`` is
(T, Z, H, W). Grayscale only (a channel index picks one of several).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from napari_sam2.io.errors import StackError
from napari_sam2.io.sources import ChannelSpec, FrameSource
from napari_sam2.io.stack_formats import RawStack


class VolumeSource:
    """Planes ``[t, z]`` of a stack along two axes; see the module docstring."""

    def __init__(
        self,
        raw: RawStack,
        *,
        frame_axis: str = "t",
        volume_axis: str = "z",
        channel: ChannelSpec = None,
        position: Mapping[str, int] | None = None,
    ) -> None:
        if frame_axis == volume_axis:
            raise StackError(f"{raw.where}: the volume axis must differ from the frame axis ({frame_axis!r})")
        self._raw, self._channel = raw, channel
        self._frame_axis, self._volume_axis = frame_axis, volume_axis
        self._position = dict(position or {})
        self._at: dict[int, FrameSource] = {}
        first = self._planes_at(0)  # checks the axes, the channel and the position
        if first.is_rgb:
            raise StackError(f"{raw.where}: 3D over time segments one channel; pick it with channel=<index>")
        names = raw.axes.names
        if frame_axis not in names:
            raise StackError(f"{raw.where} has no axis {frame_axis!r} (axes {names})")
        self.times = int(raw.array.shape[names.index(frame_axis)])
        self.shape = (self.times, len(first), *first.shape2d)
        self.dtype = first.dtype

    def _planes_at(self, t: int) -> FrameSource:
        if t not in self._at:
            if len(self._at) > 4:
                self._at.clear()  # sources share the open file; only a few recent ones are kept
            self._at[t] = FrameSource(self._raw, axis=self._volume_axis, channel=self._channel,
                                      position={**self._position, self._frame_axis: t})
        return self._at[t]

    def __getitem__(self, key: tuple[int, int]) -> np.ndarray:
        t, z = key
        if not 0 <= int(t) < self.times:
            raise IndexError(f"t={t} is outside 0…{self.times - 1}")
        return self._planes_at(int(t))[int(z)]

    def __len__(self) -> int:
        return self.times

    @property
    def frame_axis(self) -> str:
        return self._frame_axis

    @property
    def volume_axis(self) -> str:
        return self._volume_axis

    @property
    def position(self) -> dict[str, int]:
        """The fixed indices of axes other than the frame and volume axes."""
        return dict(self._position)

    def plane_source(self, t: int) -> FrameSource:
        """The planes of ``t`` as a frame source along the volume axis (for the label store's view of them)."""
        return self._planes_at(t)

    def intensity_range(self) -> tuple[float, float]:
        """Robust intensity percentiles of a sample of planes over every t (one range for the whole run)."""
        from napari_sam2.io.intensity import robust_range, sample_indices

        depth = self.shape[1]
        picks = sample_indices(self.times * depth, 32)
        return robust_range(self[int(i) // depth, int(i) % depth] for i in picks)

    @property
    def raw(self) -> RawStack:
        return self._raw

    def close(self) -> None:
        self._raw.close()


def open_volume_source(raw: RawStack, frame_axis: str, volume_axis: str, channel: ChannelSpec,
                       position: Mapping[str, int] | None) -> VolumeSource:
    """A :class:`VolumeSource`, with ``raw`` closed if the axes do not fit."""
    try:
        return VolumeSource(raw, frame_axis=frame_axis, volume_axis=volume_axis, channel=channel, position=position)
    except BaseException:
        raw.close()
        raise
