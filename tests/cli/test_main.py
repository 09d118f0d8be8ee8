"""The ``napari-sam2`` command itself: help without loading torch, the console script, ``info`` and ``fetch``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from napari_sam2.cli.main import main
from tests.cli.helpers import MODEL, cli_env, one_error_line, run_cli

HELP_CHECK = """
import sys
from napari_sam2.cli.main import main
for argv in (["--help"], ["segment", "--help"], ["batch", "--help"], ["fetch", "--help"], ["info", "--help"]):
    try:
        main(argv)
    except SystemExit as stop:
        assert stop.code == 0, (argv, stop.code)
print("torch" in sys.modules, "zarr" in sys.modules, "distributed" in sys.modules)
"""


def test_help_of_every_command_loads_neither_torch_nor_zarr():
    result = subprocess.run([sys.executable, "-c", HELP_CHECK], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False False False"
    for word in ("segment", "--prompts", "--out", "--axis", "--channel", "--position", "--model", "--checkpoint",
                 "--image-size", "--device", "--direction", "--export", "--export-path", "fetch", "info"):
        assert word in result.stdout


def test_the_console_script_is_installed_next_to_python():
    script = Path(sys.executable).with_name("napari-sam2")
    if not script.exists():
        pytest.skip("napari-sam2 is not installed as a package in this environment (pip install -e .)")
    result = subprocess.run([script, "segment", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--prompts PROMPTS" in result.stdout


def test_a_command_is_required_and_unknown_options_are_one_line_usage_errors(cache):
    result = run_cli("segment", "movie.tif", "--prompts", "p.json", "--out", "x.zarr", "--colour", "red", cache=cache)
    assert result.returncode == 2
    assert "unrecognized arguments: --colour red" in one_error_line(result)
    assert run_cli(cache=cache).returncode == 2


def test_info_reports_devices_versions_the_cache_and_cached_checkpoints(tmp_path, monkeypatch, capsys):
    (tmp_path / f"{MODEL}.pt").write_bytes(b"0" * 1000)
    result = subprocess.run([sys.executable, "-m", "napari_sam2.cli", "info", "--json"], env=cli_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cache_dir"] == str(tmp_path) and report["cache_dir_from"] == "NAPARI_SAM2_CACHE"
    assert report["checkpoints"][MODEL]["cached"] and not report["checkpoints"]["sam2.1_hiera_large"]["cached"]
    assert report["devices"]["auto"] in ("cpu", "cuda", "mps") and report["torch"]
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path))
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"checkpoint cache: {tmp_path} (from $NAPARI_SAM2_CACHE)" in text
    assert "napari-sam2 fetch sam2.1_hiera_large" in text and re.search(rf"{MODEL} +cached, 0.0 MB", text)


def test_fetch_finds_a_cached_checkpoint_and_says_clearly_when_it_cannot_download(tmp_path, capsys):
    (tmp_path / f"{MODEL}.pt").write_bytes(b"0")
    assert main(["fetch", MODEL, "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"{MODEL}.pt")
    assert main(["fetch", "sam3", "--cache-dir", str(tmp_path)]) == 2
    assert "napari-sam2: error: unknown model 'sam3'" in capsys.readouterr().err
    missing = run_cli("fetch", "sam2.1_hiera_small", cache=tmp_path)  # a subprocess: the hub client is offline there
    assert missing.returncode == 1
    line = one_error_line(missing)
    assert "sam2.1_hiera_small.pt" in line and str(tmp_path) in line
