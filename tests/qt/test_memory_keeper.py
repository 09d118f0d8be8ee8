"""The engine's memory of a widget session, saved in the background and restored only where it fits: the real tiny
model (random weights, image size 256) on a small stack; no Qt."""

from __future__ import annotations

import numpy as np

from napari_sam2._qt.memory_keeper import MemoryKeeper, prompts_digest
from napari_sam2._qt.prompts import FramePrompt
from napari_sam2.io.session_memory import SavedMemory
from tests.qt import conftest


def session():
    from napari_sam2.engine import Session

    return Session(conftest.test_model_factory(), conftest.cell_stack(frames=3, size=64), device="cpu")


def test_a_saved_memory_comes_back_only_for_the_same_weights_image_and_prompts(tmp_path):
    prompts = [((1, 0), FramePrompt(np.array([[30.0, 30.0]]), np.array([1], np.int8)))]
    about = {"weights": "tiny (test)", "image": "3:abc", "channel": "None", "prompts": prompts_digest(prompts)}
    live = session()
    live.add_points(0, 1, [[30, 30]], [1])
    for _ in live.propagate():
        pass
    keeper = MemoryKeeper(SavedMemory(tmp_path, "t"))
    keeper.capture(live, about)
    assert keeper.flush(timeout=60) and keeper.writes == 1 and keeper.last_bytes > 0

    other_prompts = prompts_digest([*prompts, ((1, 2), FramePrompt(np.array([[9.0, 9.0]]), np.array([0], np.int8)))])
    for changed, word in (({"weights": "sam2.1_hiera_tiny"}, "model weights"), ({"image": "3:abd"}, "image"),
                          ({"prompts": other_prompts}, "prompts")):
        fresh = session()
        restored = keeper.restore(fresh, {**about, **changed})
        assert not restored.loaded and restored.note.endswith(f"for other {word}") and fresh.obj_ids == ()

    reopened = session()
    assert keeper.restore(reopened, about).loaded
    assert reopened.obj_ids == (1,) and reopened.prompted_frames(1) == [0]
    correction = ([[50, 20]], [0])  # the same correction on a tracked frame, live and reopened
    assert np.array_equal(reopened.add_points(2, 1, *correction).logits, live.add_points(2, 1, *correction).logits)
