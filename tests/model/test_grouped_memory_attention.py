"""Memory attention of a batch whose objects have memories of different lengths (``condition_on_memory_groups``)."""

from __future__ import annotations

import pytest
import torch

from napari_sam2.model import FrameFeatures, PointerMemory, SpatialMemory, build_sam2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2("sam2.1_hiera_tiny", image_size=256).eval()


def group(count: int, slots: tuple[int, ...], distances: tuple[int, ...], first_id: int):
    """``count`` objects with a spatial memory per slot and a pointer per distance, random."""
    spatial = [SpatialMemory(torch.randn(count, 64, 16, 16), torch.randn(1, 64, 16, 16), slot) for slot in slots]
    pointers = [PointerMemory(torch.randn(count, 256), d) for d in distances]
    ids = [tuple(range(first_id + j * count, first_id + (j + 1) * count)) for j in range(len(slots))]
    return spatial, pointers, ids


def test_grouped_memory_attention_equals_each_group_alone(model):
    torch.manual_seed(1)
    features = FrameFeatures(torch.randn(1, 256, 16, 16), torch.randn(1, 256, 16, 16),
                             (torch.randn(1, 32, 64, 64), torch.randn(1, 64, 32, 32)))
    groups = [group(2, (0,), (1,), 100), group(3, (0, 5, 6), (1, 2), 200), group(1, (0, 4, 5, 6), (3, 1, 2), 300)]
    with torch.inference_mode():
        grouped = model.condition_on_memory_groups(features.expand(6), groups, num_frames=10,
                                                   kv_cache=model.new_kv_cache())
        alone = [model.condition_on_memory(features.expand(len(ids[0])), spatial, pointers, num_frames=10)
                 for spatial, pointers, ids in groups]
    assert grouped.shape == (6, 256, 16, 16)
    torch.testing.assert_close(grouped, torch.cat(alone), rtol=1e-4, atol=1e-4)
    # the groups' memories matter: objects of different groups get different features
    assert (alone[0][0] - alone[1][0]).abs().mean() > 1e-2


def test_grouped_memory_attention_refuses_groups_that_do_not_cover_the_batch(model):
    features = FrameFeatures(torch.randn(1, 256, 16, 16), torch.randn(1, 256, 16, 16),
                             (torch.randn(1, 32, 64, 64), torch.randn(1, 64, 32, 32)))
    with pytest.raises(ValueError, match="groups of 2 objects for features of 3"):
        model.condition_on_memory_groups(features.expand(3), [group(2, (0,), (1,), 1)], num_frames=10,
                                         kv_cache=model.new_kv_cache())
