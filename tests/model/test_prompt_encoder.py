"""Differential tests of the prompt encoder against Meta's (sam2==1.1.0)."""

from __future__ import annotations

import pytest
import torch

from napari_sam2.model.config import get_config
from napari_sam2.model.mask_decoder import build_prompt_encoder_and_mask_decoder
from napari_sam2.model.prompt_encoder import PromptEncoder
from tests.reference import relative_error, require_reference

TOL = 1e-5
IMAGE_SIZE = 512
FEAT = IMAGE_SIZE // 16


@pytest.fixture(scope="module")
def encoders(reference_tiny_512):
    """(ours, Meta's) prompt encoders with the same (random) weights."""
    require_reference()
    ours, _ = build_prompt_encoder_and_mask_decoder(get_config("sam2.1_hiera_tiny", IMAGE_SIZE))
    ours.load_state_dict(reference_tiny_512.sam_prompt_encoder.state_dict(), strict=True)
    return ours.eval(), reference_tiny_512.sam_prompt_encoder


def _points(batch: int, labels: list[list[int]], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(batch, len(labels[0]), 2, generator=g) * (IMAGE_SIZE - 1)
    return coords, torch.tensor(labels, dtype=torch.int32)


def _boxes(batch: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(batch, 2, 2, generator=g) * (IMAGE_SIZE - 1)
    return torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)  # (B, 4) x0 y0 x1 y1


def _masks(batch: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 4 * FEAT, 4 * FEAT, generator=g) * 10


def test_state_dict_matches_reference_both_ways(encoders):
    ours, ref = encoders
    theirs = ref.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert "pe_layer.positional_encoding_gaussian_matrix" in ours.state_dict()  # a buffer, saved as in Meta's
    fresh = PromptEncoder(256, (FEAT, FEAT), (IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)
    fresh.load_state_dict(theirs, strict=True)
    ref_copy = type(ref)(256, (FEAT, FEAT), (IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)
    ref_copy.load_state_dict(ours.state_dict(), strict=True)


def test_dense_pe(encoders):
    ours, ref = encoders
    pe = ours.get_dense_pe()
    assert pe.shape == (1, 256, FEAT, FEAT)
    assert relative_error(pe, ref.get_dense_pe()) <= TOL


CASES = {
    # positive and negative clicks, one row with a padding point of its own; a padding point is appended
    "points": dict(points=([[1, 0, 1], [0, 1, -1], [1, 1, 1]]), box=False, mask=False, n_sparse=4),
    "box": dict(points=None, box=True, mask=False, n_sparse=2),
    "box_and_points": dict(points=([[1, 0], [0, 1], [1, -1]]), box=True, mask=False, n_sparse=4),
    "points_and_mask": dict(points=([[1], [0], [1]]), box=False, mask=True, n_sparse=2),
    "mask_only": dict(points=None, box=False, mask=True, n_sparse=0),
    "box_corner_labels": dict(points=([[2, 3, 1], [2, 3, 0], [2, 3, -1]]), box=False, mask=False, n_sparse=4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_prompts_match_reference(encoders, name):
    ours, ref = encoders
    case = CASES[name]
    batch = 3
    points = _points(batch, case["points"]) if case["points"] is not None else None
    boxes = _boxes(batch) if case["box"] else None
    masks = _masks(batch) if case["mask"] else None
    with torch.no_grad():
        sparse, dense = ours(points=points, boxes=boxes, masks=masks)
        ref_sparse, ref_dense = ref(points=points, boxes=boxes, masks=masks)
    assert sparse.shape == (batch, case["n_sparse"], 256)
    assert dense.shape == (batch, 256, FEAT, FEAT)
    assert sparse.shape == ref_sparse.shape
    if sparse.numel():  # relative_error cannot reduce an empty tensor
        assert relative_error(sparse, ref_sparse) <= TOL
    assert relative_error(dense, ref_dense) <= TOL
    if masks is None:  # broadcast no_mask_embed
        assert torch.equal(dense[2, :, 5, 7], ours.no_mask_embed.weight[0])


def test_padding_point_is_not_a_point_embed(encoders):
    ours, _ = encoders
    with torch.no_grad():
        sparse, _ = ours(points=_points(2, [[1, -1], [0, 1]]), boxes=None, masks=None)
    not_a_point = ours.not_a_point_embed.weight[0]
    assert torch.equal(sparse[0, 1], not_a_point) and torch.equal(sparse[0, 2], not_a_point)
    assert not torch.equal(sparse[1, 1], not_a_point)


def test_no_prompt_at_all(encoders):
    ours, ref = encoders
    with torch.no_grad():
        sparse, dense = ours(points=None, boxes=None, masks=None)
        ref_sparse, ref_dense = ref(points=None, boxes=None, masks=None)
    assert sparse.shape == ref_sparse.shape == (1, 0, 256)
    assert relative_error(dense, ref_dense) <= TOL


def test_non_square_sizes_keep_x_and_y_apart():
    """A square image would hide a swapped (h, w): build both encoders at 256 x 384 pixels."""
    require_reference()
    from sam2.modeling.sam.prompt_encoder import PromptEncoder as RefPromptEncoder

    torch.manual_seed(3)
    ref = RefPromptEncoder(embed_dim=64, image_embedding_size=(16, 24), input_image_size=(256, 384), mask_in_chans=16)
    ours = PromptEncoder(64, (16, 24), (256, 384), mask_in_chans=16)
    ours.load_state_dict(ref.state_dict(), strict=True)
    g = torch.Generator().manual_seed(4)
    coords = torch.rand(2, 3, 2, generator=g) * torch.tensor([383.0, 255.0])
    labels = torch.tensor([[1, 0, 1], [0, 1, -1]], dtype=torch.int32)
    boxes = torch.tensor([[10.0, 20.0, 300.0, 200.0], [0.0, 0.0, 383.0, 255.0]])
    masks = torch.randn(2, 1, 64, 96, generator=g)
    with torch.no_grad():
        assert ours.get_dense_pe().shape == (1, 64, 16, 24)
        assert relative_error(ours.get_dense_pe(), ref.get_dense_pe()) <= TOL
        for prompts in [((coords, labels), None, None), ((coords, labels), boxes, masks)]:
            for mine, theirs in zip(ours(*prompts), ref(*prompts), strict=True):
                assert relative_error(mine, theirs) <= TOL
