"""``napari-sam2 segment`` offline without a checkpoint: one line at once, saying so and offering what works."""

from __future__ import annotations

import subprocess
import time

from tests.cli.helpers import MODEL, cli_env, command, one_error_line


def test_offline_without_a_checkpoint_says_so_in_one_line_and_offers_what_works(tiff_job_inputs, cache, tmp_path):
    stack, prompts = tiff_job_inputs
    env = cli_env(cache)
    env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there: as offline
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)
    out = tmp_path / "labels.zarr"
    began = time.monotonic()
    result = subprocess.run(command("segment", stack, "--prompts", prompts, "--out", out, "--model", MODEL), env=env,
                            capture_output=True, text=True, timeout=300)
    assert time.monotonic() - began < 60, "no half-minute of retries"
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"no checkpoint for {MODEL}, and it cannot be downloaded: offline (127.0.0.1 cannot be reached" in line
    assert "--checkpoint FILE" in line and f"{MODEL}.pt" in line and str(cache / f"{MODEL}.pt") in line
    assert "--model starter" in line
    assert not out.exists()
