"""SAM's mask decoder: image features and prompt embeddings → mask logits, IoU estimates, object score.

Follows ``sam2/modeling/sam/mask_decoder.py``; module names match Meta's so checkpoints load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from napari_sam2.model import fused_ops
from napari_sam2.model.common import MLP, LayerNorm2d
from napari_sam2.model.config import SAM2Config
from napari_sam2.model.prompt_encoder import PromptEncoder
from napari_sam2.model.transformer import TwoWayTransformer


@dataclass(frozen=True)
class DecoderOutput:
    """What :class:`MaskDecoder` returns for B objects, M = 3 with multimask output, else 1.

    masks: (B, M, 4h, 4w) mask logits; iou_pred: (B, M) estimated IoU of each mask;
    sam_tokens: (B, M', C) output token(s) for the object pointer, M' = 3 with multimask output and
    ``use_multimask_token_for_obj_ptr``, else 1 (always the single-mask token, even when the dynamic
    multimask fallback picked another mask); object_score_logits: (B, 1), > 0 when the object is present.
    """

    masks: torch.Tensor
    iou_pred: torch.Tensor
    sam_tokens: torch.Tensor
    object_score_logits: torch.Tensor


def stability_score(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """Area above +delta over area above −delta of (..., H, W) logits → (...); 1 where both areas are empty."""
    # formula of MaskDecoder._get_stability_scores in sam2/modeling/sam/mask_decoder.py
    flat = mask_logits.flatten(-2)
    area_inner = torch.sum(flat > delta, dim=-1).float()
    area_outer = torch.sum(flat > -delta, dim=-1).float()
    return torch.where(area_outer > 0, area_inner / area_outer, 1.0)


class MaskDecoder(nn.Module):
    """Predicts masks from image features (B, C, h, w) and prompt embeddings, one image row per object.

    Output tokens, in order: [object-score token], IoU token, 1 + ``num_multimask_outputs`` mask tokens;
    the prompt tokens follow. Mask token 0 gives the single-mask output, tokens 1.. the multimask outputs.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        use_multimask_token_for_obj_ptr: bool = True,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

        # (B, C, h, w) → (B, C/8, 4h, 4w)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            # applied by the caller to the stride-4 and stride-8 backbone features (SAM2Base.forward_image)
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1, stride=1)

        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            if pred_obj_scores_mlp:
                self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
            else:
                self.pred_obj_score_head = nn.Linear(transformer_dim, 1)

        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> DecoderOutput:
        """Masks for B objects, each with its own image row.

        image_embeddings (B, C, h, w); image_pe (1, C, h, w) from ``PromptEncoder.get_dense_pe()``;
        sparse_prompt_embeddings (B, N, C); dense_prompt_embeddings (B, C, h, w);
        high_res_features [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)], already through conv_s0 / conv_s1, or None.

        With ``multimask_output`` the 3 multimask outputs are returned; otherwise the single-mask output,
        replaced in eval mode (with ``dynamic_multimask_via_stability``) by the multimask output of highest
        estimated IoU wherever its stability score is below the threshold.
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, high_res_features
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self.select_stable_mask(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]

        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens = mask_tokens_out[:, 1:]
        else:
            sam_tokens = mask_tokens_out[:, 0:1]
        return DecoderOutput(masks, iou_pred, sam_tokens, object_score_logits)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All outputs before selection: masks (B, 1+M, 4h, 4w), iou_pred (B, 1+M),
        mask tokens (B, 1+M, C) and object_score_logits (B, 1), M = ``num_multimask_outputs``."""
        batch = sparse_prompt_embeddings.shape[0]
        if image_embeddings.shape[0] != batch:
            raise ValueError(f"{image_embeddings.shape[0]} image rows for {batch} prompt rows")
        if image_pe.shape[0] != 1:
            raise ValueError("image_pe must have batch size 1 (from PromptEncoder.get_dense_pe())")

        learned = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            learned.insert(0, self.obj_score_token.weight)
        first = 1 if self.pred_obj_scores else 0  # index of the IoU token
        output_tokens = torch.cat(learned, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        src = image_embeddings + dense_prompt_embeddings
        pos_src = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, first]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        if self.use_high_res_features:
            if high_res_features is None:
                raise ValueError("this decoder uses high-resolution features; pass [feat_s0, feat_s1]")
            deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            ops = fused_ops.active()  # in a tracking step with fused chains: sum, norm and GELU as one kernel
            if ops is not None and _plain_gelu(act1) and _plain_gelu(act2):
                upscaled = ops.add_norm_gelu_2d(deconv1(src), feat_s1, norm1.weight, norm1.bias, norm1.eps)
                upscaled = ops.add_gelu(deconv2(upscaled), feat_s0)
            else:
                upscaled = act1(norm1(deconv1(src) + feat_s1))
                upscaled = act2(deconv2(upscaled) + feat_s0)
        else:
            upscaled = self.output_upscaling(src)

        # each mask token becomes the weights of a linear map over the upscaled channels
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, 1+M, C/8)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:  # Meta's default: object always present (sigmoid(10) ≈ 1)
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def select_stable_mask(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output, or the best multimask output (highest IoU estimate) where it is unstable.

        all_mask_logits (B, 1+M, H, W), all_iou_scores (B, 1+M) → (B, 1, H, W), (B, 1).
        (``MaskDecoder._dynamic_multimask_via_stability`` in sam2/modeling/sam/mask_decoder.py.)
        """
        multimask_logits, multimask_iou = all_mask_logits[:, 1:], all_iou_scores[:, 1:]
        best = torch.argmax(multimask_iou, dim=-1)
        rows = torch.arange(multimask_iou.shape[0], device=all_iou_scores.device)
        best_logits = multimask_logits[rows, best].unsqueeze(1)
        best_iou = multimask_iou[rows, best].unsqueeze(1)

        single_logits, single_iou = all_mask_logits[:, 0:1], all_iou_scores[:, 0:1]
        stable = stability_score(single_logits, self.dynamic_multimask_stability_delta)
        stable = stable >= self.dynamic_multimask_stability_thresh  # (B, 1)
        mask_logits = torch.where(stable[..., None, None], single_logits, best_logits)
        iou_scores = torch.where(stable, single_iou, best_iou)
        return mask_logits, iou_scores


def build_prompt_encoder_and_mask_decoder(config: SAM2Config) -> tuple[PromptEncoder, MaskDecoder]:
    """The SAM heads of ``config``, as ``SAM2Base._build_sam_heads`` (sam2/modeling/sam2_base.py) builds them.

    Their weights are Meta's ``sam_prompt_encoder.*`` and ``sam_mask_decoder.*``. Hyperparameters not in the
    config (mask_in_chans 16, two-way transformer depth 2, MLP 2048, 8 heads, IoU head 3 x 256) are SAM's.
    Both modules are returned in training mode, like any new ``nn.Module``: call ``.eval()`` for inference
    (the dynamic multimask fallback is active only in eval mode).
    """
    embed_dim = config.d_model
    prompt_encoder = PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(config.feat_size, config.feat_size),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        transformer_dim=embed_dim,
        transformer=TwoWayTransformer(depth=2, embedding_dim=embed_dim, num_heads=8, mlp_dim=2048),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        use_high_res_features=config.use_high_res_features_in_sam,
        iou_prediction_use_sigmoid=config.iou_prediction_use_sigmoid,
        pred_obj_scores=config.pred_obj_scores,
        pred_obj_scores_mlp=config.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=config.use_multimask_token_for_obj_ptr,
        dynamic_multimask_via_stability=config.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=config.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=config.dynamic_multimask_stability_thresh,
    )
    return prompt_encoder, mask_decoder


build_sam_heads = build_prompt_encoder_and_mask_decoder  # the name SAM2Base uses


def _plain_gelu(module: nn.Module) -> bool:
    """Whether an activation module is exact GELU (what the fused chains compute)."""
    return isinstance(module, nn.GELU) and module.approximate == "none"
