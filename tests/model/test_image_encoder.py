"""Differential tests of the image encoder (Hiera trunk + FPN neck + sine position encoding) against Meta's sam2."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from napari_sam2.model.config import MODEL_NAMES, HieraConfig, get_config
from napari_sam2.model.hiera import Hiera
from napari_sam2.model.image_encoder import FpnNeck, ImageEncoder, ImageEncoderOutput, build_image_encoder
from napari_sam2.model.position_encoding import PositionEmbeddingSine
from tests.reference import REFERENCE_CONFIGS, build_reference_predictor, relative_error, require_reference

TOL = 1e-5


def _perturbed(state: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    """``state`` with noise added to every constant tensor (zero position embeddings, unit norm weights, zero
    biases): with Meta's fresh initialisation those paths would otherwise go untested."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point() and value.numel() > 0 and bool(value.amin() == value.amax()):
            value = value + 0.2 * torch.randn(value.shape, generator=gen)
        out[key] = value
    return out


def _twins(reference_encoder: torch.nn.Module, image_size: int):
    """A private copy of the reference's image encoder and ours, both holding the same perturbed weights."""
    theirs = copy.deepcopy(reference_encoder).eval()
    state = _perturbed(theirs.state_dict())
    theirs.load_state_dict(state, strict=True)
    ours = build_image_encoder(get_config("sam2.1_hiera_tiny", image_size)).eval()
    ours.load_state_dict(state, strict=True)
    return ours, theirs


def _compare(ours: ImageEncoderOutput, theirs: dict, expected_shapes: list[tuple[int, ...]]) -> list[float]:
    assert isinstance(ours, ImageEncoderOutput)
    assert [tuple(f.shape) for f in ours.backbone_fpn] == expected_shapes
    assert [tuple(p.shape) for p in ours.vision_pos_enc] == expected_shapes
    assert len(theirs["backbone_fpn"]) == len(theirs["vision_pos_enc"]) == len(expected_shapes)
    errors = [relative_error(a, b) for a, b in zip(ours.backbone_fpn, theirs["backbone_fpn"], strict=True)]
    errors += [relative_error(a, b) for a, b in zip(ours.vision_pos_enc, theirs["vision_pos_enc"], strict=True)]
    errors.append(relative_error(ours.vision_features, theirs["vision_features"]))
    assert max(errors) <= TOL, errors
    return errors


def test_state_dict_matches_reference_both_ways(reference_tiny_512):
    require_reference()
    theirs = reference_tiny_512.image_encoder
    ours = build_image_encoder(get_config("sam2.1_hiera_tiny", 512))
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == their_shapes
    # neither side has buffers, persistent or not, that would have to agree
    assert [name for name, _ in theirs.named_buffers()] == []
    assert [name for name, _ in ours.named_buffers()] == []
    ours.load_state_dict(theirs.state_dict(), strict=True)
    copy.deepcopy(theirs).load_state_dict(ours.state_dict(), strict=True)
    assert ours.trunk.channel_list == tuple(theirs.trunk.channel_list) == (768, 384, 192, 96)


@pytest.fixture(scope="module")
def tiny_twins(reference_tiny_512):
    require_reference()
    return _twins(reference_tiny_512.image_encoder, 512)


@pytest.mark.parametrize(("batch", "h", "w"), [(1, 512, 512), (2, 192, 256)], ids=["512", "2x192x256"])
def test_tiny_matches_reference(tiny_twins, batch, h, w):
    ours, theirs = tiny_twins
    images = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(images)
        got = ours(images)
    _compare(got, expected, [(batch, 256, h // s, w // s) for s in (4, 8, 16)])


def test_tiny_matches_reference_at_1024():
    require_reference()
    reference = build_reference_predictor(image_size=1024)
    ours, theirs = _twins(reference.image_encoder, 1024)
    images = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = theirs(images)
        got = ours(images)
    _compare(got, expected, [(1, 256, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64)])


_SYNTHETIC = HieraConfig(  # odd settings no published model has: q_pool 2, head_mul 1.5, global q-free stage change
    embed_dim=48, num_heads=2, stages=(1, 2, 3, 2), global_att_blocks=(4, 6), window_spec=(8, 4, 16, 8),
    window_pos_embed_bkg_spatial_size=(7, 7), q_pool=2, head_mul=1.5,
)


@pytest.mark.parametrize(
    ("config", "size"),
    [(get_config("sam2.1_hiera_base_plus").hiera, (128, 128)), (_SYNTHETIC, (256, 192))],
    ids=["base_plus", "synthetic"],
)
def test_trunk_matches_reference(config: HieraConfig, size):
    hieradet = pytest.importorskip("sam2.modeling.backbones.hieradet")
    require_reference()
    torch.manual_seed(4)
    kwargs = dataclasses.asdict(config)
    kwargs.pop("mlp_ratio")  # Meta's Hiera always uses 4
    assert config.mlp_ratio == 4.0
    theirs = hieradet.Hiera(**kwargs).eval()
    state = _perturbed(theirs.state_dict())
    theirs.load_state_dict(state, strict=True)
    ours = Hiera(config).eval()
    ours.load_state_dict(state, strict=True)
    assert ours.channel_list == tuple(theirs.channel_list) == config.channel_list
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = theirs(images)
        got = ours(images)
    assert [t.shape for t in got] == [t.shape for t in expected]
    errors = [relative_error(a, b) for a, b in zip(got, expected, strict=True)]
    assert max(errors) <= TOL, errors


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
def test_neck_matches_reference(interp):
    require_reference()
    from sam2.modeling.backbones.image_encoder import FpnNeck as TheirNeck
    from sam2.modeling.position_encoding import PositionEmbeddingSine as TheirSine

    channels, levels = [64, 32, 16, 8], (0, 1, 2, 3)
    torch.manual_seed(6)
    theirs = TheirNeck(TheirSine(32), 32, channels, fpn_interp_model=interp, fpn_top_down_levels=levels)
    ours = FpnNeck(32, channels, fpn_top_down_levels=levels, fpn_interp_model=interp)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    xs = [torch.randn(2, c, 40 // 2**i, 24 // 2**i) for i, c in enumerate(reversed(channels))]
    with torch.no_grad():
        (feats, pos), (their_feats, their_pos) = ours(xs), theirs(xs)
    errors = [relative_error(a, b) for a, b in zip(feats + pos, their_feats + their_pos, strict=True)]
    assert max(errors) <= TOL, errors


@pytest.mark.parametrize(
    "kwargs", [{}, {"temperature": 20, "scale": 1.0}, {"normalize": False}], ids=["default", "scaled", "raw"]
)
@pytest.mark.parametrize("num_pos_feats", [64, 8])
def test_sine_encoding_matches_reference(kwargs, num_pos_feats):
    require_reference()
    from sam2.modeling.position_encoding import PositionEmbeddingSine as TheirSine

    x = torch.zeros(3, 5, 9, 14)
    ours = PositionEmbeddingSine(num_pos_feats, **kwargs)(x)
    theirs = TheirSine(num_pos_feats, **kwargs)(x)
    assert ours.shape == (3, num_pos_feats, 9, 14)
    assert relative_error(ours, theirs) <= TOL
    assert list(PositionEmbeddingSine(num_pos_feats).state_dict()) == []
    with pytest.raises(ValueError, match="multiple of 4"):
        PositionEmbeddingSine(6)  # Meta's fails inside forward for this


def test_image_encoder_rejects_mismatched_neck():
    trunk = Hiera(get_config("sam2.1_hiera_tiny").hiera)
    with pytest.raises(ValueError, match="channels"):
        ImageEncoder(trunk, FpnNeck(256, (96, 192, 384, 768)))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_trunk_config_matches_reference_yaml(name):
    """Our HieraConfig holds what Meta's YAML gives the trunk (else checkpoints would not load)."""
    require_reference()
    import importlib.resources
    import inspect

    from omegaconf import OmegaConf
    from sam2.modeling.backbones.hieradet import Hiera as TheirHiera

    yaml = importlib.resources.files("sam2").joinpath(REFERENCE_CONFIGS[name])
    trunk = OmegaConf.to_container(OmegaConf.load(str(yaml)).model.image_encoder.trunk)
    trunk.pop("_target_")
    defaults = {k: p.default for k, p in inspect.signature(TheirHiera).parameters.items()}
    defaults["mlp_ratio"] = 4.0  # not a parameter of Meta's Hiera: its blocks always use 4
    ours = get_config(name).hiera
    for field in dataclasses.fields(HieraConfig):
        expected = trunk.get(field.name, defaults[field.name])
        expected = tuple(expected) if isinstance(expected, list) else expected
        assert getattr(ours, field.name) == expected, field.name


@pytest.mark.parametrize(
    ("dim", "dim_out", "q_stride", "window", "side"),
    [(32, 32, None, 8, 16), (32, 32, None, 6, 16), (32, 64, (2, 2), 8, 16), (32, 32, None, 0, 8)],
    ids=["windows", "padded-windows", "q-pool", "global"],
)
def test_a_block_under_bf16_autocast_gives_exactly_the_plain_compositions_values(dim, dim_out, q_stride, window,
                                                                                  side):
    """A Hiera block rounds its normalised tokens to bf16 before cutting windows and adds the attention's windows to
    the shortcut in place: under autocast the plain composition (norm, windows, attention, reassembly, sum, MLP)
    gives the very same numbers, as the linear layers round their input to bf16 themselves."""
    from napari_sam2.model.hiera import MultiScaleBlock, window_partition, window_unpartition

    torch.manual_seed(0)
    block = MultiScaleBlock(dim, dim_out, 2, q_stride=q_stride, window_size=window).eval()
    x = torch.randn(2, side, side, dim)

    def plain(x):
        shortcut, y = x, block.norm1(x)
        if dim != dim_out:
            shortcut = block.proj(y)
            if q_stride is not None:
                shortcut = torch.nn.functional.max_pool2d(shortcut.permute(0, 3, 1, 2), q_stride, q_stride)
                shortcut = shortcut.permute(0, 2, 3, 1)
        if window:
            windows, grid = window_partition(y, window)
            y = window_unpartition(block.attn(windows), grid, shortcut.shape[1:3])
        else:
            y = block.attn(y)
        y = shortcut + y
        return y + block.mlp(block.norm2(y))

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = block(x), plain(x)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)
