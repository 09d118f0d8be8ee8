"""build_sam2 and checkpoints: our state dict is Meta's, for all 8 published models, in both directions."""

from __future__ import annotations

import warnings
from unittest import mock

import pytest
import torch

from napari_sam2.model import MODEL_NAMES, CheckpointError, build_sam2, get_config
from napari_sam2.model.build import _signature
from napari_sam2.model.checkpoint import state_dict_mismatch
from tests.reference import REFERENCE_CONFIGS, relative_error, require_reference

_linspace = torch.linspace


def reference_on_meta(name: str):
    """Meta's video predictor for model ``name`` built on the meta device (no memory, no init cost)."""
    build_sam = require_reference()
    # Hiera computes drop-path rates with .item(), which meta tensors cannot do
    cpu_linspace = mock.patch.object(torch, "linspace", lambda *a, **k: _linspace(*a, **{**k, "device": "cpu"}))
    with torch.device("meta"), cpu_linspace:
        return build_sam.build_sam2_video_predictor(REFERENCE_CONFIGS[name], None, device="meta")


def placeholder_checkpoint(state: dict, path) -> None:
    """A checkpoint file with the keys and shapes of ``state``; each tensor is one stored value expanded to its
    shape, so the file stays a few kilobytes even for the large model."""
    fake = {k: torch.full((1,), 0.5, dtype=v.dtype).expand(v.shape) for k, v in state.items()}
    torch.save({"model": fake}, path)


def test_model_names():
    assert MODEL_NAMES == (
        "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large",
        "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_keys_and_shapes_equal_the_reference(name, tmp_path):
    reference = reference_on_meta(name).state_dict()
    assert state_dict_mismatch(reference, _signature(name)) == []
    # a checkpoint file written from the reference's state dict loads strictly into build_sam2 …
    placeholder_checkpoint(reference, tmp_path / "meta.pt")
    ours = build_sam2(name, tmp_path / "meta.pt", image_size=256)
    assert torch.all(ours.no_obj_ptr == 0.5)
    # … and ours (written the same way) strictly into the reference
    placeholder_checkpoint(ours.state_dict(), tmp_path / "ours.pt")
    loaded = torch.load(tmp_path / "ours.pt", weights_only=True)["model"]
    with warnings.catch_warnings():  # copying into meta parameters is a no-op: only keys and shapes are checked
        warnings.simplefilter("ignore", UserWarning)
        reference_on_meta(name).load_state_dict(loaded, strict=True)


def test_real_weights_round_trip_and_give_the_reference_output(reference_tiny_512, tmp_path):
    torch.save({"model": reference_tiny_512.state_dict()}, tmp_path / "ref.pt")
    ours = build_sam2("sam2.1_hiera_tiny", tmp_path / "ref.pt", image_size=512)
    assert not ours.training
    image = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = ours.encode_image(image)
        ref = reference_tiny_512.forward_image(image)
    assert relative_error(feats.vision, ref["vision_features"]) <= 1e-5
    assert relative_error(feats.high_res[0], ref["backbone_fpn"][0]) <= 1e-5
    torch.save({"model": ours.state_dict()}, tmp_path / "ours.pt")
    state = torch.load(tmp_path / "ours.pt", weights_only=True)["model"]
    for key, value in reference_tiny_512.state_dict().items():
        assert torch.equal(state[key], value), key


def test_image_size_override():
    assert build_sam2("sam2.1_hiera_tiny", image_size=256).image_size == 256
    assert get_config("sam2.1_hiera_tiny").image_size == 1024
    with pytest.raises(ValueError, match="multiple of 32"):
        build_sam2("sam2.1_hiera_tiny", image_size=500)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown SAM 2 model 'sam3'.*sam2.1_hiera_tiny"):
        build_sam2("sam3")


def test_checkpoint_of_another_model_names_both_and_the_keys(tmp_path):
    placeholder_checkpoint(_signature("sam2_hiera_tiny"), tmp_path / "v2.pt")
    with pytest.raises(CheckpointError) as err:
        build_sam2("sam2.1_hiera_tiny", tmp_path / "v2.pt")
    message = str(err.value)
    assert "does not fit model sam2.1_hiera_tiny" in message
    assert "looks like a sam2_hiera_tiny checkpoint" in message
    assert "missing no_obj_embed_spatial" in message

    placeholder_checkpoint(_signature("sam2.1_hiera_large"), tmp_path / "large.pt")
    with pytest.raises(CheckpointError, match="looks like a sam2.1_hiera_large checkpoint: [0-9]+ mismatching keys"):
        build_sam2("sam2.1_hiera_tiny", tmp_path / "large.pt")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "torch.load could not read it"),
        (b"\x89PNG\r\n\x1a\n not a checkpoint", "torch.load could not read it"),
    ],
)
def test_corrupt_file_gets_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        build_sam2("sam2.1_hiera_tiny", path)


def test_truncated_checkpoint_gets_a_clear_error(tmp_path):
    path = tmp_path / "cut.pt"
    placeholder_checkpoint(_signature("sam2.1_hiera_tiny"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a SAM 2 checkpoint"):
        build_sam2("sam2.1_hiera_tiny", path)


def test_wrong_layout_and_missing_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected a dict with a 'model' state dict"):
        build_sam2("sam2.1_hiera_tiny", tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        build_sam2("sam2.1_hiera_tiny", tmp_path / "nowhere.pt")
