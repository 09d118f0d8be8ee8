"""The shipped starter model: packaged weights that load offline by name and give real masks on the CPU."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_sam2.engine import Session
from napari_sam2.model import STARTER_NAME, build_sam2, fetch_checkpoint
from napari_sam2.model.hub import packaged_checkpoint


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No cache, no network: only what the package itself carries."""
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def starter():
    path = packaged_checkpoint(STARTER_NAME)
    assert path is not None, "the starter weights are not in the package"
    assert path.stat().st_size < 40e6
    return build_sam2(STARTER_NAME, path)


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float((pred & gt).sum() / (pred | gt).sum())


def test_loads_offline_by_name_and_is_the_default_without_a_published_checkpoint(offline):
    from napari_sam2.cli.weights import choose_model

    assert fetch_checkpoint(STARTER_NAME) == packaged_checkpoint(STARTER_NAME)
    notes: list[str] = []
    choice = choose_model(None, None, None, False, notify=notes.append)
    assert choice.name == STARTER_NAME and choice.checkpoint == packaged_checkpoint(STARTER_NAME)
    assert notes and STARTER_NAME in notes[0]
    model = build_sam2(STARTER_NAME, choice.checkpoint)
    assert model.image_size == 512


def test_segments_a_nucleus_from_one_click_in_seconds(starter):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :200]
    nucleus = ((yy - 90) / 22.0) ** 2 + ((xx - 110) / 16.0) ** 2 < 1
    image = (300 + 40 * np.sin(xx / 30.0) + 900 * nucleus + rng.normal(0, 40, (200, 200))).clip(0)
    started = time.perf_counter()
    session = Session(starter, image.astype(np.uint16)[None], device="cpu")
    result = session.add_points(0, 1, [[90, 110]], [1])
    seconds = time.perf_counter() - started
    session.close()
    assert _iou(result.masks[0], nucleus) >= 0.8
    assert seconds < 30


def test_segments_a_generated_nucleus_among_others(starter):
    from napari_sam2.train import synthetic_stack

    stack = synthetic_stack(np.random.default_rng(0), kind="nuclei", num_frames=1, size=256, dtype=np.uint16)
    labels = stack.labels[0]
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    obj = int(ids[np.argmax(areas)])
    truth = labels == obj
    ys, xs = np.nonzero(truth)
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    session = Session(starter, stack.frames, device="cpu")
    result = session.add_points(0, obj, [[ys[k], xs[k]]], [1])
    session.close()
    assert _iou(result.masks[0], truth) >= 0.8
    random = build_sam2(STARTER_NAME)  # the same click with untrained weights: the weights make the mask
    session = Session(random, stack.frames, device="cpu")
    assert _iou(session.add_points(0, obj, [[ys[k], xs[k]]], [1]).masks[0], truth) < 0.5
    session.close()
