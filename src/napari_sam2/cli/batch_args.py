"""The ``napari-sam2 batch`` command line (parsing only: no Dask, no torch)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

BATCH_HELP = """\
Segment many stacks, each as `napari-sam2 segment` would (same options, same resumable run, one label store per
stack in OUT_DIR), spread over the workers of a Dask cluster: a local one by default (one worker per GPU, or
--workers N on the CPU), SLURM jobs (--cluster slurm --cluster-config FILE), or a running scheduler
(--cluster tcp://HOST:8786). A worker lost mid-stack hands the stack to another worker, which continues from its
saved state; a stack that fails for its own reason (a bad file, bad prompts) is reported in one line and the others
go on. Running the same command again continues every unfinished stack. Needs the [cluster] extra:
pip install 'napari-sam2[cluster]'.
"""

BATCH_EPILOG = """\
INPUT: a stack file, a folder (its *.tif, *.tiff and zarr stacks; a zarr folder itself is one stack), a glob
('plate/*.ome.tif', quoted), or a manifest (.csv or .json, columns stack, prompts, axis, channel, position; paths
relative to the manifest). Prompts: --prompts FILE for every stack, --prompts-dir DIR (DIR/<stack name>.json or
.csv), a manifest's prompts column, or --auto. Written in OUT_DIR: <stack name>.zarr per stack, and
batch_summary.csv / batch_summary.json (stack, frames, objects, seconds, status, error). Exit status 1 if any stack
failed. See docs/cli.md.

examples:
  napari-sam2 batch plate/ --prompts prompts.json --out-dir labels/ --device cuda
  napari-sam2 batch 'week1/*.tif' --prompts-dir prompts/ --out-dir labels/ --cluster slurm --cluster-config slurm.yaml
"""


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, got {text!r}")
    return int(text)


def add_batch_parser(commands: Any, add_segment_options: Callable[..., list[argparse.Action]],
                     positive_int: Callable[[str], int]) -> None:
    """Add ``batch`` to the ``napari-sam2`` sub-commands; ``add_segment_options`` adds ``segment``'s options."""
    p = commands.add_parser("batch", help="segment many stacks on a Dask cluster (local, SLURM, or an address)",
                            description=BATCH_HELP, epilog=BATCH_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="stack files, folders, globs or manifests (.csv/.json)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--prompts", metavar="FILE", help="one prompt file for every stack")
    source.add_argument("--prompts-dir", metavar="DIR", help="prompt files named after the stacks (<name>.json/.csv)")
    source.add_argument("--auto", action="store_true", help="no prompts: segment's automatic mode for every stack")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the label stores and the summary")
    cluster = p.add_argument_group("cluster")
    cluster.add_argument("--cluster", default="local", metavar="local|slurm|tcp://HOST:PORT",
                         help="local (default): worker processes on this machine; slurm: SLURM jobs (needs "
                              "--cluster-config); or the address of a running Dask scheduler")
    cluster.add_argument("--workers", type=positive_int, metavar="N",
                         help="local: worker processes (default: one per GPU, else 1); slurm: most jobs at once "
                              "(default: one per stack)")
    cluster.add_argument("--gpus-per-worker", type=positive_int, default=1, metavar="N",
                         help="GPUs pinned to each local worker, or asked for by each SLURM job (default 1)")
    cluster.add_argument("--cluster-config", metavar="FILE",
                         help="SLURM settings, YAML or TOML (queue, account, memory, walltime, gpus, modules, ...)")
    cluster.add_argument("--retries", type=_count, default=2, metavar="N",
                         help="runs of a stack after its first that stopped on a signal (default 2); a lost worker's "
                              "stack is always handed on")
    actions = add_segment_options(p, export_path=False, auto_switch=False)
    p.set_defaults(segment_options=tuple((a.dest, a.option_strings[0], a.nargs == 0) for a in actions))
