"""``napari-sam2 segment --auto``: every cell found and followed without prompts — one entering mid-stack, one
dividing — with lineage and statuses in the store and the CTC export; killed and re-run, the same result as an
uninterrupted run. The shipped starter model at 256 px gives real masks on these clear cells in seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_sam2.io import LabelStore
from tests.cli.helpers import labels_of, one_error_line, run_cli, run_record
from tests.cli.test_faults import killed_at, killed_run
from tests.engine.cell_scenes import cells_scene

FRAMES, ENTER_AT, DIVIDE_AT = 9, 3, 3
STARTER = ["--model", "starter", "--image-size", "256", "--device", "cpu"]
AUTO = ["--auto", "--object-diameter", "22", "--redetect-every", "2", "--save-every", "1"]


def _args(stack, out, *extra):
    return ["segment", stack, "--out", out, *STARTER, *AUTO, *extra]


def _objects(out):
    return {o: (i.status, i.parent) for o, i in LabelStore.open(out, read_only=True).objects.items()}


@pytest.fixture(scope="module")
def scene():
    return cells_scene(FRAMES, enter_at=ENTER_AT, divide_at=DIVIDE_AT)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scene, cache):
    folder = tmp_path_factory.mktemp("auto")
    stack = folder / "movie.tif"
    tifffile.imwrite(stack, scene.frames, metadata={"axes": "TYX"})
    out = folder / "labels.zarr"
    result = run_cli(*_args(stack, out, "--export", "ctc", "--export-path", folder / "RES"), cache=cache)
    assert result.returncode == 0, result.stderr
    return stack, out, folder / "RES"


def _truth_of(mask: np.ndarray, truth: np.ndarray) -> tuple[int, float]:
    ids = [int(i) for i in np.unique(truth) if i]
    best = max(ids, key=lambda i: int((mask & (truth == i)).sum()))
    inter = (mask & (truth == best)).sum()
    return best, float(inter / (mask | (truth == best)).sum())


@pytest.mark.slow
def test_auto_finds_the_cells_the_entering_one_and_the_division_with_lineage(reference, scene):
    _, out, ctc = reference
    labels = labels_of(out)
    objects = _objects(out)
    assert {status for status, _ in objects.values()} == {"automatic"}
    # every object matches one true cell well on every frame it is on (the mother until the division is
    # recognised may cover both daughters: she is matched against them together too)
    owner = {}
    for t in range(FRAMES):
        together = np.where(np.isin(scene.labels[t], (4, 5)), 1, scene.labels[t])
        for obj in (int(i) for i in np.unique(labels[t]) if i):
            cell, iou = max(_truth_of(labels[t] == obj, scene.labels[t]), _truth_of(labels[t] == obj, together),
                            key=lambda match: match[1])
            assert iou > 0.5, f"object {obj} on frame {t} overlaps cell {cell} only with IoU {iou:.2f}"
            owner.setdefault(obj, set()).add(cell)
    entering = [o for o, cells in owner.items() if cells == {3}]
    assert len(entering) == 1 and np.flatnonzero(labels.reshape(FRAMES, -1).__eq__(entering[0]).any(1))[0] \
        <= ENTER_AT + 1, "the entering cell is found by the first re-detection after it appears"
    daughters = sorted(o for o, (_, parent) in objects.items() if parent is not None)
    assert len(daughters) == 2 and {objects[d][1] for d in daughters} == {o for o, c in owner.items() if c == {1}}
    assert [owner[d] for d in daughters] in ([{4}, {5}], [{5}, {4}]), "one daughter object per true daughter"
    parent = objects[daughters[0]][1]
    first_daughter_frame = min(np.flatnonzero((labels == d).reshape(FRAMES, -1).any(1))[0] for d in daughters)
    assert not (labels[first_daughter_frame:] == parent).any(), "the parent has no pixels once its daughters begin"
    tracks = {int(line.split()[0]): list(map(int, line.split()[1:])) for line in
              (ctc / "res_track.txt").read_text().splitlines()}
    assert [tracks[d][2] for d in daughters] == [parent, parent] and tracks[parent][1] < tracks[daughters[0]][0]
    assert json.loads((ctc / "statuses.json").read_text())[str(daughters[0])]["status"] == "automatic"


@pytest.mark.slow
def test_auto_killed_twice_then_re_run_equals_the_uninterrupted_run(reference, cache, tmp_path):
    stack, ref_out, _ = reference
    out = tmp_path / "labels.zarr"
    for at in ('"next_frame": 5,', '"next_frame": 7,'):  # after the entering cell is found; after the division
        point = killed_at(killed_run("resume", _args(stack, out), cache, at=at))
        assert point.startswith("commit"), point
        assert not run_record(out)["complete"] and run_record(out)["auto_state"]["origin"] == 0
    result = run_cli(*_args(stack, out), cache=cache)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    np.testing.assert_array_equal(labels_of(out), labels_of(ref_out))
    assert _objects(out) == _objects(ref_out)


def test_auto_options_without_auto_and_segment_without_prompts_are_refused(cache, tmp_path):
    stack = tmp_path / "movie.tif"
    tifffile.imwrite(stack, np.zeros((2, 32, 32), np.uint16), metadata={"axes": "TYX"})
    result = run_cli("segment", stack, "--out", tmp_path / "l.zarr", cache=cache)
    assert result.returncode == 2 and "--prompts" in one_error_line(result) and "--auto" in result.stderr
    result = run_cli("segment", stack, "--out", tmp_path / "l.zarr", "--redetect-every", "3", "--prompts", "p.json",
                     cache=cache)
    assert result.returncode == 2 and "--redetect-every needs --auto" in one_error_line(result)
    result = run_cli("segment", stack, "--out", tmp_path / "l.zarr", "--auto", "--direction", "backward",
                     cache=cache)
    assert result.returncode == 2 and "forward" in one_error_line(result)
    assert not (tmp_path / "l.zarr").exists()
