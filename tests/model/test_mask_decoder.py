"""Differential tests of the mask decoder (and its two-way transformer) against Meta's (sam2==1.1.0)."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_sam2.model.config import get_config
from napari_sam2.model.mask_decoder import (
    DecoderOutput,
    MaskDecoder,
    build_prompt_encoder_and_mask_decoder,
    stability_score,
)
from napari_sam2.model.transformer import TwoWayTransformer
from tests.reference import relative_error, require_reference

TOL = 1e-5
IMAGE_SIZE = 512
FEAT = IMAGE_SIZE // 16
C = 256


@pytest.fixture(scope="module")
def heads(reference_tiny_512):
    """(our prompt encoder, our decoder, Meta's decoder), all with the reference's (random) weights."""
    require_reference()
    encoder, decoder = build_prompt_encoder_and_mask_decoder(get_config("sam2.1_hiera_tiny", IMAGE_SIZE))
    encoder.load_state_dict(reference_tiny_512.sam_prompt_encoder.state_dict(), strict=True)
    decoder.load_state_dict(reference_tiny_512.sam_mask_decoder.state_dict(), strict=True)
    return encoder.eval(), decoder.eval(), reference_tiny_512.sam_mask_decoder


def _inputs(batch: int, n_tokens: int = 3, seed: int = 0, s0_scale: torch.Tensor | float = 1.0) -> dict:
    """Random decoder inputs for ``batch`` objects; feat_s0 is scaled per row by ``s0_scale``."""
    g = torch.Generator().manual_seed(seed)
    s0_scale = torch.as_tensor(s0_scale, dtype=torch.float32).reshape(-1, 1, 1, 1)
    return dict(
        image_embeddings=torch.randn(batch, C, FEAT, FEAT, generator=g),
        sparse_prompt_embeddings=torch.randn(batch, n_tokens, C, generator=g),
        dense_prompt_embeddings=torch.randn(batch, C, FEAT, FEAT, generator=g) * 0.1,
        high_res_features=[
            torch.randn(batch, C // 8, 4 * FEAT, 4 * FEAT, generator=g) * s0_scale,
            torch.randn(batch, C // 4, 2 * FEAT, 2 * FEAT, generator=g),
        ],
    )


def _run_both(ours: MaskDecoder, ref, image_pe: torch.Tensor, inputs: dict, multimask: bool):
    with torch.no_grad():
        mine = ours(image_pe=image_pe, multimask_output=multimask, **inputs)
        theirs = ref(image_pe=image_pe, multimask_output=multimask, repeat_image=False, **inputs)
    return mine, theirs


def _assert_close(mine: DecoderOutput, theirs) -> None:
    names = ("masks", "iou_pred", "sam_tokens", "object_score_logits")
    for name, ref_value in zip(names, theirs, strict=True):
        err = relative_error(getattr(mine, name), ref_value)
        assert err <= TOL, f"{name}: relative error {err:.2e}"


def test_state_dict_matches_reference_both_ways(heads):
    _, ours, ref = heads
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert {k: tuple(v.shape) for k, v in ours_sd.items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    for key in ("transformer.layers.0.self_attn.q_proj.weight", "transformer.final_attn_token_to_image.v_proj.bias",
                "transformer.norm_final_attn.weight", "obj_score_token.weight", "conv_s0.weight",
                "pred_obj_score_head.layers.2.bias", "output_hypernetworks_mlps.3.layers.2.weight"):
        assert key in ours_sd
    copy.deepcopy(ref).load_state_dict(ours_sd, strict=True)


@pytest.mark.parametrize("multimask", [True, False])
def test_decoder_matches_reference(heads, multimask):
    encoder, ours, ref = heads
    batch = 3
    inputs = _inputs(batch, seed=1)
    mine, theirs = _run_both(ours, ref, encoder.get_dense_pe(), inputs, multimask)
    m = 3 if multimask else 1
    assert mine.masks.shape == (batch, m, 4 * FEAT, 4 * FEAT)
    assert mine.iou_pred.shape == (batch, m)
    assert mine.sam_tokens.shape == (batch, m, C)  # multimask tokens for the object pointer (SAM 2.1)
    assert mine.object_score_logits.shape == (batch, 1)
    _assert_close(mine, theirs)


def test_decoder_on_encoded_prompts(heads):
    """Prompt encoder → decoder, points + mask prompt, as SAM2Base chains them."""
    encoder, ours, ref = heads
    g = torch.Generator().manual_seed(5)
    coords = torch.rand(2, 2, 2, generator=g) * IMAGE_SIZE
    labels = torch.tensor([[1, 0], [1, -1]], dtype=torch.int32)
    masks = torch.randn(2, 1, 4 * FEAT, 4 * FEAT, generator=g)
    with torch.no_grad():
        sparse, dense = encoder(points=(coords, labels), boxes=None, masks=masks)
    inputs = _inputs(2, seed=6)
    inputs.update(sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
    for multimask in (True, False):
        _assert_close(*_run_both(ours, ref, encoder.get_dense_pe(), inputs, multimask))


def test_dynamic_multimask_fallback(heads):
    """Single-mask output: rows whose token-0 mask is unstable fall back to the best multimask output.

    Scaling the stride-4 features of a row scales its mask logits: rows 0 and 1 (small) are unstable,
    rows 2 and 3 (large) stable.
    """
    encoder, ours, ref = heads
    inputs = _inputs(4, seed=1, s0_scale=[0.01, 1.0, 10.0, 100.0])
    image_pe = encoder.get_dense_pe()
    with torch.no_grad():
        all_masks, all_iou, _, _ = ours.predict_masks(image_pe=image_pe, **inputs)
    stable = stability_score(all_masks[:, 0], ours.dynamic_multimask_stability_delta)
    stable = stable >= ours.dynamic_multimask_stability_thresh
    assert stable.tolist() == [False, False, True, True], "test inputs no longer straddle the threshold"

    mine, theirs = _run_both(ours, ref, image_pe, inputs, multimask=False)
    _assert_close(mine, theirs)
    best = all_iou[:, 1:].argmax(dim=-1) + 1
    for row in range(4):
        source = 0 if stable[row] else best[row].item()
        assert torch.equal(mine.masks[row, 0], all_masks[row, source]), f"row {row}"
        assert torch.equal(mine.iou_pred[row, 0], all_iou[row, source]), f"row {row}"

    # in training mode there is no fallback: always the single-mask token
    with torch.no_grad():
        trained = ours.train()(image_pe=image_pe, multimask_output=False, **inputs)
    ours.eval()
    assert torch.equal(trained.masks, all_masks[:, :1])


@pytest.mark.parametrize("bias", [5.0, -5.0])
def test_object_score_sign(heads, bias):
    encoder, ours, ref = heads
    ours, ref = copy.deepcopy(ours), copy.deepcopy(ref)  # the reference fixture is shared: never modify it
    with torch.no_grad():
        ours.pred_obj_score_head.layers[2].bias.fill_(bias)
        ref.pred_obj_score_head.layers[2].bias.fill_(bias)
    inputs = _inputs(2, seed=7)
    for multimask in (True, False):
        mine, theirs = _run_both(ours, ref, encoder.get_dense_pe(), inputs, multimask)
        _assert_close(mine, theirs)
        assert bool((torch.sign(mine.object_score_logits) == (1 if bias > 0 else -1)).all())


@pytest.mark.parametrize("variant", ["sam2.0_heads", "plain_sam"])
def test_other_head_variants(variant):
    """Branches the SAM 2.1 config does not take: linear object-score head, no object score, no high-res
    features, single-mask token for the object pointer, no dynamic fallback."""
    require_reference()
    from sam2.modeling.sam.mask_decoder import MaskDecoder as RefMaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer as RefTwoWayTransformer

    dim, feat = 64, 8
    flags = dict(use_high_res_features=variant == "sam2.0_heads", iou_prediction_use_sigmoid=False,
                 pred_obj_scores=variant == "sam2.0_heads", pred_obj_scores_mlp=False,
                 use_multimask_token_for_obj_ptr=False, dynamic_multimask_via_stability=False)
    torch.manual_seed(8)
    ref = RefMaskDecoder(transformer_dim=dim, transformer=RefTwoWayTransformer(2, dim, 4, 128),
                         iou_head_hidden_dim=32, **flags).eval()
    ours = MaskDecoder(dim, TwoWayTransformer(2, dim, 4, 128), iou_head_hidden_dim=32, **flags).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    g = torch.Generator().manual_seed(9)
    inputs = dict(
        image_embeddings=torch.randn(2, dim, feat, feat, generator=g),
        image_pe=torch.randn(1, dim, feat, feat, generator=g),
        sparse_prompt_embeddings=torch.randn(2, 3, dim, generator=g),
        dense_prompt_embeddings=torch.randn(2, dim, feat, feat, generator=g),
        high_res_features=[torch.randn(2, dim // 8, 4 * feat, 4 * feat, generator=g),
                           torch.randn(2, dim // 4, 2 * feat, 2 * feat, generator=g)]
        if flags["use_high_res_features"] else None,
    )
    for multimask in (True, False):
        with torch.no_grad():
            mine = ours(multimask_output=multimask, **inputs)
            theirs = ref(multimask_output=multimask, repeat_image=False, **inputs)
        _assert_close(mine, theirs)
        assert mine.sam_tokens.shape == (2, 1, dim)
