"""The synthetic 3D + t nuclei of benchmarks/synthetic_volumes.py and the classical 3D baseline of eval_volume."""

import numpy as np
from benchmarks.eval_volume import baseline_track, iou
from benchmarks.synthetic_volumes import central_click, nuclei_4d


def test_nuclei_move_in_z_deform_and_one_divides_into_two_daughters():
    data = nuclei_4d(6, 10, 96, num_nuclei=2, radius=10.0, divide_at=2, seed=1)
    assert data.image.shape == data.truth.shape == (6, 10, 96, 96) and data.image.dtype == np.uint16
    assert data.divisions == {1: 2} and data.parents == {3: 1, 4: 1}
    present = [set(np.unique(data.truth[t]).tolist()) - {0} for t in range(6)]
    assert present[:3] == [{1, 2}] * 3 and all(p == {2, 3, 4} for p in present[3:])
    widest = [int(np.argmax((data.truth[t] == 2).sum(axis=(1, 2)))) for t in range(6)]
    volumes = [int((data.truth[t] == 2).sum()) for t in range(6)]
    assert len(set(widest)) > 1 or len(set(volumes)) > 1  # it drifts in z or changes shape
    assert data.image[data.truth > 0].mean() > 3 * data.image[data.truth == 0].mean()  # bright nuclei


def test_the_classical_baseline_follows_well_separated_nuclei():
    data = nuclei_4d(3, 10, 96, num_nuclei=2, radius=10.0, seed=2)
    clicks = {k: central_click(data.truth[0], k) for k in (1, 2)}
    z, y, x = clicks[1]
    assert data.truth[0, z, int(y), int(x)] == 1
    tracked = baseline_track(data.image, clicks, 0, watershed=False, z_step=3.0)
    for k in (1, 2):
        for t in range(3):
            assert iou(tracked[k][t], data.truth[t] == k) > 0.6, (k, t)
