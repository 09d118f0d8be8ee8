"""The lineage as a napari Tracks layer: one track per object (its centroid on each frame where it has pixels) and the
division graph (daughter → parent), from ``napari_sam2.io.lineage.tracks_layer_data``; refreshed after Track all and
after every lineage override. Shown for stores whose frame axes are time, or time then depth (t, z, y, x): a Tracks
row is then [track, t, (z,) y, x], in the labels layer's own axes."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam2._qt.layers import TAG_KEY


class LineageTracks:
    """Owns the Tracks layer of a session in ``viewer``, placed like ``labels`` (the session's Labels layer)."""

    def __init__(self, viewer: Any, labels: Any, store: Any, tag: str) -> None:
        self.viewer = viewer
        self.labels = labels
        self.store = store
        self.tag = tag
        self.layer: Any = None

    @property
    def supported(self) -> bool:
        """Whether the store's frame axes are (any one axis) or (t, z): the Tracks rows then match its axes."""
        frame_axes = tuple(self.store.dimension_names[:-2])
        return len(frame_axes) == 1 or frame_axes == ("t", "z")

    def refresh(self) -> int:
        """Show the store's lineage now; returns the number of tracks (0: no layer)."""
        if not self.supported:
            return 0
        from napari_sam2.io.lineage import tracks_layer_data

        data, graph = tracks_layer_data(self.store)
        data = np.asarray(data, np.float64).reshape(-1, len(self.store.shape) + 1)
        if not len(data):
            self.remove()
            return 0
        if self.layer is None or self.layer not in self.viewer.layers:
            active = self.viewer.layers.selection.active  # adding a layer selects it: the user's choice comes back
            self.layer = self.viewer.add_tracks(
                data, graph=graph, name=f"{self.labels.name.removesuffix(' labels')} lineage",
                scale=self.labels.scale, translate=self.labels.translate, tail_length=30,
                metadata={TAG_KEY: {"session": self.tag, "role": "lineage"}},
            )
            self.viewer.layers.selection.active = active
        else:
            self.layer.graph = {}
            self.layer.data = data
            self.layer.graph = graph
        return len(np.unique(data[:, 0]))

    def remove(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None
