"""3D over time: objects prompted on a (t, z) plane, segmented through z and followed over t (engine/volume_time)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from benchmarks.synthetic_volumes import central_click, nuclei_4d

from napari_sam2.engine.volume_time import VolumeStateError, VolumeTimeTracker, connected_to
from napari_sam2.model import STARTER_NAME, build_sam2
from napari_sam2.model.hub import packaged_checkpoint

SIZE = 128  # small and fast; the model and every code path are the real ones


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(2)
    model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE)
    with torch.no_grad():  # random weights would call every object absent
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(2.0)
    return model


@pytest.fixture(scope="module")
def scene():
    return nuclei_4d(3, 5, 64, num_nuclei=2, radius=9.0, z_step=2.5, seed=4)


def run_all(tracker: VolumeTimeTracker) -> dict[int, tuple[tuple[int, ...], np.ndarray]]:
    return {step.t: (step.obj_ids, step.logits) for step in tracker.propagate()}


def prompt_centres(tracker: VolumeTimeTracker, truth: np.ndarray, t: int, ids=(1, 2)) -> None:
    for k in ids:
        z, y, x = central_click(truth[t], k)
        tracker.add_points(t, z, k, [[y, x]], [1])


@pytest.mark.slow
def test_real_nuclei_are_segmented_in_3d_and_followed_over_t_as_they_drift_in_z():
    model = build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME))
    data = nuclei_4d(3, 8, 128, num_nuclei=2, seed=1)
    tracker = VolumeTimeTracker(model, data.image, session_options={"device": "cpu"})
    prompt_centres(tracker, data.truth, 0)
    for step in tracker.propagate():
        for i, k in enumerate(step.obj_ids):
            pred, truth = step.masks[i], data.truth[step.t] == k
            iou = (pred & truth).sum() / (pred | truth).sum()
            assert iou > 0.85, (step.t, k, iou)
            widest = int(np.argmax(truth.sum(axis=(1, 2))))
            assert abs(step.central_planes[k] - widest) <= 1  # re-centred on the object's largest section
    tracker.close()


def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tiny, scene):
    whole = VolumeTimeTracker(tiny, scene.image, session_options={"device": "cpu"})
    prompt_centres(whole, scene.truth, 0)
    expected = run_all(whole)
    whole.close()

    first = VolumeTimeTracker(tiny, scene.image, session_options={"device": "cpu"})
    prompt_centres(first, scene.truth, 0)
    got = {s.t: (s.obj_ids, s.logits) for s in first.propagate(stop=1)}
    state = io.BytesIO()
    first.save_state(state)
    first.close()
    state.seek(0)
    second = VolumeTimeTracker(tiny, scene.image, session_options={"device": "cpu"})
    second.load_state(state)
    assert second.next_t == 2
    got.update(run_all(second))
    second.close()
    assert sorted(got) == sorted(expected) == list(range(3))
    for t in expected:
        assert got[t][0] == expected[t][0]
        np.testing.assert_array_equal(got[t][1], expected[t][1])
        assert (expected[t][1] > 0).any()


def test_objects_start_at_their_own_t_and_a_correction_reruns_only_that_object_from_its_t(tiny, scene):
    tracker = VolumeTimeTracker(tiny, scene.image, session_options={"device": "cpu"})
    prompt_centres(tracker, scene.truth, 0, ids=(1,))
    prompt_centres(tracker, scene.truth, 1, ids=(2,))
    steps = run_all(tracker)
    assert [steps[t][0] for t in range(3)] == [(1,), (1, 2), (1, 2)]
    before = {t: steps[t][1][0] for t in (1, 2)}
    tracker.add_points(1, tracker.central_planes(1)[1], 1, [[2.0, 2.0]], [1])  # far from the nucleus: it changes
    rerun = run_all(tracker)
    assert sorted(rerun) == [1, 2] and all(ids == (1,) for ids, _ in rerun.values())
    assert not np.array_equal(rerun[1][1][0], before[1])
    tracker.close()


def test_a_prompt_outside_the_stack_is_refused_by_name(tiny, scene):
    tracker = VolumeTimeTracker(tiny, scene.image, session_options={"device": "cpu"})
    with pytest.raises(IndexError, match=r"plane \(t=9, z=0\) is outside"):
        tracker.add_points(9, 0, 1, [[3, 3]], [1])
    tracker.close()


def test_a_state_of_another_stack_is_refused(tiny, scene, tmp_path):
    tracker = VolumeTimeTracker(tiny, scene.image, session_options={"device": "cpu"})
    prompt_centres(tracker, scene.truth, 0, ids=(1,))
    tracker.save_state(tmp_path / "state.pt")
    other = VolumeTimeTracker(tiny, scene.image[:2], session_options={"device": "cpu"})
    with pytest.raises(VolumeStateError, match="over a stack"):
        other.load_state(tmp_path / "state.pt")


def test_a_3d_mask_keeps_only_what_is_connected_to_its_prompted_planes():
    mask = np.zeros((6, 10, 10), bool)
    mask[0:3, 2:5, 2:5] = True  # the object, prompted on plane 1
    mask[3:6, 6:9, 6:9] = True  # a neighbour it "continued" onto past its end: touches it on no plane
    mask[1, 8:10, 0:2] = True  # a speck on the prompted plane itself stays (the prompt plane is the prompt's)
    keep = connected_to(mask, {1})
    assert keep[0:3, 2:5, 2:5].all() and not keep[3:].any() and keep[1, 8:10, 0:2].all()
    assert connected_to(mask, {4})[3:6, 6:9, 6:9].all() and not connected_to(mask, {4})[0, 2:5, 2:5].any()


class CountingVolume:
    """A (T, Z, H, W) array-like that counts the planes read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


def test_each_plane_is_read_and_encoded_once_per_t_whatever_the_number_of_objects(tiny, scene):
    volume = CountingVolume(scene.image[:2])
    tracker = VolumeTimeTracker(tiny, volume, intensity_range=(0.0, 4000.0), session_options={"device": "cpu"})
    prompt_centres(tracker, scene.truth, 0)
    run_all(tracker)
    tracker.close()
    depth = scene.image.shape[1]
    assert sorted(volume.reads) == [(t, z) for t in range(2) for z in range(depth)]  # the t-sessions read nothing
