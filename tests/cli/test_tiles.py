"""``segment --tiles``: tracking at native resolution in tiles, recorded in the run record, resumable after a kill at
every resume point, and bad tile options refused in one line before any work."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from tests.cli.helpers import disk, labels_of, model_args, one_error_line, run_cli, run_record, write_json
from tests.cli.test_faults import killed_at, killed_run

SIDE = 200  # tiles of the 128-px test model: 2 × 2, overlapping by 32 px
FRAMES = 3


def _stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = rng.normal(400, 60, (FRAMES, SIDE, SIDE))
    for t in range(FRAMES):
        for centre in ((40, 40 + 4 * t), (150, 160), (60, 150 - 3 * t)):
            frames[t][disk(SIDE, centre, 7)] = 3000
    return np.clip(frames, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def tiled_job(tmp_path_factory, checkpoint, cache):
    folder = tmp_path_factory.mktemp("tiles")
    stack = folder / "large.tif"
    tifffile.imwrite(stack, _stack(), metadata={"axes": "TYX"})
    prompts = write_json(folder / "prompts.json", {"objects": [
        {"id": 1, "prompts": [{"frame": 1, "points": [[40, 44]]}]},
        {"id": 2, "prompts": [{"frame": 1, "box": [141, 151, 159, 169]}]},
        {"id": 5, "prompts": [{"frame": 1, "points": [[60, 147]]}]},
    ]})

    def args(out, *extra):
        return ["segment", stack, "--prompts", prompts, "--out", out, *model_args(checkpoint), "--tiles", "on",
                "--save-every", "1", "--quiet", *extra]

    out = folder / "reference.zarr"
    result = run_cli(*args(out), cache=cache)
    assert result.returncode == 0, result.stderr
    return args, labels_of(out), out


def test_a_tiled_run_writes_each_object_where_it_is_and_records_its_tiles(tiled_job):
    _, labels, out = tiled_job
    assert labels.shape == (FRAMES, SIDE, SIDE)
    record = run_record(out)
    assert record["complete"] and record["inputs"]["tiles"] == {"tile": 128, "overlap": 32}
    prompted = labels[1]
    for obj_id, centre in ((1, (40, 44)), (2, (150, 160)), (5, (60, 147))):
        ys, xs = np.nonzero(prompted == obj_id)
        assert len(ys), obj_id  # random weights draw something, around where it was prompted
        assert abs(np.median(ys) - centre[0]) < 40 and abs(np.median(xs) - centre[1]) < 40, obj_id


@pytest.mark.slow
def test_a_tiled_run_killed_at_every_resume_point_gives_the_uninterrupted_labels(tiled_job, cache, tmp_path):
    args, reference, _ = tiled_job
    out = tmp_path / "labels.zarr"
    visited: list[str] = []
    for _ in range(30):
        result = killed_run("resume", args(out), cache, skip=visited)
        if result.returncode == 0:
            break
        visited.append(killed_at(result))
    else:
        pytest.fail(f"the run never finished; killed after {visited}")
    assert sum(name.startswith("state_array") for name in visited) >= 2, visited
    np.testing.assert_array_equal(labels_of(out), reference)


def test_bad_tile_options_are_one_line_and_change_nothing(tiled_job, cache, tmp_path):
    args, _, reference_out = tiled_job
    out = tmp_path / "labels.zarr"
    line = one_error_line(run_cli(*args(out, "--tile-overlap", "128"), cache=cache))
    assert "--tile-overlap 128 must be less than the tile" in line
    line = one_error_line(run_cli(*args(out, "--tiles", "off", "--tile-overlap", "8"), cache=cache))
    assert "--tile-overlap needs --tiles on or auto" in line
    assert not out.exists()
    # the finished tiled run, asked again untiled: other inputs, nothing changed
    line = one_error_line(run_cli(*args(reference_out, "--tiles", "off"), cache=cache))
    assert "other inputs (tiles)" in line
