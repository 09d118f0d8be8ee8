"""Clips: a pure function of (seed, index), objects present on the first frame, masks aligned with frames,
intensities mapped as inference maps them; batching pads; augmentation keeps masks on their objects, is the same
over a clip's frames and differs between clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_sam2.engine.frames import FramePreparer, estimate_intensity_range
from napari_sam2.train import ClipSampler, LabeledStack, augment_clip, collate_clips, synthetic_stack
from napari_sam2.train.augment import AugmentSettings

NO_AUGMENTATION = AugmentSettings(flip_prob=0, rot90=False, affine_prob=0, gamma_prob=0, contrast_prob=0,
                                  blur_prob=0, noise_prob=0)


@pytest.fixture(scope="module")
def stacks():
    rng = np.random.default_rng(0)
    return [synthetic_stack(rng, kind=kind, num_frames=10, size=96, dtype=dtype)
            for kind, dtype in (("nuclei", np.uint8), ("phase", np.uint16), ("nuclei", np.uint16))]


def _same(a, b) -> bool:
    return torch.equal(a.frames, b.frames) and torch.equal(a.masks, b.masks) and a.obj_ids == b.obj_ids


def test_a_clip_depends_only_on_seed_and_index(stacks):
    one = ClipSampler(stacks, clip_len=4, crop_size=48, seed=5)
    other = ClipSampler(stacks, clip_len=4, crop_size=48, seed=5)
    for index in (0, 7, 123456789):
        assert _same(one.clip(index), other.clip(index))
    later = [one.clip(i) for i in range(6)]
    assert _same(one.clip(3), later[3])  # no hidden state: order of calls does not matter
    assert len({c.source for c in later}) == 6
    assert not _same(ClipSampler(stacks, clip_len=4, crop_size=48, seed=6).clip(0), one.clip(0))


def test_clip_shapes_objects_and_alignment(stacks):
    sampler = ClipSampler(stacks, clip_len=5, max_objects=3, crop_size=40, seed=1)
    directions = set()
    for index in range(24):
        clip = sampler.clip(index)
        k = len(clip.obj_ids)
        assert clip.frames.shape == (5, 40, 40) and clip.frames.dtype == torch.float32
        assert clip.masks.shape == (5, k, 40, 40) and clip.masks.dtype == torch.bool
        assert 1 <= k <= 3 and len(set(clip.obj_ids)) == k
        assert float(clip.frames.min()) >= 0 and float(clip.frames.max()) <= 1
        assert clip.masks[0].flatten(1).any(dim=1).all()  # every object is on the first frame
        order = [int(v) for v in clip.source.split("frames [")[1].split("]")[0].split(",")]
        directions.add(np.sign(order[1] - order[0]))
        assert np.all(np.abs(np.diff(order)) == 1)  # consecutive frames
    assert directions == {1, -1}


def test_masks_sit_on_the_objects_of_the_frames():
    rng = np.random.default_rng(3)
    stack = synthetic_stack(rng, kind="nuclei", num_frames=6, size=96, dtype=np.uint8)
    sampler = ClipSampler([stack], clip_len=4, crop_size=48, seed=2)
    for index in range(8):
        clip = sampler.clip(index)
        objects = clip.masks.any(dim=1)
        assert clip.frames[objects].mean() > clip.frames[~objects].mean() + 0.1


def test_intensities_are_mapped_as_inference_maps_them():
    rng = np.random.default_rng(4)
    stack = synthetic_stack(rng, kind="nuclei", num_frames=4, size=64, dtype=np.uint16)
    clip = ClipSampler([stack], clip_len=4, crop_size=None, seed=0).clip(0)
    order = [int(v) for v in clip.source.split("frames [")[1].split("]")[0].split(",")]
    expected = estimate_intensity_range(stack.frames).apply(stack.frames[order])
    np.testing.assert_allclose(clip.frames.numpy(), expected, atol=1e-6)
    eight_bit = LabeledStack((stack.frames // 300).astype(np.uint8), stack.labels, "8 bit")
    clip = ClipSampler([eight_bit], clip_len=4, crop_size=None, seed=0).clip(0)
    order = [int(v) for v in clip.source.split("frames [")[1].split("]")[0].split(",")]
    np.testing.assert_allclose(clip.frames.numpy(), eight_bit.frames[order] / 255.0, atol=1e-6)


def test_only_allowed_objects_are_chosen(stacks):
    stack = stacks[0]
    allowed = int(np.unique(stack.labels[0])[1])
    restricted = dataclasses.replace(stack, object_ids=(allowed,))
    sampler = ClipSampler([restricted], clip_len=3, crop_size=None, seed=0)
    assert {sampler.clip(i).obj_ids for i in range(10)} == {(allowed,)}


def test_a_stack_shorter_than_a_clip_runs_back_and_forth():
    labels = np.zeros((3, 16, 16), np.int32)
    labels[:, 4:8, 4:8] = 1
    frames = np.arange(3, dtype=np.uint8)[:, None, None] * np.ones((1, 16, 16), np.uint8) * 100
    clip = ClipSampler([LabeledStack(frames, labels, "short")], clip_len=7, seed=0).clip(0)
    values = [round(float(v) * 255) for v in clip.frames[:, 0, 0]]
    assert set(values) == {0, 100, 200}
    steps = np.diff(values)
    assert np.all(np.abs(steps) == 100)  # one frame at a time ...
    turns = [values[i] for i in range(1, 6) if steps[i - 1] != steps[i]]
    assert turns and set(turns) <= {0, 200}  # ... turning back only at the ends
    assert clip.masks.shape == (7, 1, 16, 16)
    assert clip.masks[:, 0, 4:8, 4:8].all() and int(clip.masks.sum()) == 7 * 16


def test_sampler_refuses_data_without_objects():
    empty = LabeledStack(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.int32), "empty")
    with pytest.raises(ValueError, match="no stack"):
        ClipSampler([empty], clip_len=2, crop_size=8, seed=0)


def test_collate_pads_frames_and_objects():
    a = ClipSampler([LabeledStack(np.zeros((2, 10, 12), np.uint8), np.ones((2, 10, 12), np.int32), "a")],
                    clip_len=2, seed=0).clip(0)
    b = ClipSampler([LabeledStack(np.zeros((2, 14, 8), np.uint8), np.arange(2 * 14 * 8).reshape(2, 14, 8) % 2 + 1,
                                  "b")], clip_len=2, max_objects=2, seed=0).clip(0)
    frames, masks, valid = collate_clips([a, b], max_objects=3)
    assert frames.shape == (2, 2, 14, 12) and masks.shape == (2, 2, 3, 14, 12)
    assert valid.tolist() == [[True, False, False], [True, True, False]]
    assert masks[0, :, 0, :10, :12].all() and not masks[0, :, 0, 10:].any() and not masks[0, :, 1:].any()
    with pytest.raises(ValueError, match="different lengths"):
        collate_clips([a, ClipSampler([LabeledStack(np.zeros((3, 4, 4), np.uint8), np.ones((3, 4, 4), np.int32),
                                                    "c")], clip_len=3, seed=0).clip(0)])


# ------------------------------------------------------------------------------------------- augmentation
def _square_batch(batch: int = 4, frames: int = 3, size: int = 64):
    """Identical clips of a bright square (the object) on a dim background: (B, T, H, W), (B, T, 1, H, W)."""
    x = torch.full((batch, frames, size, size), 0.1)
    m = torch.zeros((batch, frames, 1, size, size), dtype=torch.bool)
    x[:, :, 10:20, 8:22] = 0.9
    m[:, :, 0, 10:20, 8:22] = True
    return x, m


def test_augmented_masks_stay_on_their_object():
    x, m = _square_batch(batch=8)
    images, masks = augment_clip(x, m, generator=torch.Generator().manual_seed(0), image_size=80)
    assert images.shape == (8, 3, 3, 80, 80) and masks.shape == (8, 3, 1, 80, 80) and masks.dtype == torch.bool
    grey = images[:, :, 0]
    for b in range(8):
        for t in range(3):
            inside, outside = grey[b, t][masks[b, t, 0]], grey[b, t][~masks[b, t, 0]]
            assert inside.numel() > 50
            assert inside.mean() > outside.mean() + 1.0  # in units of the ImageNet std (~0.23)


def test_augmentation_is_the_same_over_a_clip_and_differs_between_clips():
    x, m = _square_batch(batch=6)
    settings = dataclasses.replace(AugmentSettings(), noise_prob=0.0)
    images, masks = augment_clip(x, m, generator=torch.Generator().manual_seed(1), image_size=64, settings=settings)
    for t in (1, 2):
        torch.testing.assert_close(images[:, t], images[:, 0])
        assert torch.equal(masks[:, t], masks[:, 0])
    distinct = {tuple(masks[b, 0, 0].flatten().nonzero().flatten()[:50].tolist()) for b in range(6)}
    assert len(distinct) >= 4
    again, _ = augment_clip(x, m, generator=torch.Generator().manual_seed(1), image_size=64, settings=settings)
    assert torch.equal(again, images)


def test_without_augmentation_the_input_is_what_inference_prepares():
    rng = np.random.default_rng(5)
    frames = rng.random((2, 48, 40)).astype(np.float32)
    masks = torch.from_numpy(rng.random((1, 2, 1, 48, 40)) > 0.5)
    images, _ = augment_clip(torch.from_numpy(frames)[None], masks, generator=torch.Generator().manual_seed(0),
                             image_size=32, settings=NO_AUGMENTATION)
    preparer = FramePreparer(np.repeat(frames[..., None], 3, axis=-1), 32, normalization=lambda f: f)
    expected = torch.stack([preparer.prepare(i) for i in range(2)])
    torch.testing.assert_close(images[0], expected, atol=1e-5, rtol=0)
