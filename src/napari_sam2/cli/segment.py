"""``napari-sam2 segment``: check every input, then propagate into the label store, resumably.

Order of work: the stack and the prompts (no torch), the label store and its run record (read-only), the export
target, the model's weights and the device — all checked before anything is written, so a bad input changes
nothing in LABELS. Then the store is locked (one writer at a time), the objects and prompts are recorded in it,
and the run continues from its record (see ``runner`` for the resume rule).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam2.cli.errors import CliError, UsageError, out_of_device_memory
from napari_sam2.cli.inputs import StackAndPrompts, open_stack_and_prompts, option_wording
from napari_sam2.cli.progress import Progress
from napari_sam2.cli.run_record import RunRecord, existing_record, restore_state, view_key
from napari_sam2.cli.runner import Runner, SaveCadence
from napari_sam2.cli.weights import ModelChoice, build_model, choose_model, pick_device
from napari_sam2.io import (
    LabelStore,
    LabelStoreError,
    StackError,
    export_ctc,
    export_geff,
    export_ome_zarr,
    export_tiff,
)
from napari_sam2.io.errors import describe_os_error
from napari_sam2.io.prompt_file import PromptFileError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer at a time is then the user's care
    fcntl = None

IMAGEJ_AXES = set("tzcyx")
AUTO_REDETECT_EVERY = 10


@dataclass
class Plan:
    """Everything a run needs, checked: inputs, store location and record, export, weights, device."""

    data: StackAndPrompts
    out: Path
    key: str
    record: RunRecord | None
    export: tuple[str, Path] | None
    model: ModelChoice
    network: Any  # the built SAM 2 model; None when the run is already finished
    device: Any
    identity: dict[str, Any]
    start: int
    passes: list[str]
    auto: dict[str, Any] | None = None  # --auto's settings (also part of the run's identity)
    tiles: dict[str, int] | None = None  # {"tile", "overlap"} when the run tracks in tiles (part of the identity)


def say(args: Namespace, text: str) -> None:
    if not args.quiet:
        print(f"napari-sam2: {text}", file=sys.stderr, flush=True)


def _check_writable(out: Path) -> None:
    """LABELS, or the folder it is to be made in, must be writable: say so before any work."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if os.access(existing, os.W_OK):
        return
    read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    code = errno.EROFS if read_only else errno.EACCES
    raise CliError(f"{existing}: {describe_os_error(OSError(code, os.strerror(code)))}; nothing was changed")


def _check_export(args: Namespace, data: StackAndPrompts, record: RunRecord | None) -> tuple[str, Path] | None:
    if args.export is None:
        if args.export_path is not None:
            raise UsageError("--export-path needs --export ome-zarr|tiff|ctc|geff")
        return None
    if args.export_path is None:
        raise UsageError(f"--export {args.export} needs --export-path PATH")
    path = Path(args.export_path)
    axes = list(data.source.label_axes)
    if args.export == "ctc":
        if "t" not in axes:
            raise CliError(f"a Cell Tracking Challenge export needs a 't' axis; the labels have axes {axes}")
        extra = [a for a, n in zip(axes[:-2], data.source.label_shape, strict=False) if a not in "tz" and n > 1]
        if extra:
            raise CliError(f"axes {extra} have no place in a Cell Tracking Challenge export")
    if args.export == "tiff" and not set(axes) <= IMAGEJ_AXES:
        raise CliError(f"an ImageJ TIFF holds axes t, z, c, y, x; the labels have {axes}")
    done = record is not None and _exported(record, args.export, path)
    own_ome_zarr = args.export == "ome-zarr" and path.resolve() == data.stack_path.resolve()
    if path.exists() and not done and not own_ome_zarr:
        raise CliError(f"export path {path} already exists; choose a new one (nothing is overwritten)")
    return args.export, path


def _exported(record: RunRecord, fmt: str, path: Path) -> bool:
    return {"format": fmt, "path": str(path.resolve())} in record.data.get("exports", []) and path.exists()


def _pass_plan(direction: str, data: StackAndPrompts, auto: bool) -> tuple[int, list[str]]:
    if auto:
        return 0, ["forward"]
    frames = data.prompts.frames
    if direction == "backward":
        return frames[-1], ["backward"]
    start = frames[0]
    if direction == "both" and start > 0:
        return start, ["forward", "backward"]
    return start, ["forward"]


def _auto_options(args: Namespace) -> dict[str, Any] | None:
    """--auto's settings, checked (no torch): None without --auto."""
    given = [name for name in ("redetect_every", "object_diameter", "min_size", "max_size", "min_predicted_iou",
                               "min_stability") if getattr(args, name) is not None]
    if not args.auto:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --auto")
        if args.prompts is None:
            raise UsageError("give --prompts PROMPTS, or --auto to find the objects automatically")
        return None
    if args.direction not in (None, "forward"):
        raise UsageError(f"--auto tracks forward in time from frame 0; --direction {args.direction} does not apply")
    if args.min_size is not None and args.max_size is not None and args.min_size > args.max_size:
        raise UsageError(f"--min-size {args.min_size} is larger than --max-size {args.max_size}")
    options = {"redetect_every": args.redetect_every or AUTO_REDETECT_EVERY, "object_diameter": args.object_diameter,
               "min_size": args.min_size, "max_size": args.max_size}
    for name in ("min_predicted_iou", "min_stability"):  # in the identity only when given (older records lack them)
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def _prompt_diameter(data: StackAndPrompts) -> float | None:
    """The median size of the box and mask prompts (a box's longer side, a mask's equivalent diameter), None
    when there are only clicks."""
    sizes = []
    for obj in data.prompts.objects:
        for p in obj.prompts:
            if p.mask is not None:
                sizes.append(2 * float(np.sqrt(np.count_nonzero(p.mask) / np.pi)))
            elif p.box is not None:
                y0, x0, y1, x1 = p.box
                sizes.append(max(abs(y1 - y0), abs(x1 - x0)))
    return float(np.median(sizes)) if sizes else None


def _tile_plan(args: Namespace, data: StackAndPrompts, image_size: int, auto: dict | None
               ) -> dict[str, int] | None:
    """``{"tile", "overlap"}`` when this run tracks in tiles (``--tiles``), else None; bad values in one line."""
    from napari_sam2.engine.tiles import TileLayout, choose_tiling

    mode = getattr(args, "tiles", None) or "auto"
    tile = image_size
    height, width = data.source.shape2d
    diameter = auto["object_diameter"] if auto is not None else _prompt_diameter(data)
    if getattr(args, "tile_overlap", None) is not None and mode == "off":
        raise UsageError("--tile-overlap needs --tiles on or auto")
    if not choose_tiling(mode, height, width, tile, diameter):
        return None
    if auto is not None:
        if mode == "on":
            raise UsageError("--auto does not track in tiles yet: use --tiles off or auto")
        say(args, f"note: objects of {diameter or 'unknown size'} px in frames of {height} × {width} px would be "
                  "tracked better in tiles (--tiles), which --auto does not do yet; running on resized frames")
        return None
    overlap = args.tile_overlap if args.tile_overlap is not None else tile // 4
    if overlap >= tile:
        raise UsageError(f"--tile-overlap {overlap} must be less than the tile, the model's input of {tile} px")
    layout = TileLayout(height, width, tile, overlap)
    say(args, f"tracking in {len(layout)} tiles of {min(tile, height)} × {min(tile, width)} px at native resolution, "
              f"overlapping by {overlap} px")
    return {"tile": tile, "overlap": overlap}


def plan_run(args: Namespace) -> Plan:
    auto = _auto_options(args)
    direction = "forward" if auto else args.direction or "both"
    data = open_stack_and_prompts(args.stack, args.prompts, args.axis, args.channel, args.position, args.axes)
    out = Path(args.out)
    key = view_key(data.source.frame_axis, data.source.position)
    record = existing_record(out, data.source, key)
    export = _check_export(args, data, record)
    model = choose_model(args.model, args.image_size, args.checkpoint, args.random_weights,
                         notify=lambda text: say(args, f"note: {text}"))
    device = pick_device(args.device)
    identity = {**data.identity(), **model.identity(), "direction": direction, "precision": args.precision}
    if auto is not None:
        identity["auto"] = auto
    if args.encoder_batch is not None:
        identity["encoder_batch"] = args.encoder_batch
    if args.lost_patience is not None:
        identity["lost_patience"] = args.lost_patience
    tiles = _tile_plan(args, data, model.image_size, auto)
    if tiles is not None:
        identity["tiles"] = tiles
    differences = record.differences(identity) if record is not None else []
    finished = record is not None and record.data.get("complete") and not differences and not args.restart
    if not finished:
        _check_writable(out)
    network = None if finished else build_model(model)  # a checkpoint that does not fit is said before all else
    if record is not None and not args.restart:
        if differences:
            state = "a finished" if record.data.get("complete") else "an unfinished"
            raise CliError(
                f"{out} holds {state} run over these frames made with other inputs ({', '.join(differences)}); "
                "nothing was changed — add --restart to discard that run and segment again, or choose another --out"
            )
    start, passes = _pass_plan(direction, data, auto is not None)
    return Plan(data, out, key, record, export, model, network, device, identity, start, passes, auto, tiles)


@contextlib.contextmanager
def locked(out: Path):
    """Hold an exclusive lock on the LABELS folder: a second process writing to it stops with an error."""
    fd = os.open(out, os.O_RDONLY)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CliError(f"another napari-sam2 process is writing to {out}; wait for it or stop it") from None
            except OSError:
                pass  # a file system without locks
        yield
    finally:
        os.close(fd)


def record_prompts(plan: Plan, store: LabelStore, view: Any, old_ids: list[int]) -> None:
    """Register the objects (with their names) and store the prompts of this run on its frames."""
    for obj_id in old_ids:
        view.clear_prompts(obj_id)
    for obj in plan.data.prompts.objects:
        store.add_object(obj.id, name=obj.name)
        view.clear_prompts(obj.id)
        for p in obj.prompts:
            view.add_prompt(obj.id, p.frame, points=p.points, labels=p.labels, box=p.box, mask=p.mask)


def clear_objects(view: Any, obj_ids: list[int]) -> None:
    """Remove ``obj_ids`` from every frame of ``view`` (pixels painted by hand stay, as the store's rule says)."""
    if not obj_ids:
        return
    height, width = view.shape2d
    for frame in range(len(view)):
        labels = view.read_frame(frame)
        present = [i for i in obj_ids if (labels == i).any()]
        if present:
            view.write_result(frame, present, np.full((len(present), height, width), -1.0, np.float32))


def apply_prompts(session: Any, plan: Plan) -> None:
    from napari_sam2.engine import PromptError

    try:
        for obj in plan.data.prompts.objects:
            for p in obj.prompts:
                if p.kind == "mask":
                    session.add_mask(p.frame, obj.id, p.mask)
                elif p.kind == "box":
                    session.add_box(p.frame, obj.id, p.box, points=p.points, labels=p.labels)
                else:
                    session.add_points(p.frame, obj.id, p.points, p.labels)
    except PromptError as exc:
        raise CliError(f"{plan.data.prompts.source}: object {obj.id}, frame {p.frame}: {exc}") from None


def export_labels(plan: Plan, store: LabelStore, record: RunRecord, args: Namespace) -> None:
    if plan.export is None:
        return
    fmt, path = plan.export
    if _exported(record, fmt, path):
        say(args, f"{fmt} export {path} is already written")
        return
    if fmt == "ome-zarr":
        written = export_ome_zarr(plan.data.source, store, path)
    elif fmt == "tiff":
        written = export_tiff(store, path)
    elif fmt == "geff":
        written = export_geff(store, path, axis=plan.data.source.frame_axis)
    else:
        written = export_ctc(store, path)
    record.data.setdefault("exports", []).append({"format": fmt, "path": str(path.resolve())})
    record.save()
    say(args, f"exported {fmt} to {written}")


def _make_session(plan: Plan, model: Any, record: RunRecord, args: Namespace) -> Any:
    from napari_sam2.engine import Session
    from napari_sam2.engine.persistence import SessionStateError

    # Batched encoding uses fixed aligned blocks of frames, so a resumed run gives the same labels.
    options = dict(device=plan.device, precision=args.precision, encoder_batch_size=args.encoder_batch or "auto")
    if plan.tiles is not None:
        from napari_sam2.engine.tiled_session import TiledSession

        session = TiledSession(model, plan.data.source, tile=plan.tiles["tile"], overlap=plan.tiles["overlap"],
                               **options)
    else:
        session = Session(model, plan.data.source, **options)
    if record.data["state"] is None:
        apply_prompts(session, plan)
        return session
    restore_state(session, record, (SessionStateError, ValueError))
    return session


def execute(plan: Plan, args: Namespace) -> int:
    source, out = plan.data.source, plan.out
    if plan.network is None:
        say(args, f"{out}: the run of {len(plan.data.prompts.objects)} object(s) over {len(source)} frames along "
                  f"{source.frame_axis!r} is already complete; nothing to compute")
        store = LabelStore.open(out)
        with locked(out):
            export_labels(plan, store, plan.record, args)
        print(out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    with locked(out):
        store = LabelStore.for_source(out, source)
        view = store.view_for(source)
        record = plan.record
        if record is not None and args.restart:
            say(args, f"--restart: discarding the earlier run over these frames in {out}")
            old_ids = [int(i) for i in record.data.get("objects", [])]
            clear_objects(view, old_ids)
            record.delete()
            record = None
        if record is None:
            prompt_ids = [o.id for o in plan.data.prompts.objects]
            record = RunRecord.create(out, plan.key, plan.identity, passes=plan.passes, start=plan.start,
                                      objects=prompt_ids, device=str(plan.device),
                                      stack_path=str(plan.data.stack_path.resolve()), command=sys.argv[1:],
                                      prompts_recorded=False,
                                      id_floor=max([*store.objects, *prompt_ids], default=0))
        else:
            if record.data.get("device") != str(plan.device):
                say(args, f"note: this run was started on {record.data.get('device')} and continues on "
                          f"{plan.device}; frames computed here may differ slightly from an uninterrupted run")
            record.remove_unreferenced()
        if not record.data.get("prompts_recorded"):
            record_prompts(plan, store, view, [])
            record.data["prompts_recorded"] = True
            record.save()
        session = _make_session(plan, plan.network, record, args)
        cadence = SaveCadence(args.save_every)
        progress = Progress(1, enabled=not args.quiet)
        auto = None
        if plan.auto is not None:
            from napari_sam2.cli.auto_run import AutoRun

            auto = AutoRun(plan.auto, store, record, lost_patience=args.lost_patience)
        runner = Runner(session, view, record, progress, cadence, lost_patience=args.lost_patience, auto=auto)
        progress.total, progress.done = runner.total_steps(), runner.steps_done()
        if plan.model.checkpoint is None:
            say(args, "--random-weights: the model's weights are random, so its masks are meaningless (a setup check)")
        if progress.done:
            say(args, f"resuming: {progress.done} of {progress.total} frames were done")
        what = f"{len(plan.data.prompts.objects)} object(s)"
        if plan.auto is not None:
            what = ("every object found automatically" + (f" and {what}" if plan.data.prompts.objects else "") +
                    f" (re-detection every {plan.auto['redetect_every']} frames)")
        say(args, f"segmenting {what} over {len(source)} frames along "
                  f"{source.frame_axis!r} of {plan.data.stack_path.name} on {plan.device} into {out}")
        try:
            runner.run()
        finally:
            session.close()
        export_labels(plan, store, record, args)
    say(args, f"done: labels in {out}")
    print(out)
    return 0


def run_segment(args: Namespace) -> int:
    """The ``segment`` command; input problems become one-line :class:`CliError`\\ s."""
    logging.getLogger("tifffile").setLevel(logging.ERROR)  # its warnings about damaged files precede our error line
    if getattr(args, "volume_axis", None) is not None:
        from napari_sam2.cli.volume_run import run_volume_segment

        return run_volume_segment(args)
    try:
        plan = plan_run(args)
        try:
            return execute(plan, args)
        finally:
            plan.data.source.close()
    except (StackError, LabelStoreError, PromptFileError) as exc:
        raise CliError(option_wording(str(exc))) from None
    except RuntimeError as exc:
        if out_of_device_memory(exc):
            raise CliError(f"{exc}; the labels stored so far in {args.out} are intact") from None
        raise
    except OSError as exc:  # a write outside the label store's own methods (its folder, the lock, an export)
        where = exc.filename or args.out
        raise CliError(f"{where}: {describe_os_error(exc)}; what was stored before is intact") from None
