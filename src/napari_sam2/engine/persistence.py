"""Saving and restoring a session's prompts and memory, so interrupted work continues exactly.

A state file holds every object's prompts, its conditioning-frame outputs (with their spatial memories), its
pending prompt outputs, which frames it tracked and in which direction, and — all of them, or only those
the next frame to compute can attend to — its tracked-frame outputs. Restoring it into a new session over
the same stack and model, then propagating on from that next frame, gives the same results as a run that
was never interrupted. Files are written to a temporary name and renamed, so a crash leaves the previous
state file intact; the state is serialised in memory first, so a full disk is an ``OSError`` (torch's own file
writer would report it as a ``RuntimeError``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import torch

from .state import FrameOutput, ObjectTrack, PointPrompt

if TYPE_CHECKING:
    from .session import Session

FORMAT = "napari-sam2 session state 1"


class SessionStateError(ValueError):
    """A state file that does not belong to this session's stack or model."""


def memory_window(session: Session, next_frame: int, reverse: bool) -> set[int]:
    """Tracked frames the memory bank of ``next_frame`` may read (recent memories and object pointers)."""
    cfg = session.model.config
    reach = max(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder) * cfg.memory_temporal_stride_for_eval
    step = 1 if reverse else -1
    return {next_frame + step * d for d in range(1, reach)}


def save_state(
    session: Session, path: str | Path | BinaryIO, *, next_frame: int | None = None, reverse: bool = False
) -> None:
    """Write the session's state to ``path`` (a file name, or a binary file object such as ``io.BytesIO``); with
    ``next_frame``, tracked outputs are limited to the ones that frame's memory needs (a few megabytes per object
    instead of the whole stack)."""
    write_state(capture_state(session, next_frame=next_frame, reverse=reverse), path)


def capture_state(session: Session, *, next_frame: int | None = None, reverse: bool = False) -> dict:
    """The session's state as ``save_state`` writes it, for writing later (e.g. in another thread). It refers to
    the session's tensors without copying those already on the host; the session never changes a stored tensor
    in place, so the snapshot stays valid while work goes on."""
    keep = None if next_frame is None else memory_window(session, next_frame, reverse)
    tracker = session.tracker

    def output(o: FrameOutput) -> dict:
        memory = None if o.memory_id is None else tracker.vault.get(o.memory_id)
        return {"pred_masks": tracker.vault.get(o.pred_masks_id), "obj_ptr": o.obj_ptr.cpu(),
                "object_score": o.object_score.cpu(), "memory": memory}

    objects = []
    for track in session._tracks.values():
        objects.append({
            "obj_id": track.obj_id,
            "points": {f: (p.coords, p.labels) for f, p in track.points.items()},
            "masks": dict(track.masks),
            "cond": {f: output(o) for f, o in track.cond.items()},
            "non_cond": {f: output(o) for f, o in track.non_cond.items() if keep is None or f in keep},
            "pending_cond": {f: output(o) for f, o in track.pending_cond.items()},
            "pending_non_cond": {f: output(o) for f, o in track.pending_non_cond.items()},
            "tracked": dict(track.tracked),
        })
    return {
        "format": FORMAT,
        "model": session.model.config.name,
        "image_size": session.model.image_size,
        "frames": (session.num_frames, session.height, session.width),
        "memory_pos": tracker._memory_pos.cpu() if tracker._memory_pos is not None else None,
        "objects": objects,
        "track_ends": dict(session.track_ends),
        "track_starts": dict(session.track_starts),
        # absence counts of lost_patience, only for continuing the pass under way (not, say, for a later pass)
        "absent": (
            {"frame": next_frame, "reverse": reverse, "counts": dict(session.absent_counts)}
            if next_frame is not None and session.pass_direction_reverse == reverse
            else None
        ),
    }


def write_state(state: dict, path: str | Path | BinaryIO) -> None:
    """Write a captured state to ``path``: a temporary file, synced, then renamed over ``path`` (or into a binary
    file object). A failed write raises ``OSError`` naming ``path``; the previous file is intact."""
    buffer = io.BytesIO()
    torch.save(state, buffer)  # in memory: torch reports a failed file write as RuntimeError, Python as OSError
    if not isinstance(path, (str, os.PathLike)):
        path.write(buffer.getbuffer())
        return
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def load_state(session: Session, path: str | Path) -> None:
    """Replace the session's objects by those saved in ``path`` (which must fit its stack and model)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SessionStateError(f"{path} is not a readable napari-sam2 session state ({err})") from err
    restore_state(session, state, path)


def restore_state(session: Session, state: dict, path: object = "the state") -> None:
    """Replace the session's objects by those of a state read by ``load_state`` (``path`` names it in errors)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SessionStateError(f"{path} is not a napari-sam2 session state file")
    expected = (session.model.config.name, session.model.image_size, (session.num_frames, session.height,
                                                                      session.width))
    found = (state["model"], state["image_size"], tuple(state["frames"]))
    if found != expected:
        raise SessionStateError(
            f"{path} was saved for model {found[0]} at {found[1]} px over {found[2][0]} frames of "
            f"{found[2][1]}×{found[2][2]}; this session has {expected[0]} at {expected[1]} px over "
            f"{expected[2][0]} frames of {expected[2][1]}×{expected[2][2]}"
        )
    session.reset()
    session.track_ends = {int(o): int(f) for o, f in (state.get("track_ends") or {}).items()}
    session.track_starts = {int(o): int(f) for o, f in (state.get("track_starts") or {}).items()}
    absent = state.get("absent")
    session.resume_absent_counts = (
        None if absent is None else (int(absent["frame"]), bool(absent["reverse"]),
                                     {int(o): int(n) for o, n in absent["counts"].items()})
    )
    tracker = session.tracker
    if state["memory_pos"] is not None:
        tracker._memory_pos = state["memory_pos"].to(session.device)

    def output(d: dict) -> FrameOutput:
        memory = None if d["memory"] is None else tracker.vault.put(d["memory"])
        device = session.device
        return FrameOutput(tracker.vault.put(d["pred_masks"]), d["obj_ptr"].to(device),
                           torch.as_tensor(d["object_score"], dtype=torch.float32).to(device), memory)

    for saved in state["objects"]:
        track = ObjectTrack(int(saved["obj_id"]))
        track.points = {int(f): PointPrompt(c, lab) for f, (c, lab) in saved["points"].items()}
        track.masks = {int(f): m for f, m in saved["masks"].items()}
        for name in ("cond", "non_cond", "pending_cond", "pending_non_cond"):
            setattr(track, name, {int(f): output(d) for f, d in saved[name].items()})
        track.tracked = {int(f): bool(r) for f, r in saved["tracked"].items()}
        session._tracks[track.obj_id] = track
