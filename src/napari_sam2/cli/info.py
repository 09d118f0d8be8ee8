"""``napari-sam2 info`` (devices, versions, the checkpoint cache) and ``napari-sam2 fetch NAME`` (download one)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from napari_sam2 import __version__
from napari_sam2.cli.errors import CliError


def _devices() -> dict[str, Any]:
    import torch

    from napari_sam2.engine.device import pick_device

    cuda = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            cuda.append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
    mps = getattr(torch.backends, "mps", None)
    return {
        "auto": str(pick_device("auto")),
        "cpu_threads": torch.get_num_threads(),
        "cuda": cuda,
        "cuda_build": torch.version.cuda,
        "mps": bool(mps is not None and mps.is_available()),
    }


def collect_info(cache_dir: str | None = None) -> dict[str, Any]:
    """The report of ``napari-sam2 info`` as a dict."""
    import torch

    from napari_sam2.model import MODEL_NAMES, STARTER_NAME
    from napari_sam2.model.hub import HUB_REPOS, cached_checkpoint, default_cache_dir, packaged_checkpoint

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    checkpoints = {}
    for name in MODEL_NAMES:
        path = cached_checkpoint(name, cache)
        checkpoints[name] = {"cached": path is not None, "path": str(path) if path else None,
                             "size_mb": round(path.stat().st_size / 1e6, 1) if path else None,
                             "hub": f"https://huggingface.co/{HUB_REPOS[name]}"}
    return {
        "napari_sam2": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": _devices(),
        "cache_dir": str(cache),
        "cache_dir_from": "NAPARI_SAM2_CACHE" if "NAPARI_SAM2_CACHE" in os.environ and not cache_dir else
                          "--cache-dir" if cache_dir else "default",
        "huggingface_hub": importlib.util.find_spec("huggingface_hub") is not None,
        "checkpoints": checkpoints,
        "shipped": {STARTER_NAME: str(packaged_checkpoint(STARTER_NAME) or "missing")},
    }


def format_info(report: dict[str, Any]) -> str:
    devices = report["devices"]
    lines = [
        f"napari-sam2 {report['napari_sam2']} (python {report['python']}, torch {report['torch']}"
        f"{', CUDA ' + devices['cuda_build'] if devices['cuda_build'] else ', CPU-only build'})",
        f"devices: --device auto uses {devices['auto']}; cpu ({devices['cpu_threads']} threads)",
    ]
    lines += [f"  cuda:{d['index']} {d['name']} ({d['memory_gib']} GiB)" for d in devices["cuda"]]
    if not devices["cuda"]:
        lines.append("  cuda: no GPU visible to torch")
    lines.append(f"  mps: {'available' if devices['mps'] else 'not available'}")
    how = {"NAPARI_SAM2_CACHE": "from $NAPARI_SAM2_CACHE", "--cache-dir": "from --cache-dir",
           "default": "set NAPARI_SAM2_CACHE to move it"}[report["cache_dir_from"]]
    lines.append(f"checkpoint cache: {report['cache_dir']} ({how})")
    width = max(len(n) for n in report["checkpoints"])
    for name, c in report["checkpoints"].items():
        state = f"cached, {c['size_mb']} MB" if c["cached"] else f"not downloaded (napari-sam2 fetch {name})"
        lines.append(f"  {name:<{width}}  {state}")
    for name, path in report.get("shipped", {}).items():
        lines.append(f"  {name:<{width}}  shipped with napari-sam2, works offline ({path})")
    hub = "installed" if report["huggingface_hub"] else "missing (fetch needs it: reinstall napari-sam2)"
    lines.append(f"huggingface_hub: {hub}")
    return "\n".join(lines)


def run_info(args: Namespace) -> int:
    report = collect_info(args.cache_dir)
    print(json.dumps(report, indent=2) if args.json else format_info(report))
    return 0


def run_fetch(args: Namespace) -> int:
    from napari_sam2.cli.weights import check_model_name
    from napari_sam2.model import CheckpointUnavailable, fetch_checkpoint

    check_model_name(args.name)
    try:
        path = fetch_checkpoint(args.name, cache_dir=args.cache_dir)
    except CheckpointUnavailable as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write to the cache: {exc.strerror or exc}") from None
    print(f"napari-sam2: {args.name} checkpoint at", file=sys.stderr)
    print(path)
    return 0
