"""The three layers a session adds to the viewer — clicks (Points), boxes (Shapes), labels (Labels, backed by the
zarr label store) — and the translation between their contents and per-frame prompts and label planes.

All three share the image layer's scale and translation and the label store's axes (the image's without ``c``),
so a layer data coordinate is a pixel index of the stack; y and x are the last two axes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from napari_sam2._qt.layer_stack import StackChoice
from napari_sam2._qt.prompts import Key, PromptBook, group_boxes, group_points

POSITIVE_COLOUR = "#32ff6a"
NEGATIVE_COLOUR = "#ff3355"
UNKNOWN_LABEL_COLOUR = "#d0d0d0"
TAG_KEY = "napari_sam2"  # layer.metadata key marking the layers of a session


def _rgba(colour: str, alpha: float = 1.0) -> np.ndarray:
    text = colour.lstrip("#")
    return np.array([int(text[i : i + 2], 16) / 255 for i in (0, 2, 4)] + [alpha], np.float32)


def tagged_layer(viewer: Any, tag: str, role: str) -> Any:
    """The layer of ``viewer`` that a session tagged ``tag`` made for ``role`` ("labels", "boxes", "clicks")."""
    for layer in viewer.layers:
        if (layer.metadata or {}).get(TAG_KEY) == {"session": tag, "role": role}:
            return layer
    return None


class SessionLayers:
    """Creates and owns the session's Points, Shapes and Labels layers in ``viewer``.

    ``tag`` names the session's label store: layers that an earlier session on the same store left in the viewer
    (its dock closed, the layers kept) are taken over instead of adding new ones."""

    def __init__(
        self, viewer: Any, image: Any, choice: StackChoice, labels_array: Any, frame_shape: tuple[int, int],
        tag: str = "",
    ):
        self.viewer = viewer
        self.choice = choice
        self.ndim = len(choice.label_axes)
        self.yx_dims = (self.ndim - 2, self.ndim - 1)
        pad = self.ndim - min(self.ndim, len(image.scale))  # a single 2D image: the labels have one frame axis more
        geometry = {"scale": (1.0,) * pad + tuple(image.scale)[-self.ndim :],
                    "translate": (0.0,) * pad + tuple(image.translate)[-self.ndim :]}
        base = image.name
        kept = {role: tagged_layer(viewer, tag, role) if tag else None for role in ("labels", "boxes", "clicks")}
        self.labels = kept["labels"]
        self.replaced_labels: Any = None  # what a taken-over labels layer showed before (see the controller)
        if self.labels is not None:  # now backed by this session's store
            self.replaced_labels = self.labels.data
            self.labels.data = labels_array
        else:
            self.labels = viewer.add_labels(labels_array, name=f"{base} SAM 2 labels", opacity=0.6, **geometry)
        self.shapes = kept["boxes"] or viewer.add_shapes(
            ndim=self.ndim, name=f"{base} SAM 2 boxes", shape_type="rectangle", face_color="transparent",
            edge_width=max(1.0, min(frame_shape) / 200), features={"obj_id": np.empty(0, int)}, **geometry,
        )
        self.points = kept["clicks"] or viewer.add_points(
            np.empty((0, self.ndim)), ndim=self.ndim, name=f"{base} SAM 2 clicks",
            size=max(5.0, min(frame_shape) / 25), border_width=0.25, border_width_is_relative=True,
            features={"obj_id": np.empty(0, int), "label": np.empty(0, int)}, **geometry,
        )
        for layer, role in ((self.labels, "labels"), (self.shapes, "boxes"), (self.points, "clicks")):
            layer.metadata = {**(layer.metadata or {}), TAG_KEY: {"session": tag, "role": role}}
        self.points.feature_defaults = {"obj_id": 1, "label": 1}
        self.shapes.feature_defaults = {"obj_id": 1}
        self.points.mode = "add"
        self.viewer.layers.selection.active = self.points

    @property
    def all(self) -> list[Any]:
        return [self.points, self.shapes, self.labels]

    def remove(self) -> None:
        for layer in self.all:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    # -------------------------------------------------------------- where the viewer is
    def current_point(self) -> np.ndarray:
        """The viewer's current position in the layers' data coordinates."""
        world = np.asarray(self.viewer.dims.point)[-self.ndim :]
        return np.asarray(self.labels.world_to_data(world), np.float64)

    def current_frame(self) -> int:
        return int(round(float(self.current_point()[self.choice.frame_dim])))

    def go_to_frame(self, frame: int) -> None:
        """Move the viewer's slider of the frame axis to ``frame``."""
        point = self.current_point()
        point[self.choice.frame_dim] = frame
        world = np.asarray(self.labels.data_to_world(point))
        axis = self.viewer.dims.ndim - self.ndim + self.choice.frame_dim
        self.viewer.dims.set_point(axis, float(world[self.choice.frame_dim]))

    def on_session_plane(self, coords: Mapping[str, int] | np.ndarray) -> bool:
        """Whether a data point lies on the session's plane (other non-spatial axes at the session's position)."""
        axes = self.choice.label_axes
        return all(int(round(float(coords[axes.index(a)]))) == v for a, v in self.choice.position.items())

    def _plane_point(self, frame: int) -> list[float]:
        point = [0.0] * self.ndim
        for a, v in self.choice.position.items():
            point[self.choice.label_axes.index(a)] = float(v)
        point[self.choice.frame_dim] = float(frame)
        return point

    # -------------------------------------------------------------- prompts in the layers
    def read_points(self) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
        """Clicks on the session's plane, by (object, frame)."""
        data = np.asarray(self.points.data).reshape(-1, self.ndim)
        keep = np.array([self.on_session_plane(p) for p in data], bool)
        features = self.points.features
        return group_points(data[keep], features["obj_id"].to_numpy()[keep], features["label"].to_numpy()[keep],
                            self.choice.frame_dim, self.yx_dims)

    def read_boxes(self) -> dict[Key, tuple[float, float, float, float]]:
        """Rectangles (of at least one pixel each way) on the session's plane, by (object, frame)."""
        shapes, ids = [], []
        for vertices, kind, obj_id in zip(self.shapes.data, self.shapes.shape_type, self.shapes.features["obj_id"],
                                          strict=True):
            span = np.ptp(np.asarray(vertices)[:, list(self.yx_dims)], axis=0)
            if kind == "rectangle" and (span >= 1).all() and self.on_session_plane(vertices[0]):
                shapes.append(vertices)
                ids.append(obj_id)
        return group_boxes(shapes, ids, self.choice.frame_dim, self.yx_dims)

    def drop_replaced_boxes(self) -> None:
        """Remove rectangles that a later box of the same object on the same frame replaced."""
        seen: set[Key] = set()
        doomed = set()
        for i in range(self.shapes.nshapes - 1, -1, -1):
            vertices = np.asarray(self.shapes.data[i])
            key = (int(self.shapes.features["obj_id"].iloc[i]), int(round(float(vertices[0, self.choice.frame_dim]))))
            if key in seen and self.on_session_plane(vertices[0]):
                doomed.add(i)
            seen.add(key)
        if doomed:
            self.shapes.selected_data = doomed
            self.shapes.remove_selected()

    def show_prompts(self, book: PromptBook) -> None:
        """Replace the Points and Shapes layers' contents by the clicks and boxes of ``book``."""
        rows, obj_ids, labels, boxes, box_ids = [], [], [], [], []
        y, x = self.yx_dims
        for (obj_id, frame), prompt in book.items():
            for (py, px), label in zip(prompt.points, prompt.labels, strict=True):
                point = self._plane_point(frame)
                point[y], point[x] = py, px
                rows.append(point)
                obj_ids.append(obj_id)
                labels.append(int(label))
            if prompt.box is not None:
                y0, x0, y1, x1 = prompt.box
                corners = []
                for cy, cx in ((y0, x0), (y0, x1), (y1, x1), (y1, x0)):
                    corner = self._plane_point(frame)
                    corner[y], corner[x] = cy, cx
                    corners.append(corner)
                boxes.append(np.asarray(corners))
                box_ids.append(obj_id)
        defaults = dict(self.points.feature_defaults.iloc[0])
        self.points.data = np.asarray(rows, np.float64).reshape(-1, self.ndim)
        self.points.features = {"obj_id": np.asarray(obj_ids, int), "label": np.asarray(labels, int)}
        self.points.feature_defaults = defaults
        self.points.selected_data = set()
        shape_defaults = dict(self.shapes.feature_defaults.iloc[0])
        self.shapes.data = []
        if boxes:
            self.shapes.add_rectangles(boxes)
        self.shapes.features = {"obj_id": np.asarray(box_ids, int)}
        self.shapes.feature_defaults = shape_defaults

    def remove_object_prompts(self, obj_id: int) -> None:
        """Delete every click and box of ``obj_id`` from the layers."""
        keep = self.points.features["obj_id"].to_numpy() != obj_id
        if not keep.all():
            self.points.selected_data = set(np.flatnonzero(~keep).tolist())
            self.points.remove_selected()
        doomed = set(np.flatnonzero(self.shapes.features["obj_id"].to_numpy() == obj_id).tolist())
        if doomed:
            self.shapes.selected_data = doomed
            self.shapes.remove_selected()

    # -------------------------------------------------------------- colours and the current object
    def set_current(self, obj_id: int, positive: bool) -> None:
        """New clicks, boxes and paint go to ``obj_id``; new clicks are positive or negative."""
        self.points.feature_defaults = {"obj_id": obj_id, "label": int(positive)}
        self.shapes.feature_defaults = {"obj_id": obj_id}
        if self.labels.selected_label != obj_id:
            self.labels.selected_label = obj_id

    def recolour(self, colours: Mapping[int, str], hidden: Iterable[int] = ()) -> None:
        """Clicks: face green (positive) or red (negative), border in the object's colour; boxes in the object's
        colour; labels in the objects' colours, hidden objects transparent."""
        hidden = set(hidden)
        features = self.points.features
        if len(features):
            labels = features["label"].to_numpy()
            ids = features["obj_id"].to_numpy()
            self.points.face_color = np.where(labels[:, None] > 0, _rgba(POSITIVE_COLOUR), _rgba(NEGATIVE_COLOUR))
            self.points.border_color = np.stack([_rgba(colours.get(int(o), UNKNOWN_LABEL_COLOUR)) for o in ids])
            self.points.shown = ~np.isin(ids, list(hidden))
        if self.shapes.nshapes:
            ids = self.shapes.features["obj_id"].to_numpy()
            self.shapes.edge_color = np.stack([
                _rgba(colours.get(int(o), UNKNOWN_LABEL_COLOUR), 0.0 if int(o) in hidden else 1.0) for o in ids
            ])
        colour_dict: dict[int | None, np.ndarray] = {None: _rgba(UNKNOWN_LABEL_COLOUR), 0: np.zeros(4, np.float32)}
        for obj_id, colour in colours.items():
            colour_dict[int(obj_id)] = np.zeros(4, np.float32) if obj_id in hidden else _rgba(colour)
        self.labels.colormap = DirectLabelColormap(color_dict=colour_dict)

    def refresh_labels(self, frames: Iterable[int] | None = None) -> None:
        """Redraw the labels if one of ``frames`` (all, if None) is on screen: napari does not notice writes into
        the zarr array behind the layer."""
        if frames is None or self.current_frame() in set(frames):
            self.labels.refresh()
