"""Checking user prompts and converting them from napari's pixel order to the model's input space.

napari gives (y, x) pixel coordinates of the original frame; SAM takes (x, y) in model-input pixels.
The conversion is the reference's (``add_new_points_or_box``): divide by (W, H), multiply by image_size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .state import PointPrompt

EDGE_TOLERANCE = 0.5  # napari reports clicks on the outer half of edge pixels as ±0.5 beyond the centre


class PromptError(ValueError):
    """A prompt that cannot be used: empty, malformed, NaN, or outside the frame."""


def check_obj_id(obj_id: Any) -> int:
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or not 0 < obj_id < 2**32:
        raise PromptError(f"object ids are integers from 1 to 2**32 - 1 (they become label values), got {obj_id!r}")
    return int(obj_id)


def check_frame(frame: Any, num_frames: int) -> None:
    """A frame index of a stack of ``num_frames``: TypeError if it is not an integer, IndexError if outside."""
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError(f"frame must be an integer index, got {frame!r}")
    if not 0 <= frame < num_frames:
        raise IndexError(f"frame {frame} is outside the stack (0 … {num_frames - 1})")


def known_object(objects: dict, obj_id: int) -> Any:
    """``objects[obj_id]``, or a KeyError that lists the known ids."""
    try:
        return objects[obj_id]
    except KeyError:
        raise KeyError(f"no object with id {obj_id}; objects: {list(objects)}") from None


def _to_model_space(yx: np.ndarray, height: int, width: int, image_size: int) -> torch.Tensor:
    xy = torch.tensor(yx[:, ::-1].copy(), dtype=torch.float32)[None]
    return xy / torch.tensor([width, height]) * image_size


def _check_inside(yx: np.ndarray, height: int, width: int, what: str) -> None:
    if not np.isfinite(yx).all():
        raise PromptError(f"{what} contain NaN or infinite coordinates: {yx.tolist()}")
    low, high_y, high_x = -EDGE_TOLERANCE, height - 1 + EDGE_TOLERANCE, width - 1 + EDGE_TOLERANCE
    outside = (yx[:, 0] < low) | (yx[:, 0] > high_y) | (yx[:, 1] < low) | (yx[:, 1] > high_x)
    if outside.any():
        raise PromptError(
            f"{what} {yx[outside].tolist()} lie outside the frame of {height} × {width} pixels "
            "(coordinates are (y, x) pixels)"
        )


def clicks_to_points(points: Any, labels: Any, height: int, width: int, image_size: int) -> PointPrompt:
    """points (P, 2) as (y, x) pixels, labels (P,) of 1 (positive) / 0 (negative) → a model-space prompt."""
    if points is None or labels is None:
        raise PromptError("points and labels must be given together")
    yx = np.asarray(points, dtype=np.float64).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
    lab = np.asarray(labels).reshape(-1)
    if len(yx) == 0:
        raise PromptError("no points given: a click prompt needs at least one point")
    if len(lab) != len(yx):
        raise PromptError(f"{len(yx)} points but {len(lab)} labels")
    if not np.isin(lab, (0, 1)).all():
        raise PromptError(f"point labels must be 1 (positive) or 0 (negative), got {sorted(set(lab.tolist()))}")
    _check_inside(yx, height, width, "points")
    coords = _to_model_space(yx, height, width, image_size)
    return PointPrompt(coords, torch.tensor(lab.astype(np.int32))[None])


def box_to_points(box: Any, height: int, width: int, image_size: int) -> PointPrompt:
    """A box (y0, x0, y1, x1) in pixels → its two corners as points with labels 2 and 3."""
    corners = np.asarray(box, dtype=np.float64).reshape(-1)
    if corners.size != 4:
        raise PromptError(f"a box is (y0, x0, y1, x1), got {np.asarray(box).tolist()}")
    yx = corners.reshape(2, 2)
    _check_inside(yx, height, width, "box corners")
    yx = np.stack([yx.min(0), yx.max(0)])
    if (yx[1] - yx[0] <= 0).any():
        raise PromptError(f"the box {corners.tolist()} has no area")
    return PointPrompt(_to_model_space(yx, height, width, image_size), torch.tensor([[2, 3]], dtype=torch.int32))


def check_mask(mask: Any, height: int, width: int) -> torch.Tensor:
    """A (H, W) mask prompt (bool, or numbers where > 0 is inside) → (1, 1, H, W) float32 {0, 1}."""
    array = np.asarray(mask)
    if array.shape != (height, width):
        raise PromptError(f"the mask has shape {array.shape}, the frame is {(height, width)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise PromptError("the mask contains NaN or infinite values")
    if array.dtype != bool:
        array = array > 0
    return torch.from_numpy(array.astype(np.float32))[None, None]
