"""A frame result's owner map (which object each pixel goes to) merges into the label store exactly as its logits do.

The command's writer moves only that (H, W) map off the GPU instead of every object's float logits; the store's
merge rule must give the same frame either way — overlaps, ties, NaN, objects painted by hand — and fall back to the
logits where the rule drops an object (one painted by hand on that frame).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine.result import FrameResult, owner_index
from napari_sam2.io.merge import MANUAL, PROMPT, PROPAGATION, merge_result

IDS = (3, 7, 9, 12)


def _logits(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(len(IDS), 24, 32)).astype(np.float32)
    logits[1, :4] = logits[2, :4] = 1.5  # a tie between positive objects: the first wins
    logits[0, 5, :10] = np.nan  # NaN never claims a pixel
    logits[:, 10:12] = -3.0  # nobody
    return logits


class _Counting(FrameResult):
    """A FrameResult that counts how often its float logits are read."""

    __slots__ = ("reads",)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.reads = 0

    @property
    def logits(self) -> np.ndarray:
        self.reads += 1
        return super().logits


def _result(logits: np.ndarray) -> _Counting:
    return _Counting(0, IDS, torch.from_numpy(logits.copy()), torch.zeros(len(IDS)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("provenance", "source", "reads"), [
    ({}, PROPAGATION, 0),
    ({5: MANUAL, 3: PROPAGATION}, PROPAGATION, 0),  # a hand-painted object not in the result keeps its pixels
    ({7: MANUAL}, PROPAGATION, 1),  # a carried object painted by hand is dropped: the others' logits decide
    ({7: MANUAL}, PROMPT, 0),  # a prompt replaces the painting: every object carried
])
def test_merging_the_owner_map_equals_merging_the_logits(seed, provenance, source, reads):
    logits = _logits(seed)
    current = np.zeros(logits.shape[1:], dtype=np.uint32)
    current[::3, ::2] = 5  # painted by hand in some cases
    current[1::4, 1::3] = 7
    expected = merge_result(current, provenance, IDS, logits, source)
    result = _result(logits)
    got = merge_result(current, provenance, IDS, result, source)
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert result.reads == reads


def test_owner_index_picks_the_highest_positive_logit_first_on_ties_and_ignores_nan():
    logits = torch.tensor([[[0.5, np.nan, -1.0, 2.0]], [[0.9, 0.1, -2.0, 2.0]], [[0.2, np.nan, -0.5, 1.0]]])
    np.testing.assert_array_equal(owner_index(logits).numpy(), [[1, 1, -1, 0]])
    assert owner_index(logits).dtype == torch.int16
    assert owner_index(torch.zeros(0, 2, 2)).tolist() == [[-1, -1], [-1, -1]]


def test_a_result_read_as_logits_first_gives_the_same_owners():
    logits = _logits(4)
    on_host = _result(logits)
    _ = on_host.logits  # now held as numpy
    np.testing.assert_array_equal(on_host.owners, _result(logits).owners)
