"""Memory encoder against Meta's (sam2==1.1.0), with the reference's weights."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_sam2.model.config import get_config
from napari_sam2.model.memory_encoder import build_memory_encoder
from tests.reference import relative_error, require_reference

TOL = 1e-5


@pytest.fixture(scope="module")
def reference_encoder(reference_tiny_512):
    """A copy of the reference encoder whose layer scales (init 1e-6) and norms are far from their init, so that
    the ConvNeXt blocks count in the output."""
    module = copy.deepcopy(reference_tiny_512.memory_encoder)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in module.fuser.layers:
            block.gamma.copy_(0.5 * torch.randn(block.gamma.shape, generator=gen))
        for norm in module.modules():
            if type(norm).__name__ == "LayerNorm2d":
                norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=gen))
                norm.bias.copy_(0.2 * torch.randn(norm.bias.shape, generator=gen))
    return module.eval()


def ours_from(reference):
    ours = build_memory_encoder(get_config("sam2.1_hiera_tiny", 512)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours


def test_state_dict_round_trip(reference_tiny_512):
    require_reference()
    reference = reference_tiny_512.memory_encoder
    ours = ours_from(reference)
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == theirs
    assert "mask_downsampler.encoder.12.weight" in theirs and "fuser.layers.1.gamma" in theirs
    assert not list(ours.buffers())
    copy.deepcopy(reference).load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("skip_mask_sigmoid", [True, False])
@torch.no_grad()
def test_matches_reference(reference_encoder, skip_mask_sigmoid):
    gen = torch.Generator().manual_seed(0)
    pix_feat = torch.randn(2, 256, 32, 32, generator=gen)
    masks = 10 * torch.randn(2, 1, 512, 512, generator=gen)
    if skip_mask_sigmoid:  # what SAM 2 passes: scaled sigmoid of the logits
        masks = torch.sigmoid(masks) * 20 - 10
    expected = reference_encoder(pix_feat.clone(), masks.clone(), skip_mask_sigmoid=skip_mask_sigmoid)
    features, pos = ours_from(reference_encoder)(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    assert features.shape == pos.shape == (2, 64, 32, 32)
    assert relative_error(features, expected["vision_features"]) <= TOL
    assert relative_error(pos, expected["vision_pos_enc"][0]) <= TOL


@torch.no_grad()
def test_mask_matters(reference_encoder):
    """The mask path is not negligible, so the comparison above can fail on it."""
    ours = ours_from(reference_encoder)
    pix_feat = torch.randn(1, 256, 32, 32)
    a, _ = ours(pix_feat, torch.zeros(1, 1, 512, 512))
    b, _ = ours(pix_feat, torch.ones(1, 1, 512, 512))
    assert relative_error(a, b) > 1e-3


@pytest.mark.parametrize("channels, kernel, stride, padding, size",
                         [(4, 3, 2, 1, 32), (2, 3, 1, 0, 17), (4, 4, 4, 0, 16)])
def test_a_convolution_as_a_product_of_unfolded_patches_equals_the_convolution(channels, kernel, stride, padding,
                                                                               size):
    """What the mask downsampler runs on CUDA for its 4-channel convolution (cuDNN's kernels for few channels are
    slow), against PyTorch's convolution: same shape, same values up to the order of the sums."""
    from napari_sam2.model.memory_encoder import conv_as_matmul

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, 16, kernel, stride=stride, padding=padding)
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        want, got = conv(x), conv_as_matmul(x, conv)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
