"""The scoring of benchmarks/eval_auto.py: a result equal to the truth scores 1 everywhere and finds its division;
a result that misses the division and a cell scores lower, and says so; the simulated correction round fixes the
worst masklets first."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ctc_metrics")

from benchmarks.eval_auto import export_through_store, masklet_quality, score, write_ctc  # noqa: E402

from tests.engine.cell_scenes import cells_scene  # noqa: E402


@pytest.fixture()
def truth(tmp_path):
    scene = cells_scene(8, enter_at=2, divide_at=4, side=96)
    seg = [(t, t + 1, scene.labels[t : t + 1]) for t in (1, 5)]
    return scene, write_ctc(tmp_path / "GT", scene.labels, scene.parents, gt=True, seg=seg)


def test_the_truth_scores_one_and_finds_its_division(truth, tmp_path):
    scene, gt = truth
    res = tmp_path / "RES"
    export_through_store(scene.labels.astype(np.uint32), scene.parents, res, tmp_path / "s.zarr")
    row = score(res, gt)
    assert (row["DET"], row["SEG"], row["TRA"]) == (1.0, 1.0, 1.0)
    assert (row["divisions_true"], row["division_tp"], row["division_recall"], row["division_precision"]) == (
        1, 1, 1.0, 1.0)


def test_a_result_without_lineage_or_the_entering_cell_scores_lower(truth, tmp_path):
    scene, gt = truth
    labels = np.where(scene.labels == 3, 0, scene.labels).astype(np.uint32)
    res = tmp_path / "RES"
    export_through_store(labels, {}, res, tmp_path / "s.zarr")
    row = score(res, gt)
    assert row["DET"] < 1 and row["TRA"] < 1 and row["SEG"] < 1
    assert row["division_recall"] == 0.0 and row["divisions_found"] == 0


def test_masklet_quality_ranks_a_wrong_object_and_names_a_missed_cell(truth):
    scene, _ = truth
    labels = scene.labels.astype(np.uint32).copy()
    labels[labels == 3] = 0  # cell 3 missed
    labels[:, 0:6, 0:6] = 9  # a masklet on background
    quality, missed = masklet_quality(labels, scene.labels)
    assert missed == [3]
    assert quality[9][:2] == (0.0, 0) and quality[2][0] == 1.0
