"""``napari-sam2 segment STACK --axis t --volume-axis z``: objects in 3D over time, resumably.

Each object is prompted on (t, z) planes (prompt files with a z per prompt, see ``io.volume_prompts``), segmented
through z at each t and followed over t (``engine.volume_time``). Every (t, z) plane goes into the label store (the
store of the whole T,Z,Y,X stack; a 2D run along z at some t writes the same planes).

Resume rule: after all planes of a t are written, the tracker's state is saved in the run record (a new state array,
then the record naming it and ``next_t``, then the old array removed: ``RunRecord``); a re-run loads it and goes on
from ``next_t``. Planes of a t written after the last saved state are computed again with the same values, so a run
killed anywhere and re-run gives the labels of an uninterrupted run.
"""

from __future__ import annotations

import io
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam2.cli.errors import CliError, UsageError, out_of_device_memory
from napari_sam2.cli.inputs import option_wording, parse_axes, parse_axis, parse_channel, parse_position
from napari_sam2.cli.progress import Progress
from napari_sam2.cli.run_record import RunRecord, existing_record, restore_state, view_key
from napari_sam2.cli.weights import build_model, choose_model, pick_device
from napari_sam2.io import LabelStore, LabelStoreError, StackError
from napari_sam2.io.errors import describe_os_error
from napari_sam2.io.prompt_file import PromptFileError
from napari_sam2.io.stack_formats import open_raw
from napari_sam2.io.volume_prompts import VolumePromptSet, load_volume_prompts
from napari_sam2.io.volume_source import VolumeSource, open_volume_source

EXPORTS = ("ome-zarr", "tiff", "ctc")


def _say(args: Namespace, text: str) -> None:
    if not args.quiet:
        print(f"napari-sam2: {text}", file=sys.stderr, flush=True)


def _check_options(args: Namespace) -> None:
    if args.auto:
        raise UsageError("--volume-axis follows prompted objects; --auto does not apply")
    if args.direction not in (None, "forward"):
        raise UsageError(f"--volume-axis follows objects forward in time from their first prompt; --direction "
                         f"{args.direction} does not apply")
    if args.lost_patience is not None:
        raise UsageError("--lost-patience does not apply with --volume-axis")
    if args.prompts is None:
        raise UsageError("--volume-axis needs --prompts PROMPTS (each prompt with its plane's z)")
    if args.export is not None and args.export not in EXPORTS:
        raise UsageError(f"--export {args.export} is not available with --volume-axis; choose {', '.join(EXPORTS)}")
    if (args.export is None) != (args.export_path is None):
        raise UsageError("--export FORMAT and --export-path PATH go together")


def _open(args: Namespace) -> tuple[VolumeSource, VolumePromptSet, Path]:
    path = Path(args.stack)
    if not path.exists():
        raise CliError(f"stack {path} does not exist")
    axis = parse_axis(args.axis) or "t"
    volume_axis = parse_axis(args.volume_axis)
    if not isinstance(axis, str) or not isinstance(volume_axis, str):
        raise UsageError("--axis and --volume-axis take axis names (t, z, …) with --volume-axis")
    position = parse_position(args.position)
    raw = open_raw(path, axes=parse_axes(args.axes))
    source = open_volume_source(raw, axis, volume_axis, parse_channel(args.channel), position)
    try:
        label_axes = source.plane_source(0).label_axes
        prompts = load_volume_prompts(args.prompts, axes=label_axes, frame_axis=axis, volume_axis=volume_axis,
                                      position=position)
        prompts.check_fits(source.shape, axis, volume_axis)
    except BaseException:
        source.close()
        raise
    return source, prompts, path


def _identity(source: VolumeSource, prompts: VolumePromptSet, path: Path, model: Any, args: Namespace) -> dict:
    planes = source.plane_source(0)
    return {"stack": {"name": path.name, "shape": list(planes.full_shape), "dtype": str(planes.dtype)},
            "axis": source.frame_axis, "volume_axis": source.volume_axis, "position": source.position,
            "channel": planes.channel, "prompts": prompts.fingerprint(), **model.identity(),
            "precision": args.precision}


def _export(args: Namespace, source: VolumeSource, store: LabelStore, record: RunRecord) -> None:
    if args.export is None:
        return
    from napari_sam2.io import export_ctc, export_ome_zarr, export_tiff

    path = Path(args.export_path)
    entry = {"format": args.export, "path": str(path.resolve())}
    if entry in record.data.get("exports", []) and path.exists():
        _say(args, f"{args.export} export {path} is already written")
        return
    if args.export == "ome-zarr":
        written = export_ome_zarr(source.plane_source(0), store, path)
    elif args.export == "tiff":
        written = export_tiff(store, path)
    else:
        written = export_ctc(store, path)
    record.data.setdefault("exports", []).append(entry)
    record.save()
    _say(args, f"exported {args.export} to {written}")


def _tracker(network: Any, source: VolumeSource, prompts: VolumePromptSet, record: RunRecord, device: Any,
             args: Namespace) -> Any:
    from napari_sam2.engine import PromptError
    from napari_sam2.engine.volume_time import PlanePrompt, VolumeStateError, VolumeTimeTracker

    options = {"device": device, "precision": args.precision}
    if args.encoder_batch is not None:
        options["encoder_batch_size"] = args.encoder_batch
    intensity = None if np.dtype(source.dtype) == np.uint8 else source.intensity_range()
    tracker = VolumeTimeTracker(network, source, intensity_range=intensity, session_options=options)
    if record.data["state"] is not None:
        restore_state(tracker, record, (VolumeStateError, ValueError))
        return tracker
    for p in prompts.prompts:
        q = p.prompt
        points = None if q.points is None else tuple(tuple(float(v) for v in yx) for yx in q.points)
        labels = None if q.labels is None else tuple(int(v) for v in q.labels)
        try:
            tracker.add_prompt(PlanePrompt(p.t, p.z, p.obj_id, points, labels, q.box, q.mask))
        except PromptError as exc:
            tracker.close()
            raise CliError(f"{prompts.source}: object {p.obj_id}, {source.frame_axis}={p.t}, "
                           f"{source.volume_axis}={p.z}: {exc}") from None
    return tracker


def _record_prompts(store: LabelStore, source: VolumeSource, prompts: VolumePromptSet) -> None:
    ids = set(prompts.obj_ids)
    store.remove_prompts(lambda p: p.obj_id not in ids)
    for obj_id, name in prompts.names.items():
        store.add_object(obj_id, name=name)
    for p in prompts.prompts:
        view = store.frame_view(axis=source.volume_axis, position={**source.position, source.frame_axis: p.t})
        q = p.prompt
        view.add_prompt(p.obj_id, p.z, points=q.points, labels=q.labels, box=q.box, mask=q.mask)


def execute(args: Namespace) -> int:
    from napari_sam2.cli.segment import locked

    _check_options(args)
    source, prompts, path = _open(args)
    try:
        out = Path(args.out)
        key = view_key(f"{source.frame_axis}+{source.volume_axis}", source.position)
        record = existing_record(out, source.plane_source(0), key)
        if args.export is not None and Path(args.export_path).exists() and not (
                record is not None and {"format": args.export, "path": str(Path(args.export_path).resolve())}
                in record.data.get("exports", [])):
            raise CliError(f"export path {args.export_path} already exists; choose a new one (nothing is overwritten)")
        model = choose_model(args.model, args.image_size, args.checkpoint, args.random_weights,
                             notify=lambda text: _say(args, f"note: {text}"))
        device = pick_device(args.device)
        identity = _identity(source, prompts, path, model, args)
        differences = record.differences(identity) if record is not None else []
        if record is not None and differences and not args.restart:
            state = "a finished" if record.data.get("complete") else "an unfinished"
            raise CliError(f"{out} holds {state} 3D-over-time run made with other inputs ({', '.join(differences)}); "
                           "nothing was changed — add --restart to segment again, or choose another --out")
        finished = record is not None and record.data.get("complete") and not differences and not args.restart
        network = None if finished else build_model(model)
        out.mkdir(parents=True, exist_ok=True)
        with locked(out):
            store = LabelStore.for_source(out, source.plane_source(0))
            if finished:
                _say(args, f"{out}: the 3D-over-time run is already complete; nothing to compute")
                _export(args, source, store, record)
                print(out)
                return 0
            if record is not None and args.restart:
                _say(args, f"--restart: discarding the earlier 3D-over-time run in {out}")
                from napari_sam2.cli.segment import clear_objects

                for t in range(source.shape[0]):
                    view = store.frame_view(axis=source.volume_axis, position={**source.position, source.frame_axis: t})
                    clear_objects(view, [int(i) for i in record.data.get("objects", [])])
                record.delete()
                record = None
            if record is None:
                record = RunRecord.create(out, key, identity, next_t=None, objects=prompts.obj_ids,
                                          device=str(device), stack_path=str(path.resolve()), command=sys.argv[1:],
                                          prompts_recorded=False)
            else:
                record.remove_unreferenced()
            if not record.data.get("prompts_recorded"):
                _record_prompts(store, source, prompts)
                record.data["prompts_recorded"] = True
                record.save()
            if model.checkpoint is None:
                _say(args, "--random-weights: the model's weights are random, so its masks are meaningless "
                           "(a setup check)")
            tracker = _tracker(network, source, prompts, record, device, args)
            try:
                _run(tracker, store, source, record, args)
            finally:
                tracker.close()
            _export(args, source, store, record)
    finally:
        source.close()
    _say(args, f"done: labels in {out}")
    print(out)
    return 0


def _run(tracker: Any, store: LabelStore, source: VolumeSource, record: RunRecord, args: Namespace) -> None:
    times, depth = source.shape[:2]
    first = min(p.t for p in tracker.prompts)
    progress = Progress(times - first, done=tracker.next_t - first, enabled=not args.quiet, unit="time point")
    if tracker.next_t > first:
        _say(args, f"resuming at {source.frame_axis}={tracker.next_t}")
    _say(args, f"segmenting {len(tracker.obj_ids)} object(s) in 3D ({depth} planes along {source.volume_axis!r}) over "
               f"{times} time points along {source.frame_axis!r} into {store.path}")
    try:
        for step in tracker.propagate():
            view = store.frame_view(axis=source.volume_axis, position={**source.position, source.frame_axis: step.t})
            for z in range(depth):
                view.write_result(z, step.obj_ids, step.plane_logits(z))
            state = io.BytesIO()
            tracker.save_state(state)
            ref = record.write_blob("state_", state.getvalue())
            old = record.data["state"]
            record.data.update(state=ref, next_t=step.t + 1, frames_written=(step.t + 1) * depth)
            record.save()
            record.drop_blob(old)
            progress.advance()
    finally:
        progress.close()
    record.data.update(complete=True, state=None, next_t=None)
    record.save()
    record.remove_unreferenced()


def run_volume_segment(args: Namespace) -> int:
    """``segment --volume-axis``; input problems become one-line :class:`CliError`\\ s."""
    try:
        return execute(args)
    except (StackError, LabelStoreError, PromptFileError) as exc:
        raise CliError(option_wording(str(exc))) from None
    except RuntimeError as exc:
        if out_of_device_memory(exc):
            raise CliError(f"{exc}; the labels stored so far in {args.out} are intact") from None
        raise
    except OSError as exc:
        where = exc.filename or args.out
        raise CliError(f"{where}: {describe_os_error(exc)}; what was stored before is intact") from None
