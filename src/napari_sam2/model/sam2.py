"""The SAM 2 model: its components, its learned embeddings, and the single-frame tracking step.

Parameter names and shapes are those of Meta's ``SAM2Base`` (sam2/modeling/sam2_base.py), so Meta's
checkpoints load strictly. Unlike ``SAM2Base`` this class keeps no memory bank: the caller (the engine's
session) chooses the memories a frame attends to and passes them in as :class:`SpatialMemory` /
:class:`PointerMemory` lists. Every method works on a batch of B objects of one frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .config import SAM2Config
from .fused_ops import FusedOps
from .hiera import BlockRunner
from .image_encoder import build_image_encoder
from .mask_decoder import build_sam_heads
from .memory_attention import build_memory_attention
from .memory_encoder import build_memory_encoder
from .memory_kv_cache import MemoryKVCache
from .memory_tokens import PointerMemory, SpatialMemory, assemble_memory_tokens

NO_OBJECT_SCORE = -1024.0  # mask logit written where the object is predicted absent (NO_OBJ_SCORE)


@dataclass(frozen=True)
class FrameFeatures:
    """Image features of one frame (or a batch), ready for the SAM heads and memory attention.

    vision: (B, C, h, w) lowest-resolution features (h = image_size / 16); vision_pos: (B, C, h, w);
    high_res: features at 4× and 2× that resolution, already projected by the decoder's conv_s0 / conv_s1:
    ((B, C/8, 4h, 4w), (B, C/4, 2h, 2w)).
    """

    vision: torch.Tensor
    vision_pos: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    def expand(self, batch: int) -> FrameFeatures:
        """The same frame's features repeated for ``batch`` objects (a view, no copy)."""
        if self.vision.shape[0] == batch:
            return self

        def rep(x: torch.Tensor) -> torch.Tensor:
            return x.expand(batch, *x.shape[1:])

        return FrameFeatures(rep(self.vision), rep(self.vision_pos), (rep(self.high_res[0]), rep(self.high_res[1])))


@dataclass(frozen=True)
class HeadOutput:
    """What the SAM heads give for B objects (the reference's ``_forward_sam_heads`` tuple).

    low_res_multimasks: (B, M, 4h, 4w) logits, M = 3 with multimask output else 1; high_res_multimasks:
    (B, M, S, S); ious: (B, M); low_res_masks / high_res_masks: (B, 1, ·, ·), the chosen mask;
    obj_ptr: (B, C); object_score_logits: (B, 1), > 0 where the object is visible.
    """

    low_res_multimasks: torch.Tensor
    high_res_multimasks: torch.Tensor
    ious: torch.Tensor
    low_res_masks: torch.Tensor
    high_res_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor


@dataclass(frozen=True)
class TrackStepOutput:
    """One tracking step for B objects: the head output plus the new memory (None if not encoded).

    memory_features: (B, mem_dim, h, w); memory_pos_enc: (B, mem_dim, h, w).
    """

    heads: HeadOutput
    memory_features: torch.Tensor | None
    memory_pos_enc: torch.Tensor | None


class SAM2Model(nn.Module):
    """SAM 2 for inference: image encoder, SAM heads, memory attention, memory encoder."""

    def __init__(self, config: SAM2Config) -> None:
        super().__init__()
        self.config = config
        c, mem_dim = config.d_model, config.mem_dim
        self.image_encoder = build_image_encoder(config)
        self.memory_attention = build_memory_attention(config)
        self.memory_encoder = build_memory_encoder(config)
        self.sam_prompt_encoder, self.sam_mask_decoder = build_sam_heads(config)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim)) if config.no_obj_embed_spatial else None
        self.obj_ptr_proj = MLP(c, c, c, 3) if config.use_mlp_for_obj_ptr_proj else nn.Linear(c, c)
        self.obj_ptr_tpos_proj = nn.Linear(c, mem_dim) if config.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        if self.no_obj_embed_spatial is not None:
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    # -- image ---------------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, run_block: BlockRunner | None = None) -> FrameFeatures:
        """images: (B, 3, S, S) normalised → features of each image (``SAM2Base.forward_image``). run_block: how
        the trunk runs its blocks (``CompiledBlocks``; default each block's own forward)."""
        out = self.image_encoder(images, run_block)
        fpn, pos = out.backbone_fpn, out.vision_pos_enc
        high_res = (self.sam_mask_decoder.conv_s0(fpn[0]), self.sam_mask_decoder.conv_s1(fpn[1]))
        return FrameFeatures(vision=fpn[-1], vision_pos=pos[-1], high_res=high_res)

    # -- memory --------------------------------------------------------------------------------------------
    def condition_on_memory(
        self,
        features: FrameFeatures,
        spatial: Sequence[SpatialMemory],
        pointers: Sequence[PointerMemory],
        *,
        num_frames: int,
        kv_cache: MemoryKVCache | None = None,
        memory_ids: Sequence[Sequence[int]] | None = None,
        ops: FusedOps | None = None,
    ) -> torch.Tensor:
        """Memory-conditioned features (B, C, h, w); with no memory at all (a first prompted frame) the
        learned ``no_mem_embed`` is added instead (directly_add_no_mem_embed).

        With ``kv_cache``, each spatial memory's keys and values come from the cache under ``memory_ids``
        (one id per object per spatial memory; the same id must always name the same memory tensor), and ``ops``
        (``FusedOps``) runs the memory attention's element-wise chains fused.
        """
        b, c, h, w = features.vision.shape
        if not spatial and not pointers:
            return features.vision + self.no_mem_embed.view(1, c, 1, 1)
        curr = features.vision.flatten(2).permute(2, 0, 1)
        curr_pos = features.vision_pos.flatten(2).permute(2, 0, 1)
        if kv_cache is not None:
            kv = self._cached_memory_kv(spatial, pointers, memory_ids, kv_cache, num_frames, (h, w),
                                        features.vision.dtype)
            out = self.memory_attention.attend_memory(curr, curr_pos, kv, (h, w), ops)
            return out.permute(1, 2, 0).reshape(b, c, h, w)
        tokens = self._memory_tokens(spatial, pointers, num_frames, features.vision.dtype)
        out = self.memory_attention(
            curr, curr_pos, tokens.memory, tokens.memory_pos, num_obj_ptr_tokens=tokens.num_pointer_tokens
        )
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    def condition_on_memory_groups(
        self,
        features: FrameFeatures,
        groups: Sequence[tuple[Sequence[SpatialMemory], Sequence[PointerMemory], Sequence[Sequence[int]]]],
        *,
        num_frames: int,
        kv_cache: MemoryKVCache,
        ops: FusedOps | None = None,
    ) -> torch.Tensor:
        """``condition_on_memory`` of a batch made of groups of objects whose memories differ in number (objects
        prompted on different frames, as a pass starts): features (B, C, h, w) for every object, groups in batch
        order, each (spatial, pointers, memory_ids) of its objects (every group with some memory) → (B, C, h, w).
        The memory attention runs once for the batch, its cross-attention once per group
        (``MemoryAttention.attend_memory_groups``; ``ops`` as in ``condition_on_memory``)."""
        b, c, h, w = features.vision.shape
        kvs, sizes = [], []
        for spatial, pointers, ids in groups:
            if not spatial and not pointers:
                raise ValueError("every group of a grouped memory attention needs a memory")
            kvs.append(self._cached_memory_kv(spatial, pointers, ids, kv_cache, num_frames, (h, w),
                                              features.vision.dtype))
            sizes.append(spatial[0].features.shape[0] if spatial else pointers[0].pointer.shape[0])
        if sum(sizes) != b:
            raise ValueError(f"groups of {sum(sizes)} objects for features of {b}")
        curr = features.vision.flatten(2).permute(2, 0, 1)
        curr_pos = features.vision_pos.flatten(2).permute(2, 0, 1)
        out = self.memory_attention.attend_memory_groups(curr, curr_pos, kvs, sizes, (h, w), ops)
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    def _cached_memory_kv(self, spatial, pointers, memory_ids, kv_cache: MemoryKVCache, num_frames: int,
                          feat_hw: tuple[int, int], dtype: torch.dtype):
        """Per layer, the (keys, values) of a batch's memories, spatial ones from ``kv_cache``."""
        entries = [(ids, m.features, m.pos_enc, m.temporal_slot) for m, ids in zip(spatial, memory_ids, strict=True)]
        ptr = self._memory_tokens((), pointers, num_frames, dtype) if pointers else None
        return kv_cache.memory_kv(entries, ptr and ptr.memory, ptr and ptr.memory_pos, feat_hw, dtype=dtype)

    def heads_and_memory(self, features: FrameFeatures, pix_feat: torch.Tensor) -> TrackStepOutput:
        """The tracking step after memory attention (``track_step`` without prompts): the SAM heads on the
        memory-conditioned features pix_feat (B, C, h, w) of a frame whose ``features`` have batch B, and the new
        memory."""
        heads = self.run_heads(pix_feat, features.high_res, multimask_output=self.use_multimask(False, 0))
        memory, pos = self.encode_memory(features.vision, heads.high_res_masks, heads.object_score_logits,
                                         is_mask_from_points=False)
        return TrackStepOutput(heads, memory, pos)

    def new_kv_cache(self, max_entries: int = 256) -> MemoryKVCache:
        """A cache of memory keys/values for ``condition_on_memory`` (see ``memory_kv_cache``)."""
        return MemoryKVCache(self.memory_attention, self.maskmem_tpos_enc, max_entries)

    def _memory_tokens(self, spatial, pointers, num_frames: int, dtype: torch.dtype):
        cfg = self.config
        return assemble_memory_tokens(
            spatial,
            pointers,
            maskmem_tpos_enc=self.maskmem_tpos_enc,
            obj_ptr_tpos_proj=self.obj_ptr_tpos_proj,
            max_pointer_distance=min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1,
            add_tpos_enc_to_obj_ptrs=cfg.add_tpos_enc_to_obj_ptrs,
            proj_tpos_enc_in_obj_ptrs=cfg.proj_tpos_enc_in_obj_ptrs,
            dtype=dtype,
        )

    def encode_memory(
        self,
        vision: torch.Tensor,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        *,
        is_mask_from_points: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A new spatial memory from the frame's raw features (B, C, h, w) and its predicted mask logits
        (B, 1, S, S) → (features (B, mem_dim, h, w), pos_enc (B, mem_dim, h, w)) (``_encode_new_memory``)."""
        cfg = self.config
        if cfg.binarize_mask_from_pts_for_mem_enc and is_mask_from_points:
            mask = (high_res_masks > 0).to(high_res_masks.dtype)
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        features, pos_enc = self.memory_encoder(vision, mask, skip_mask_sigmoid=True)
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).to(features.dtype)  # (B, 1)
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return features, pos_enc

    # -- SAM heads -----------------------------------------------------------------------------------------
    def use_multimask(self, is_first_prompt: bool, num_points: int) -> bool:
        """Whether the decoder gives 3 candidate masks (``SAM2Base._use_multimask``)."""
        cfg = self.config
        return (
            cfg.multimask_output_in_sam
            and (is_first_prompt or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num
        )

    def run_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> HeadOutput:
        """Prompt encoder + mask decoder (``SAM2Base._forward_sam_heads``).

        pix_feat: (B, C, h, w); point_coords: (B, P, 2) as (x, y) in model-input pixels; point_labels: (B, P)
        int (1 positive, 0 negative, 2/3 box corners, -1 padding); mask_inputs: (B, 1, H', W') logits or
        binary mask, resized to the prompt encoder's mask size if needed.
        """
        b, device = pix_feat.shape[0], pix_feat.device
        if point_coords is None:
            point_coords = torch.zeros(b, 1, 2, device=device)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
        mask_prompt = None
        if mask_inputs is not None:
            size = self.sam_prompt_encoder.mask_input_size
            mask_prompt = mask_inputs
            if tuple(mask_inputs.shape[-2:]) != tuple(size):
                mask_prompt = F.interpolate(
                    mask_inputs.float(), size=size, mode="bilinear", align_corners=False, antialias=True
                )
        sparse, dense = self.sam_prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=mask_prompt)
        dec = self.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            high_res_features=list(high_res),
        )
        visible = dec.object_score_logits > 0  # (B, 1)
        low_multi = torch.where(visible[:, None, None], dec.masks, NO_OBJECT_SCORE).float()
        high_multi = F.interpolate(low_multi, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        token = dec.sam_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(dec.iou_pred, dim=-1)
            rows = torch.arange(b, device=device)
            low, high = low_multi[rows, best].unsqueeze(1), high_multi[rows, best].unsqueeze(1)
            if dec.sam_tokens.shape[1] > 1:
                token = dec.sam_tokens[rows, best]
        else:
            low, high = low_multi, high_multi
        obj_ptr = self._gate_pointer(self.obj_ptr_proj(token), visible.to(token.dtype))
        return HeadOutput(low_multi, high_multi, dec.iou_pred, low, high, obj_ptr, dec.object_score_logits)

    def mask_as_output(
        self, vision: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> HeadOutput:
        """A mask prompt (B, 1, S, S), bool or {0, 1}, taken as the output itself (±10 logits); the decoder
        only supplies the object pointer (``SAM2Base._use_mask_as_output``)."""
        scale, bias = 20.0, -10.0
        high = mask.float() * scale + bias
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear",
                            align_corners=False, antialias=True)
        ious = high.new_ones(mask.shape[0], 1)
        decoded = self.run_heads(vision, high_res, mask_inputs=self.mask_downsample(mask.float()))
        visible = torch.any(mask.flatten(1).float() > 0.0, dim=1)[..., None].float()
        object_score_logits = scale * visible + bias
        obj_ptr = self._gate_pointer(decoded.obj_ptr, visible)
        return HeadOutput(low, high, ious, low, high, obj_ptr, object_score_logits)

    def _gate_pointer(self, obj_ptr: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Replace the pointer of an absent object by the learned ``no_obj_ptr`` (fixed_no_obj_ptr)."""
        if self.config.fixed_no_obj_ptr:
            obj_ptr = visible * obj_ptr
        return obj_ptr + (1 - visible) * self.no_obj_ptr

    # -- the step ------------------------------------------------------------------------------------------
    def track_step(
        self,
        features: FrameFeatures,
        *,
        spatial: Sequence[SpatialMemory] = (),
        pointers: Sequence[PointerMemory] = (),
        num_frames: int,
        is_first_prompt: bool = False,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        prev_mask_logits: torch.Tensor | None = None,
        encode_memory: bool = True,
        kv_cache: MemoryKVCache | None = None,
        memory_ids: Sequence[Sequence[int]] | None = None,
    ) -> TrackStepOutput:
        """Segment B objects on one frame given their memories and prompts (``SAM2Base.track_step``).

        features: the frame's features expanded to B; spatial / pointers: the memories chosen by the memory
        bank (empty on a first prompted frame); mask: a mask prompt (B, 1, S, S), used as the output;
        prev_mask_logits: (B, 1, 4h, 4w) earlier low-res logits fed with corrective clicks; kv_cache /
        memory_ids: see ``condition_on_memory``.
        """
        if mask is not None and self.config.use_mask_input_as_output_without_sam:
            heads = self.mask_as_output(features.vision, features.high_res, mask)
        else:
            pix_feat = self.condition_on_memory(features, spatial, pointers, num_frames=num_frames,
                                                kv_cache=kv_cache, memory_ids=memory_ids)
            num_points = 0 if point_labels is None else point_labels.shape[1]
            heads = self.run_heads(
                pix_feat,
                features.high_res,
                point_coords=point_coords,
                point_labels=point_labels,
                mask_inputs=prev_mask_logits if mask is None else mask,
                multimask_output=self.use_multimask(is_first_prompt, num_points),
            )
        if not encode_memory:
            return TrackStepOutput(heads, None, None)
        mem, mem_pos = self.encode_memory(
            features.vision, heads.high_res_masks, heads.object_score_logits,
            is_mask_from_points=point_labels is not None,
        )
        return TrackStepOutput(heads, mem, mem_pos)
