"""The training forward pass is the inference path: for the same prompts it gives the session's masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.model import build_sam2
from napari_sam2.train.forward import InitialPrompt, final_masks, forward_clips
from napari_sam2.train.interaction import PromptSchedule
from tests.engine.reference_session import with_objects_present

SIZE, FRAMES = 256, 5


def _frames() -> np.ndarray:
    """A bright disc drifting right on a dark ramp: (T, S, S) uint8 (normalised identically by both paths)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    frames = []
    for t in range(FRAMES):
        disc = (yy - 100) ** 2 + (xx - 90 - 6 * t) ** 2 < 30**2
        frames.append((40 + xx // 8 + 150 * disc).astype(np.uint8))
    return np.stack(frames)


def _images(frames: np.ndarray, session: Session) -> torch.Tensor:
    return torch.stack([session.preparer.prepare(t) for t in range(len(frames))])[None]


class FixedUser:
    """Clicks given in advance: initial[frame] and correction[frame] as (x, y, label) per object."""

    def __init__(self, initial: dict, correction: dict) -> None:
        self._initial, self._correction = initial, correction

    def initial(self, frame, gt):
        pts = torch.tensor([[[x, y]] for x, y, _ in self._initial[frame]], dtype=torch.float32)
        return InitialPrompt(pts, torch.tensor([[lab] for _, _, lab in self._initial[frame]], dtype=torch.int32))

    def correction(self, frame, gt, pred):
        pts = torch.tensor([[[x, y]] for x, y, _ in self._correction[frame]], dtype=torch.float32)
        return pts, torch.tensor([[lab] for _, _, lab in self._correction[frame]], dtype=torch.int32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return with_objects_present(build_sam2("sam2.1_hiera_tiny", image_size=SIZE))


@pytest.mark.parametrize("correct_at", [None, 3])
def test_training_forward_equals_session(model, correct_at):
    frames = _frames()
    session = Session(model, frames, device="cpu", fill_hole_area=0, cache_memory_kv=False)
    objects = {1: (90, 100), 2: (200, 40)}  # (x, y): the disc, and a spot of background
    for obj_id, (x, y) in objects.items():
        session.add_points(0, obj_id, [[y, x]], [1])
    list(session.propagate())
    correction = {obj: (x + 12, y, 0) for obj, (x, y) in objects.items()}
    if correct_at is not None:
        for obj_id, (x, y, lab) in correction.items():
            session.add_points(correct_at, obj_id, [[y, x]], [lab])
        list(session.propagate(start=correct_at))
    expected = torch.stack([torch.from_numpy(session.result(t).logits) for t in range(FRAMES)])  # (T, 2, H, W)

    user = FixedUser({0: [(x, y, 1) for x, y in objects.values()]},
                     {correct_at: list(correction.values())} if correct_at is not None else {})
    schedule = PromptSchedule((0,), True, False, () if correct_at is None else (correct_at,), 1)
    masks = torch.zeros(1, FRAMES, 2, SIZE, SIZE, dtype=torch.bool)
    with torch.no_grad():
        results = forward_clips(model, _images(frames, session), masks, schedule, user, memory_dtype=torch.bfloat16)
    low = final_masks(results, FRAMES)[:, :, 0]  # (T, 2, S/4, S/4)
    got = torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    session.close()
    assert got.shape == expected.shape
    scale = expected.abs().max()
    assert ((got - expected).abs().max() / scale) < 1e-4
    assert ((got > 0) == (expected > 0)).float().mean() > 0.9999
