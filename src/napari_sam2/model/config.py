"""Configurations of the 8 published SAM 2 checkpoints, as plain dataclasses.

Values are those of Meta's YAML files (``sam2/configs/sam2*/sam2*_hiera_*.yaml`` in sam2==1.1.0), with the
inference settings that Meta's ``build_sam2_video_predictor`` applies on top (dynamic multimask via stability,
binarised click masks for the memory encoder). Settings every published model shares are defaults here;
a model differs only in its Hiera trunk and in whether it is SAM 2 or SAM 2.1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk (``sam2/modeling/backbones/hieradet.py``)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Output channels per stage, deepest first (the FPN neck's ``backbone_channel_list``)."""
        dims = [int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages))]
        return tuple(reversed(dims))


@dataclass(frozen=True)
class SAM2Config:
    """One SAM 2 model: architecture and the inference settings of Meta's video predictor."""

    name: str
    hiera: HieraConfig
    # SAM 2.1 additions (False for the original SAM 2 checkpoints).
    no_obj_embed_spatial: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True

    image_size: int = 1024
    d_model: int = 256  # hidden dim of neck, memory attention and SAM heads
    mem_dim: int = 64  # channels of a spatial memory
    backbone_stride: int = 16
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1  # coarsest FPN levels dropped
    # memory attention
    memory_attention_layers: int = 4
    memory_attention_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    # memory encoder
    num_maskmem: int = 7  # 1 current + 6 previous frames
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    use_mask_input_as_output_without_sam: bool = True
    directly_add_no_mem_embed: bool = True
    # SAM heads
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    multimask_output_for_tracking: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    use_mlp_for_obj_ptr_proj: bool = True
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # object pointers
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    only_obj_ptrs_in_the_past_for_eval: bool = True
    # memory selection
    memory_temporal_stride_for_eval: int = 1
    max_cond_frames_in_attn: int = -1  # -1: all conditioning frames
    non_overlap_masks_for_mem_enc: bool = False

    @property
    def feat_size(self) -> int:
        """Side of the lowest-resolution feature map (64 at 1024 px)."""
        return self.image_size // self.backbone_stride

    def with_image_size(self, image_size: int) -> SAM2Config:
        if image_size % 32 != 0 or image_size < 64:
            raise ValueError(f"image_size must be a multiple of 32 and at least 64, got {image_size}")
        return replace(self, image_size=image_size)


_TINY = HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
                    window_pos_embed_bkg_spatial_size=(7, 7))
_SMALL = HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
                     window_pos_embed_bkg_spatial_size=(7, 7))
_BASE_PLUS = HieraConfig(embed_dim=112, num_heads=2)
_LARGE = HieraConfig(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
                     window_spec=(8, 4, 16, 8), window_pos_embed_bkg_spatial_size=(7, 7))

_SAM2_0 = dict(no_obj_embed_spatial=False, add_tpos_enc_to_obj_ptrs=False, proj_tpos_enc_in_obj_ptrs=False,
               use_signed_tpos_enc_to_obj_ptrs=False)

CONFIGS: dict[str, SAM2Config] = {
    "sam2_hiera_tiny": SAM2Config("sam2_hiera_tiny", _TINY, **_SAM2_0),
    "sam2_hiera_small": SAM2Config("sam2_hiera_small", _SMALL, **_SAM2_0),
    "sam2_hiera_base_plus": SAM2Config("sam2_hiera_base_plus", _BASE_PLUS, **_SAM2_0),
    "sam2_hiera_large": SAM2Config("sam2_hiera_large", _LARGE, **_SAM2_0),
    "sam2.1_hiera_tiny": SAM2Config("sam2.1_hiera_tiny", _TINY),
    "sam2.1_hiera_small": SAM2Config("sam2.1_hiera_small", _SMALL),
    "sam2.1_hiera_base_plus": SAM2Config("sam2.1_hiera_base_plus", _BASE_PLUS),
    "sam2.1_hiera_large": SAM2Config("sam2.1_hiera_large", _LARGE),
}

MODEL_NAMES: tuple[str, ...] = tuple(CONFIGS)

# Our own architecture for the shipped microscopy starter model (docs/starter_model.md): SAM 2.1's design with a
# narrow Hiera trunk (64 channels, 9 blocks) and a 2-layer memory attention, at 512 px, so that its weights fit in
# the package (about 30 MB in float16) and it trains from scratch on one GPU in minutes.
STARTER_NAME = "starter"
_STARTER_HIERA = HieraConfig(embed_dim=64, num_heads=1, stages=(1, 2, 4, 2), global_att_blocks=(5, 6, 8),
                             window_spec=(8, 4, 8, 8), window_pos_embed_bkg_spatial_size=(7, 7))
OWN_CONFIGS: dict[str, SAM2Config] = {
    STARTER_NAME: SAM2Config(STARTER_NAME, _STARTER_HIERA, image_size=512, memory_attention_layers=2,
                             memory_attention_ffn_dim=1024),
}
ALL_MODEL_NAMES: tuple[str, ...] = (*MODEL_NAMES, *OWN_CONFIGS)


def get_config(name: str, image_size: int | None = None) -> SAM2Config:
    """The configuration of model ``name`` (one of ``ALL_MODEL_NAMES``), optionally at another input size."""
    config = CONFIGS.get(name) or OWN_CONFIGS.get(name)
    if config is None:
        raise ValueError(f"unknown SAM 2 model {name!r}; choose one of: {', '.join(ALL_MODEL_NAMES)}")
    return config.with_image_size(image_size) if image_size is not None else config
