"""``napari-sam2``: the command line. Parsing only; every command imports its heavy modules (torch) when it runs,
so ``--help`` answers at once.

Exit status: 0 done; 1 bad input (one line on stderr, no traceback); 2 bad usage; 130 / 143 interrupted by
SIGINT / SIGTERM after saving progress (run the same command again to continue).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from napari_sam2 import __version__
from napari_sam2.cli.errors import EXIT_USAGE, CliError, Interrupted

PROG = "napari-sam2"
DEFAULT_MODEL = "sam2.1_hiera_tiny"

SEGMENT_HELP = """\
Segment a stack from prompts, or find and track every object (--auto): open it lazily, apply the prompts (and/or
find objects automatically), propagate SAM 2 along the frame axis and write the labels to a label store (a zarr
group; zarr.open_group(OUT)["labels"] has the stack's shape without its channel axis).
Running the same command again after an interruption (Ctrl-C, kill, crash, job time limit)
continues where it stopped and gives the same labels as an uninterrupted run.
"""

SEGMENT_EPILOG = """\
prompts: a JSON file {"objects": [{"id": 1, "name": "cell A", "prompts": [{"frame": 3, "points": [[y, x]],
"labels": [1]}, {"frame": 9, "box": [y0, x0, y1, x1]}, {"frame": 12, "mask": "mask.tif"}]}]} or a napari Points
layer saved as CSV with 'object_id' and 'positive' features; frames index the propagation axis, coordinates are
pixels (y, x) of the frame. See docs/cli.md.

example:
  napari-sam2 segment movie.ome.tif --prompts prompts.json --out labels.zarr --device cuda
  napari-sam2 segment embryo.ome.zarr --axis z --position t=3 --prompts z.json --out labels.zarr
  napari-sam2 segment movie.tif --auto --object-diameter 40 --out labels.zarr --export ctc --export-path RES
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``napari-sam2 segment: error: …``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


def _image_size(text: str) -> int:
    value = _positive_int(text)
    if value % 32 or value < 64:
        raise argparse.ArgumentTypeError(f"image_size must be a multiple of 32 and at least 64, got {value}")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    return text


def _add_segment(commands) -> None:
    p = commands.add_parser("segment", help="segment a stack from prompts, or everything with --auto (resumable)",
                            description=SEGMENT_HELP,
                            epilog=SEGMENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stack", help="TIFF, OME-TIFF, zarr / OME-Zarr folder, or a folder of single-frame TIFFs")
    p.add_argument("--prompts", metavar="PROMPTS",
                   help="prompt file: .json, or napari Points .csv (needed unless --auto)")
    p.add_argument("--out", required=True, metavar="LABELS", help="label store to write (a folder, e.g. labels.zarr)")
    add_segment_options(p)


def add_segment_options(
    p: argparse.ArgumentParser, *, export_path: bool = True, auto_switch: bool = True
) -> list[argparse.Action]:
    """The options of ``segment`` that say how a stack is segmented (frames, model, automatic mode, run) and
    ``--quiet``, added to ``p``; returns their actions but ``--quiet``'s and ``--auto``'s (``batch`` passes them on
    to each stack's ``segment`` run, and has its own ``--auto``)."""
    added: list[argparse.Action] = []
    where = p.add_argument_group("which frames")
    added.append(where.add_argument("--axis", metavar="t|z|NAME|INDEX",
                 help="axis the frames run along (default: the prompt file's, else t, or z for a volume)"))
    added.append(where.add_argument("--volume-axis", metavar="z|NAME",
                 help="objects in 3D over time: segment each object through this axis at every point of --axis "
                      "(default t) and follow it over --axis; prompts carry the plane's z (docs/volumes.md)"))
    added.append(where.add_argument("--channel", metavar="N|rgb",
                 help="channel index, or rgb (default: the prompt file's)"))
    added.append(where.add_argument("--position", metavar="z=12,...",
                 help="index on every other non-spatial axis, e.g. t=3"))
    added.append(where.add_argument("--axes", metavar="tzyx", help="names of the stack's axes, where its metadata "
                                                                   "has none"))
    model = p.add_argument_group("model")
    added.append(model.add_argument("--model", default=None, metavar="NAME",
                 help=f"SAM 2 model (default {DEFAULT_MODEL} where its checkpoint is cached or can be "
                      "downloaded, else the shipped 'starter'; the list: napari-sam2 info)"))
    weights = model.add_mutually_exclusive_group()
    added.append(weights.add_argument("--checkpoint", metavar="PATH",
                 help="checkpoint file (default: the cached one, downloaded on first use)"))
    added.append(weights.add_argument("--random-weights", action="store_true",
                 help="random weights, no checkpoint: MEANINGLESS masks, to check a setup offline"))
    added.append(model.add_argument("--image-size", type=_image_size, metavar="N",
                 help="model input size in pixels, a multiple of 32 (default 1024)"))
    added.append(model.add_argument("--device", default="auto", type=_device, metavar="auto|cpu|cuda|mps",
                 help="compute device (default auto); cuda:N picks a GPU"))
    added.append(model.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                 help="auto: bf16 on CUDA, fp32 elsewhere"))
    added.append(model.add_argument("--encoder-batch", type=_positive_int, default=None, metavar="N",
                 help="frames per image-encoder call, in fixed aligned blocks so resumed runs give the same "
                      "labels (default: 8 on CUDA, 1 elsewhere)"))
    auto = p.add_argument_group("automatic (find every object, follow it, detect divisions)")
    if auto_switch:
        auto.add_argument("--auto", action="store_true",
                          help="find the objects on the first frame and every K frames after (cells that enter or "
                               "are born), track them all forward, end a track where its cell divides and start two "
                               "daughters (lineage in the store and in CTC / GEFF exports); with --prompts too, the "
                               "prompted objects are tracked as well")
    added.append(auto.add_argument("--redetect-every", type=_positive_int, metavar="K",
                 help="look for new objects every K frames (default 10)"))
    added.append(auto.add_argument("--object-diameter", type=_positive_float, metavar="D",
                 help="expected object diameter in pixels (default: 1/24 of the frame's longer side)"))
    added.append(auto.add_argument("--min-size", type=_positive_int, metavar="A",
                 help="smallest object area in pixels (default: a sixth of a disc of the diameter)"))
    added.append(auto.add_argument("--max-size", type=_positive_int, metavar="A",
                 help="largest object area in pixels (default: four discs of the diameter)"))
    added.append(auto.add_argument("--min-predicted-iou", type=_fraction, metavar="X",
                 help="keep masks whose predicted IoU is at least X (default 0.6, and 0.3 with the shipped "
                      "starter model, whose IoU head predicts low values)"))
    added.append(auto.add_argument("--min-stability", type=_fraction, metavar="X",
                 help="keep masks whose stability score is at least X (default 0.75, and 0.6 with the starter)"))
    tiles = p.add_argument_group("large frames (native resolution in overlapping tiles)")
    added.append(tiles.add_argument("--tiles", default=None, choices=("auto", "on", "off"),
                 help="track in overlapping tiles at the model's input size instead of resizing each frame to it; "
                      "auto (default): when the frame is larger than the model's input and the objects (the size of "
                      "the box and mask prompts) would be under 16 px resized, or, with clicks only, when the "
                      "frame is at least 4 × the input"))
    added.append(tiles.add_argument("--tile-overlap", type=_positive_int, metavar="N",
                 help="pixels neighbouring tiles share (default a quarter of the tile); more than twice the "
                      "largest object's diameter lets an object crossing a tile border be handed over whole"))
    run = p.add_argument_group("run")
    added.append(run.add_argument("--direction", default=None, choices=("both", "forward", "backward"),
                 help="both (default): forward from the first prompted frame, then backward from it; "
                      "backward starts at the last prompted frame; --auto runs forward from frame 0"))
    added.append(run.add_argument("--lost-patience", type=_positive_int, metavar="K",
                 help="stop tracking an object for the rest of a pass once it was predicted absent on K frames "
                      "in a row (against false positives after a cell leaves, or past a nucleus in z)"))
    added.append(run.add_argument("--export", choices=("ome-zarr", "tiff", "ctc", "geff"),
                 help="also export the labels when done (ctc and geff with lineage and review statuses)"))
    if export_path:
        added.append(run.add_argument("--export-path", metavar="PATH", help="where to write the export"))
    added.append(run.add_argument("--restart", action="store_true",
                 help="discard the progress and labels of an earlier run in LABELS made with other inputs"))
    added.append(run.add_argument("--save-every", type=_positive_int, metavar="N",
                 help="save the resume state every N frames (default: adaptive, under ~5%% of the run time)"))
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar or messages, errors only")
    return added


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-sam2`` argument parser (no heavy imports)."""
    parser = _Parser(prog=PROG, description="SAM 2 for microscopy stacks, without a display.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_segment(commands)
    from napari_sam2.cli.batch_args import add_batch_parser
    from napari_sam2.cli.train import add_train_parser

    add_batch_parser(commands, add_segment_options, _positive_int)
    add_train_parser(commands, _positive_int, _image_size, _device)
    fetch = commands.add_parser("fetch", help="download a checkpoint to the cache",
                                description="Download model NAME's checkpoint into the cache (once).")
    fetch.add_argument("name", metavar="NAME", help="model name, e.g. sam2.1_hiera_tiny (the list: napari-sam2 info)")
    fetch.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: see napari-sam2 info)")
    info = commands.add_parser("info", help="devices, torch version, cached checkpoints, the cache folder",
                               description="Report devices, versions and the checkpoint cache.")
    info.add_argument("--cache-dir", metavar="DIR", help="cache folder to report on")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "segment":
        from napari_sam2.cli.segment import run_segment

        return run_segment(args)
    if args.command == "batch":
        from napari_sam2.cli.batch import run_batch

        return run_batch(args)
    if args.command == "train":
        from napari_sam2.cli.train import run_train

        return run_train(args)
    from napari_sam2.cli.info import run_fetch, run_info

    return run_fetch(args) if args.command == "fetch" else run_info(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except CliError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.code
    except Interrupted as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; labels written so far are kept — run the same command again to continue",
              file=sys.stderr)
        return 130
