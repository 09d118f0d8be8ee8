"""The plugin's non-Qt parts: layer axes, propagation plans, the stopping rule, prompt bookkeeping, writes into the
labels, sample data, and that napari start-up does not import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Image

from napari_sam2 import samples
from napari_sam2._qt.label_array import plane_writes
from napari_sam2._qt.layer_stack import channel_choices, default_frame_axis, default_store_path, layer_axes
from napari_sam2._qt.model_loading import MODEL_NAMES
from napari_sam2._qt.prompts import FramePrompt, PromptBook, group_boxes, group_points
from napari_sam2._qt.propagation import LostObjects, PassResult, plan_propagation


def test_importing_the_plugin_does_not_import_torch():
    """napari imports the package, the manifest's python modules and the widget module at start-up or when the
    widget opens: none of that may import torch (the model loads later, in a worker)."""
    code = (
        "import sys, napari_sam2, napari_sam2.samples, napari_sam2._qt.widget, napari_sam2.io.napari_readers\n"
        "from npe2 import PluginManifest\n"
        "m = PluginManifest.from_distribution('napari-sam2')\n"
        "assert 'napari-sam2.widget' in [c.id for c in m.contributions.commands]\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_model_menu_lists_the_published_models():
    from napari_sam2.model import MODEL_NAMES as ENGINE_NAMES

    assert sorted(MODEL_NAMES) == sorted(ENGINE_NAMES)


def test_shipped_models_are_offered_once_their_weights_are_installed(tmp_path, monkeypatch):
    """The starter model (``napari_sam2.model``'s own configuration) is in the menu when its weights ship."""
    from napari_sam2._qt import model_loading
    from napari_sam2.model.config import OWN_CONFIGS

    assert set(model_loading.SHIPPED_MODELS) <= set(OWN_CONFIGS)
    from napari_sam2.model import hub

    for name, path in getattr(hub, "PACKAGED_WEIGHTS", {}).items():  # the model package's own record of the file
        assert model_loading.shipped_weights(name) == Path(path)
    weights = tmp_path / "starter.pt"
    monkeypatch.setattr(model_loading, "shipped_weights", lambda name: weights)
    assert "starter" not in model_loading.offered_models() and "starter" not in model_loading.what_works_offline()
    weights.write_bytes(b"")
    assert model_loading.offered_models()[0] == "starter" and "sam2.1_hiera_tiny" in model_loading.offered_models()
    assert "the shipped model “starter”" in model_loading.what_works_offline("sam2.1_hiera_tiny")


@pytest.mark.parametrize(
    ("device", "frame", "native", "size"),
    [
        ("cuda", (2048, 2048), 1024, 1024),  # a GPU: full size
        ("cpu", (2048, 2048), 1024, 512),  # a CPU: 512 (1024 costs ~9x the time)
        ("mps", (1024, 700), 1024, 512),
        ("cuda", (130, 130), 1024, 256),  # a small frame is not blown up
        ("cuda", (300, 40), 1024, 512),  # the larger side counts
        ("cpu", (40, 30), 1024, 256),  # never below 256
        ("cuda", (2048, 2048), 512, 512),  # nor above the model's own size (the starter model: 512)
    ],
)
def test_automatic_image_size(device, frame, native, size):
    from napari_sam2._qt.model_loading import auto_image_size

    assert auto_image_size(device, frame, native) == size


@pytest.mark.parametrize(
    ("shape", "kwargs", "axes", "frame_axis"),
    [
        ((5, 16, 16), {}, ("t", "y", "x"), "t"),
        ((5, 16, 16), {"axis_labels": ("z", "y", "x")}, ("z", "y", "x"), "z"),
        ((3, 5, 16, 16), {}, ("t", "z", "y", "x"), "t"),
        ((3, 16, 16, 3), {"rgb": True}, ("t", "y", "x", "c"), "t"),
        ((5, 16, 16), {"metadata": {"axes": ("z", "c", "y", "x")}}, ("z", "y", "x"), "z"),
    ],
)
def test_layer_axes_and_default_propagation_axis(shape, kwargs, axes, frame_axis):
    """Axis labels (or our reader's metadata) name the axes; t is the default propagation axis, else z."""
    layer = Image(np.zeros(shape, np.uint8), **kwargs)
    assert layer_axes(layer) == axes
    assert default_frame_axis(axes) == frame_axis


def test_channel_choices_and_store_paths(tmp_path):
    rgb = Image(np.zeros((3, 16, 16, 3), np.uint8), rgb=True, name="movie")
    assert [spec for _, spec in channel_choices(rgb, layer_axes(rgb))] == ["rgb", 0, 1, 2]
    path, beside = default_store_path(rgb)
    assert not beside and path.name.startswith("movie-") and path.name.endswith(".sam2.zarr")
    assert default_store_path(rgb) == (path, False)  # the same layer finds the same store again
    rgb._source = type(rgb._source)(path=str(tmp_path / "cells.ome.tif"))
    assert default_store_path(rgb) == (tmp_path / "cells.sam2.zarr", True)


def test_propagation_plans():
    """Whole masklet from the earliest prompt (latest for backward); "from here"; a frame range limits every pass."""
    plan = plan_propagation("forward", 10, [3, 6])
    assert plan.passes == (("forward", 3, 6),) and plan.total_frames == 7
    assert plan_propagation("backward", 10, [3, 6]).passes == (("backward", 6, 6),)
    assert plan_propagation("both", 10, [3, 6]).passes == (("forward", 3, 6), ("backward", 3, 3))
    assert plan_propagation("both", 10, [3], start=5, frame_range=(2, 7)).passes == (
        ("forward", 5, 2), ("backward", 5, 3))
    with pytest.raises(ValueError, match="no prompts"):
        plan_propagation("forward", 10, [])


def test_lost_objects_rule_blanks_lost_objects_and_stops_when_all_are_lost():
    rule = LostObjects(patience=2)
    seen, stopped = [], False
    for frame in range(6):
        present = frame < 2  # object 1 leaves after frame 1; object 2 is never there
        logits = np.where(np.ones((2, 4, 4), bool), 1.0, 0.0).astype(np.float32)
        scores = np.array([1.0 if present else -1.0, -1.0], np.float32)
        result, stopped = rule.apply(PassResult(frame, (1, 2), logits, scores))
        seen.append(result.logits.max(axis=(1, 2)).tolist())
        if stopped:
            break
    assert stopped and len(seen) == 4  # object 2 is lost after frames 0-1, object 1 after frames 2-3: stop
    assert seen[1] == [1.0, 1.0] and seen[2] == [1.0, -1024.0] and seen[3] == [1.0, -1024.0]


def test_prompt_book_from_layer_contents():
    """Clicks are grouped by (object, frame); a later box replaces an earlier one; masks survive layer edits."""
    data = np.array([[2, 10.0, 20.0], [2, 11.0, 21.0], [4, 5.0, 6.0]])
    points = group_points(data, [1, 1, 2], [1, 0, 1], frame_dim=0, yx_dims=(1, 2))
    assert set(points) == {(1, 2), (2, 4)}
    np.testing.assert_array_equal(points[(1, 2)][1], [1, 0])
    box = np.array([[3, 0, 0], [3, 0, 9], [3, 5, 9], [3, 5, 0]])
    boxes = group_boxes([box, box + [0, 1, 1]], [1, 1], frame_dim=0, yx_dims=(1, 2))
    assert boxes == {(1, 3): (1.0, 1.0, 6.0, 10.0)}
    book = PromptBook()
    assert book.update_from_layers(points, boxes) == [(1, 2), (1, 3), (2, 4)]
    assert book.update_from_layers(points, boxes) == []
    book.set_mask(2, 4, np.ones((8, 8), bool))
    assert book.update_from_layers(points, {}) == [(1, 3)]
    assert book.get(2, 4).mask is not None and book.frames(1) == [2]
    assert FramePrompt().empty and book.get(1, 3) is None


def test_writes_into_the_labels_layer_split_into_frame_edits():
    """Every form of write napari makes into the Labels layer's data (a box of slices, ints, fancy indices from
    ``data_setitem``) becomes one edit per frame it touches, doing to that frame exactly what numpy would."""
    shape = (3, 2, 6, 6)
    rng = np.random.default_rng(0)
    writes = [
        ((slice(1, 3), slice(None), slice(2, 5), slice(0, 2)), rng.integers(0, 9, (2, 2, 3, 2))),
        ((2, 0, slice(None), 4), 7),
        ((Ellipsis, slice(0, 1)), 5),
        ((np.array([1, 1, 2]), np.array([0, 0, 1]), np.array([4, 5, 0]), np.array([4, 4, 3])), np.array([1, 2, 3])),
    ]
    for key, value in writes:
        expected = rng.integers(0, 9, shape)
        actual = expected.copy()
        expected[key] = value
        edits = plane_writes(key, value, shape)
        for coords, edit in edits:
            actual[coords] = edit(actual[coords].copy())
        assert np.array_equal(actual, expected), key
        addressed = np.zeros(shape, bool)
        addressed[key] = True
        assert {coords for coords, _ in edits} == {c for c in np.ndindex(shape[:2]) if addressed[c].any()}, key


def test_sample_data():
    """Synthetic stacks are 16-bit and noisy, cells divide; the shipped real stacks load with their axes."""
    movie = samples.synthetic_cell_timelapse(n_frames=30, size=128, n_cells=6, seed=3)
    assert movie.dtype == np.uint16 and movie.shape == (30, 128, 128)
    assert np.std(movie[0][:8, :8].astype(float)) > 3  # noise in the background
    bright = [int((frame > np.percentile(movie, 90)).sum()) for frame in movie]
    assert max(bright) > 0
    volume = samples.synthetic_nuclei_volume(depth=16, size=64, n_nuclei=3)
    assert volume.dtype == np.uint16 and volume.shape == (16, 64, 64)
    for sample in (samples.c2c12_sample, samples.cancer_cell_migration_sample, samples.mouse_embryo_sample):
        [(data, meta, kind)] = sample()
        assert kind == "image" and data.ndim == 3 and len(meta["axis_labels"]) == 3


def test_download_reports_progress_and_returns_the_checkpoint(tmp_path, monkeypatch):
    """A published model not yet cached is fetched in a helper thread while the worker reports the megabytes."""
    import time

    import napari_sam2.model as model
    from napari_sam2._qt.model_loading import LoadProgress, _fetch_with_progress

    def slow_fetch(name, cache_dir):
        partial = tmp_path / "cache" / f"{name}.pt.incomplete"
        partial.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(4):
            with partial.open("ab") as f:
                f.write(b"\0" * (1 << 20))
            time.sleep(0.3)
        return partial.rename(partial.with_suffix(""))

    monkeypatch.setattr(model, "fetch_checkpoint", slow_fetch)
    steps = list(_fetch_with_progress("sam2.1_hiera_tiny", tmp_path / "cache"))
    progress = [s for s in steps if isinstance(s, LoadProgress)]
    assert progress and progress[0].total == 156 and "downloading sam2.1_hiera_tiny" in progress[0].message
    assert max(p.done for p in progress) >= 2
    assert steps[-1] == tmp_path / "cache" / "sam2.1_hiera_tiny.pt"
    assert list(_fetch_with_progress("sam2.1_hiera_tiny", tmp_path / "cache")) == [steps[-1]]  # cached now
