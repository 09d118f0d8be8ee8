"""Differential tests: our Session gives the same video-resolution logits as Meta's SAM2VideoPredictor.

Float32 on the CPU, random weights copied across, tiny SAM 2.1 at image_size 512, hole filling off on both,
the same decoded JPEG frames for both. Every FrameResult is compared with the reference's output for the
same frame and object: relative error ≤ 1e-4 and ≥ 99.9 % of mask pixels equal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine.reference_session import SideBySide, blob_frames, decoded_jpeg_frames
from tests.reference import require_reference

require_reference()


@pytest.fixture
def side_by_side(reference_tiny_512, tmp_path):
    def make(num_frames, *, corrections_as_prompts=False, **frame_kw):
        frames = decoded_jpeg_frames(blob_frames(num_frames, **frame_kw), tmp_path / "jpg")
        return SideBySide(reference_tiny_512, tmp_path / "jpg", frames, corrections_as_prompts=corrections_as_prompts)

    return make


def test_two_objects_clicked_on_one_frame_propagated_forward(side_by_side):
    run = side_by_side(10)  # 10 frames: the FIFO of 6 recent memories drops its oldest
    run.points(0, 1, [[154, 154]], [1])
    run.points(0, 2, [[307, 282]], [1])
    run.points(0, 2, [[200, 200]], [0])  # a second, negative click refines object 2
    results = run.propagate()
    assert len(results) == 10 and results[-1].obj_ids == (1, 2)
    assert run.compared == 13


def test_box_on_one_frame_and_clicks_on_another_both_ways(side_by_side):
    run = side_by_side(7)
    run.box(3, 1, (110, 110, 200, 200))
    run.points(5, 1, [[190, 160], [150, 120]], [1, 0])
    run.points(5, 2, [[330, 290]], [1])
    run.propagate(start=3)
    run.propagate(start=3, reverse=True)
    assert run.compared == 3 + 4 + 4


@pytest.mark.parametrize("corrections_as_prompts", [False, True], ids=["reference-default", "as-prompts"])
def test_corrective_click_after_full_propagation(side_by_side, corrections_as_prompts):
    run = side_by_side(6, corrections_as_prompts=corrections_as_prompts)
    run.points(0, 1, [[154, 154]], [1])
    run.propagate()
    run.points(4, 1, [[178, 138], [240, 240]], [1, 0])  # a correction on a tracked frame
    again = run.propagate()
    assert [r.frame for r in again] == list(range(6))
    track = run.session._tracks[1]
    assert (4 in track.cond) == corrections_as_prompts


def test_object_added_mid_stack_after_tracking_started(side_by_side):
    run = side_by_side(6)
    run.points(0, 1, [[154, 154]], [1])
    run.propagate()
    run.points(3, 2, [[325, 294]], [1])  # object 2 only appears in the prompts at frame 3
    run.propagate()  # from frame 0: object 2 is tracked before its prompt from its frame-3 memory
    run.propagate(start=3, reverse=True)


def test_mask_prompt(side_by_side):
    run = side_by_side(5)
    yy, xx = np.mgrid[0:512, 0:512]
    mask = (yy - 160) ** 2 + (xx - 150) ** 2 < 45**2
    run.mask(1, 1, mask)
    run.points(1, 2, [[307, 282]], [1])
    run.propagate(start=1)
    run.propagate(start=1, reverse=True)


def test_object_disappears_and_comes_back(side_by_side, reference_tiny_512):
    head_bias = reference_tiny_512.sam_mask_decoder.pred_obj_score_head.layers[-1].bias
    saved = head_bias.detach().clone()
    try:
        # shift the object-score head so that random weights give both signs along the stack
        probe = side_by_side(8, vanish=(3, 4))
        probe.points(0, 1, [[154, 154]], [1])
        probe.propagate()
        scores = np.array(list(probe.reference_scores(1).values()))
        with torch.no_grad():
            head_bias -= float(np.median(scores[1:]))
        run = side_by_side(8, vanish=(3, 4))
        run.points(0, 1, [[154, 154]], [1])
        results = run.propagate()
        scores = [r.object_scores[0] for r in results]
        ref_scores = run.reference_scores(1)
        np.testing.assert_allclose(scores, [ref_scores[r.frame] for r in results], rtol=1e-4, atol=1e-4)
        signs = np.sign(scores[1:])
        assert (signs < 0).any() and (signs > 0).any(), f"scores did not change sign: {scores}"
        first_gone = int(np.argmax(signs < 0)) + 1
        assert (signs[first_gone:] > 0).any(), f"the object never came back: {scores}"
        assert not results[first_gone].masks[0].any()  # absent: an empty mask
    finally:
        with torch.no_grad():
            head_bias.copy_(saved)
