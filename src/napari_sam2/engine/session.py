"""The tracking session: prompts on any frame, propagation along the stack, corrections, many objects.

Semantics follow Meta's ``SAM2VideoPredictor`` (sam2/sam2_video_predictor.py, sam2==1.1.0): which frames are
conditioning frames, the memory bank, multimask on first clicks, previous logits with corrective clicks,
occlusion through the object score. Differences, by design: objects sharing a frame are computed in one
batch; per-frame results live in a bounded :class:`TensorVault` rather than on the device; frames are read
lazily; and (``corrections_as_prompts=True``, the default) a click on an already tracked frame becomes a
conditioning frame, so re-propagation keeps it — the reference's ``add_all_frames_to_correct_as_cond``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam2.model import SAM2Model
from napari_sam2.model.compiled_blocks import CompiledBlocks, compile_wanted

from . import persistence
from .device import DeviceMemoryError, is_out_of_memory, pick_device, release_cached_device_memory
from .features import FeatureCache
from .frames import FramePreparer
from .memory_bank import plan_memory
from .postprocess import to_frame_resolution
from .prompts import box_to_points, check_frame, check_mask, check_obj_id, clicks_to_points, known_object
from .result import FrameResult
from .state import FrameOutput, ObjectTrack
from .tracker import Tracker
from .vault import TensorVault
from .worker import ComputeThread

log = logging.getLogger(__name__)

NO_OBJECT_LOGIT = -1024.0  # logits of an object with no result on a frame (NO_OBJ_SCORE)
DIRECTIONS = ("forward", "backward", "both")


@dataclass
class _Ahead:
    """The next frame of a propagation, computed while the caller reads this one: its outputs (a future), and what
    they were computed under (the objects skipped there, the session's edit count)."""

    frame: int
    stopped: set[int]
    edits: int
    future: Future


class Session:
    """Promptable segmentation and tracking of objects through a stack of 2D frames.

    frames: an array-like (numpy, dask, zarr) shaped (N, H, W) or (N, H, W, C), C = 1 or 3, any dtype, or a
    frame source of ``napari_sam2.io``; read lazily, one frame at a time. device: "auto"/None (cuda → mps →
    cpu), or a device; the model is moved there. normalization / intensity_range: see ``FramePreparer``.
    feature_cache_bytes: budget of cached image features; host_budget_bytes: host memory for per-frame
    results before they spill to a disk cache in ``spill_dir`` (default: the system's temporary folder).
    encoder_batch_size: frames per image-encoder call, "auto" = 8 on CUDA (faster: the encoder's kernels are
    shared by the batch) and 1 elsewhere. Frames are encoded in fixed aligned blocks (``FeatureCache.block``),
    so a frame's features are the same whichever frame asked first and in a resumed run.
    cache_memory_kv: project each memory's attention keys/values once (``model.memory_kv_cache``; default on
    CUDA, where it saves most of memory attention's time; equal up to rounding).
    step_graphs: run the steady-state tracking step on static buffers, replayed as a CUDA graph per memory
    layout (``step_graph``; default on CUDA), and the image encoder's blocks of frames likewise (``encoder_graph``,
    captured when the session opens). True on the CPU runs the same static-buffer code without capture.
    pipeline: while the caller of ``propagate`` handles frame t, frame t + 1 is already computing (default on
    CUDA); it is used only if nothing changed the session in between, so results are the same either way.
    compile_encoder: run the image encoder's blocks through ``torch.compile`` (``CompiledBlocks``; default on CUDA
    unless NAPARI_SAM2_COMPILE=0: Hiera-L 10.6 → 7.1 ms a frame). The compile is queued on the compute thread when the
    session opens — paid once per process (tens of seconds the first time on a machine, then from the disk cache),
    before any frame — so every frame of the session, and of a resumed run, is encoded the same way.
    """

    def __init__(
        self,
        model: SAM2Model,
        frames: Any,
        *,
        fill_hole_area: int = 8,
        device: str | torch.device | None = None,
        normalization: Any = "auto",
        intensity_range: tuple[float, float] | None = None,
        corrections_as_prompts: bool = True,
        precision: str = "auto",
        feature_cache_bytes: int = 1 << 30,
        host_budget_bytes: int = 4 << 30,
        spill_dir: str | None = None,
        encoder_batch_size: int | str = "auto",
        cache_memory_kv: bool | None = None,
        step_graphs: bool | None = None,
        pipeline: bool | None = None,
        compile_encoder: bool | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.preparer = FramePreparer(frames, model.image_size, normalization=normalization,
                                      intensity_range=intensity_range)
        self.num_frames = len(self.preparer)
        self.height, self.width = self.preparer.height, self.preparer.width
        self.corrections_as_prompts = corrections_as_prompts
        self.precision = precision
        if encoder_batch_size == "auto":
            encoder_batch_size = 8 if self.device.type == "cuda" else 1
        if compile_encoder is None:
            compile_encoder = compile_wanted(self.device)
        if step_graphs is None:
            step_graphs = self.device.type == "cuda"
        self.features = FeatureCache(model, self.preparer, self.device, max_bytes=feature_cache_bytes,
                                     batch_size=int(encoder_batch_size),
                                     run_block=CompiledBlocks() if compile_encoder else None,
                                     graph=step_graphs, capture=step_graphs and self.device.type == "cuda")
        self.vault = TensorVault(host_budget_bytes=host_budget_bytes, device=self.device,
                                 device_slots=64 if self.device.type != "cpu" else 0, spill_dir=spill_dir)
        if cache_memory_kv is None:
            cache_memory_kv = self.device.type == "cuda"
        self.tracker = Tracker(model, self.features, self.vault, num_frames=self.num_frames,
                               fill_hole_area=fill_hole_area, cache_memory_kv=cache_memory_kv,
                               step_graphs=step_graphs)
        self.compute = ComputeThread(self.device, precision)
        self._opening: Future | None = None  # compiling and capturing the encoder, before any frame
        if self.features.warms_up:
            self._opening = self.compute.submit(self.features.warm_up)
        if self.tracker.prompt_graphs is not None:  # a click's capture runs after the click, on the compute thread
            self.tracker.prompt_graphs.defer = self.compute.submit
        self._tracks: dict[int, ObjectTrack] = {}
        # lost_patience bookkeeping of the pass under way (saved with the state, for exact resumes)
        self.absent_counts: dict[int, int] = {}
        self.pass_direction_reverse: bool | None = None
        self.resume_absent_counts: tuple[int, bool, dict[int, int]] | None = None
        # tracks ended by end_object: obj_id → its last frame (forward passes give it nothing after that)
        self.track_ends: dict[int, int] = {}
        # propagation computes frame t + 1 while the caller reads frame t (default on CUDA); any change to the
        # session in between (counted in _edits) makes it recompute that frame instead
        self.pipeline = self.device.type == "cuda" if pipeline is None else bool(pipeline)
        self._ahead: _Ahead | None = None
        self._edits = 0
        # tracks begun by start_object: obj_id → its first frame (no pass gives it anything before that)
        self.track_starts: dict[int, int] = {}
        # after running out of device memory: computing without the device caches (``_go_lean``), then at most
        # this many objects in one pass
        self.lean = False
        self.objects_per_pass: int | None = None

    @property
    def preparing(self) -> bool:
        """Whether the work queued when the session opened (compiling the image encoder's blocks and capturing its
        graph, on CUDA: about a minute the first time on a machine, seconds after) is still running."""
        return self._opening is not None and not self._opening.done()

    def wait_until_ready(self) -> None:
        """Block until the work queued when the session opened has run (a prompt would wait for it anyway); raises
        its error, if it failed."""
        if self._opening is not None:
            self._opening.result()

    # -- objects -------------------------------------------------------------------------------------------
    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(self._tracks)

    def prompted_frames(self, obj_id: int) -> list[int]:
        """Frames on which object ``obj_id`` has prompts."""
        return self._track(obj_id).prompted_frames()

    def remove_object(self, obj_id: int) -> None:
        """Forget an object: its prompts and results on every frame."""
        self._settle()
        track = self._track(obj_id)
        for output in track.all_outputs():
            self.tracker.discard(output)
        del self._tracks[obj_id]
        self.track_ends.pop(obj_id, None)
        self.track_starts.pop(obj_id, None)

    def end_object(self, obj_id: int, last_frame: int) -> None:
        """End object ``obj_id``'s track after ``last_frame`` (a cell that divided): its results on later frames are
        discarded and forward passes no longer compute it there. Its prompts and earlier results stay."""
        self._settle()
        track = self._track(obj_id)
        self.track_ends[obj_id] = int(last_frame)
        self._drop_tracked(track, lambda frame: frame > last_frame)

    def start_object(self, obj_id: int, first_frame: int) -> None:
        """Begin object ``obj_id``'s track at ``first_frame`` (an object handed over from another tile of a tiled
        session): its results on earlier frames are discarded and no pass computes it there. Its prompts stay."""
        self._settle()
        track = self._track(obj_id)
        self.track_starts[obj_id] = int(first_frame)
        self._drop_tracked(track, lambda frame: frame < first_frame)

    def forget_after(self, obj_id: int, frame: int) -> None:
        """Forget object ``obj_id``'s prompts and results on every frame after ``frame`` (its earlier ones stay), so
        it can be tracked again from ``frame + 1`` — e.g. after the frames there changed."""
        self._settle()
        track = self._track(obj_id)
        for store in (track.cond, track.non_cond, track.pending_cond, track.pending_non_cond):
            for later in [f for f in store if f > frame]:
                self.tracker.discard(store.pop(later))
        for record in (track.points, track.masks, track.tracked):
            for later in [f for f in record if f > frame]:
                del record[later]

    def consolidate_prompts(self) -> None:
        """Encode the memories of the prompts given so far now (a propagation does it first otherwise), while their
        frames' features are at hand."""
        self._settle()
        self.compute.run(self._consolidate_prompts)

    def keep_memory_window(self, next_frame: int, reverse: bool = False) -> None:
        """Release every tracked-frame result that the memory bank of ``next_frame`` cannot read (prompted frames
        stay): bounded memory along a long stack, and the very state ``save_state(next_frame=...)`` keeps."""
        self._settle()
        keep = persistence.memory_window(self, next_frame, reverse)
        for track in self._tracks.values():
            for frame in [f for f in track.non_cond if f not in keep]:
                self.tracker.discard(track.non_cond.pop(frame))

    def _drop_tracked(self, track: ObjectTrack, outside: Any) -> None:
        """Discard ``track``'s tracked results (and pending ones) on the frames where ``outside(frame)`` holds;
        prompted frames keep theirs."""
        for store in (track.non_cond, track.pending_non_cond):
            for frame in [f for f in store if outside(f)]:
                self.tracker.discard(store.pop(frame))
        for frame in [f for f in track.tracked if outside(f) and f not in track.cond]:
            del track.tracked[frame]

    def find_objects(self, frame: int, settings: Any = None, *, first_id: int | None = None) -> list[int]:
        """Automatic masklets on ``frame`` (``find_objects.find_masks``: a grid of point prompts decoded from the
        frame's cached features, no memory); each survivor becomes a new object with its mask as the prompt on
        ``frame``. New ids are ``first_id``, ``first_id + 1``, … (default: one above the largest id). Returns
        them in order (best predicted IoU first). With ``settings.skip_covered`` (the default), what the current
        objects cover on ``frame`` is skipped."""
        from .find_objects import find_masks

        self._check_frame(frame)
        masks = find_masks(self, frame, settings)
        next_id = first_id if first_id is not None else max(self._tracks, default=0) + 1
        check_obj_id(next_id)
        ids = []
        for mask in masks:
            while next_id in self._tracks:
                next_id += 1
            self.add_mask(frame, next_id, mask)
            ids.append(next_id)
            next_id += 1
        return ids

    def reset(self) -> None:
        """Forget all objects, prompts and results (cached image features are kept)."""
        self._settle()
        self._drop_ahead()
        for obj_id in list(self._tracks):
            self.remove_object(obj_id)
        self.vault.clear()

    def close(self) -> None:
        """Release the cache folder and background threads."""
        self.reset()
        self.features.close()
        self.vault.close()
        self.compute.close()

    # -- prompts -------------------------------------------------------------------------------------------
    def add_points(
        self, frame: int, obj_id: int, points: Any, labels: Any, *, clear: bool = False
    ) -> FrameResult:
        """Clicks on ``frame`` for ``obj_id``: points (P, 2) as (y, x) pixels of the frame, labels (P,) with
        1 positive, 0 negative. ``clear=False`` adds to the object's earlier clicks on that frame."""
        self._check_frame(frame)
        prompt = clicks_to_points(points, labels, self.height, self.width, self.model.image_size)
        return self._prompt(frame, obj_id, prompt, clear=clear)

    def add_box(
        self, frame: int, obj_id: int, box: Any, *, points: Any = None, labels: Any = None
    ) -> FrameResult:
        """A box (y0, x0, y1, x1) in pixels, optionally with clicks; replaces the object's prompts there."""
        self._check_frame(frame)
        prompt = box_to_points(box, self.height, self.width, self.model.image_size)
        if points is not None or labels is not None:
            prompt = prompt.extended(clicks_to_points(points, labels, self.height, self.width,
                                                      self.model.image_size))
        return self._prompt(frame, obj_id, prompt, clear=True)

    def add_mask(self, frame: int, obj_id: int, mask: Any) -> FrameResult:
        """A mask (H, W) (bool or 0/1) as the object's prompt on ``frame``; it is taken as the result there."""
        self._settle()
        self._check_frame(frame)
        check_obj_id(obj_id)
        mask_t = check_mask(mask, self.height, self.width)
        size = self.model.image_size
        if mask_t.shape[-2:] != (size, size):
            mask_t = F.interpolate(mask_t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            mask_t = (mask_t >= 0.5).float()
        track = self._tracks.get(obj_id) or ObjectTrack(obj_id)
        is_first, reverse, is_cond = self._prompt_kind(track, frame)
        output = self.compute.run(self.tracker.run_prompt, track, frame, is_first_prompt=is_first,
                                  reverse=reverse, plan=None, mask=mask_t)
        self._tracks.setdefault(obj_id, track)  # the object exists once its first prompt gave a result
        track.masks[frame] = mask_t
        track.points.pop(frame, None)
        self._set_pending(track, frame, is_cond, output)
        return self._consolidated(frame, is_cond)

    def clear_frame(self, frame: int, obj_id: int | None = None) -> FrameResult:
        """Remove the prompts of one object (or of all) on ``frame``; a prompted frame becomes a tracked one."""
        self._settle()
        self._check_frame(frame)
        for track in [self._track(obj_id)] if obj_id is not None else list(self._tracks.values()):
            track.points.pop(frame, None)
            track.masks.pop(frame, None)
            self.tracker.discard(track.pending_cond.pop(frame, None))
            self.tracker.discard(track.pending_non_cond.pop(frame, None))
            output = track.cond.pop(frame, None)
            if output is not None:
                self.tracker.discard(track.non_cond.get(frame))
                track.non_cond[frame] = output
                track.tracked.pop(frame, None)
        is_cond = any(frame in t.pending_cond for t in self._tracks.values())
        return self._consolidated(frame, is_cond)

    # -- propagation ---------------------------------------------------------------------------------------
    def propagate(
        self,
        *,
        start: int | None = None,
        direction: str = "forward",
        max_frames: int | None = None,
        lost_patience: int | None = None,
    ) -> Iterator[FrameResult]:
        """Track every object through the stack, yielding each frame's result as it is computed.

        start: the first frame (default: the earliest prompted frame, as in the reference). Giving the frame
        of a correction re-propagates only from there on — the "from here" mode: faster, and frames before
        it keep their results. direction: "forward", "backward" or "both" (forward from start, then backward
        from start; the start frame is yielded by both passes). max_frames: how many frames past start each
        pass goes at most (the reference's ``max_frame_num_to_track``). lost_patience: stop tracking an object
        for the rest of a pass once its object score was negative on that many frames in a row (against false
        positives after an object is gone); its later frames get no result. Stopping early (break, close, an
        exception) leaves the session consistent: every yielded frame is stored, no later frame is touched.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if start is not None:
            self._check_frame(start)
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        if lost_patience is not None and lost_patience < 1:
            raise ValueError(f"lost_patience must be at least 1, got {lost_patience}")
        for reverse in passes:
            yield from self._propagate_pass(start, reverse, max_frames, lost_patience)

    def prepare_frame(self, frame: int) -> None:
        """Compute and cache the image features of ``frame`` now (e.g. for the frame on screen), so that a
        prompt there answers at once. Does nothing if they are cached."""
        self._check_frame(frame)
        if frame not in self.features:
            self.compute.run(self.features.get, frame)

    def result(self, frame: int) -> FrameResult:
        """The current result of every object on ``frame`` (newest prompt output, else tracked output)."""
        self._settle(edit=False)
        self._check_frame(frame)
        outputs = [t.latest_output(frame) for t in self._tracks.values()]
        return self._frame_result(frame, outputs)

    # -- internals -----------------------------------------------------------------------------------------
    def save_state(self, path, *, next_frame: int | None = None, reverse: bool = False) -> None:
        """Write prompts and memory to ``path`` (see ``persistence.save_state``); with ``next_frame`` only
        the memories that frame needs, for resuming a propagation there."""
        self._settle(edit=False)
        persistence.save_state(self, path, next_frame=next_frame, reverse=reverse)

    def load_state(self, path) -> None:
        """Replace all objects by those of a state file saved over the same stack and model."""
        self._settle()
        persistence.load_state(self, path)

    def _propagate_pass(
        self, start: int | None, reverse: bool, max_frames: int | None, lost_patience: int | None
    ) -> Iterator[FrameResult]:
        self.compute.run(self._consolidate_prompts)
        if start is None:
            start = min(f for t in self._tracks.values() for f in t.cond)
        self._size_device_window()
        span = self.num_frames if max_frames is None else max_frames
        if reverse:  # every pass yields its start frame, frame 0 included (also where a resumed pass continues)
            order = range(start, max(start - span, 0) - 1, -1)
        else:
            order = range(start, min(start + span, self.num_frames - 1) + 1)
        order = list(order)
        absent_run = self._absent_counts_for(start, reverse)
        self.pass_direction_reverse = reverse

        def stopped_on(frame: int) -> set[int]:
            stopped = {o for o, n in absent_run.items() if lost_patience is not None and n >= lost_patience}
            if not reverse:
                stopped |= {o for o, last in self.track_ends.items() if frame > last}
            stopped |= {o for o, first in self.track_starts.items() if frame < first}
            return stopped

        try:
            for i, frame in enumerate(order):
                stopped = stopped_on(frame)
                new = self._frame_outputs(frame, reverse, order[i + 1 : i + 1 + 8], stopped)
                outputs, result = self.compute.run(self._commit_frame, frame, reverse, new, stopped)
                for track, output in zip(self._tracks.values(), outputs, strict=True):
                    if lost_patience is None or output is None or track.obj_id not in absent_run:
                        continue
                    prompted = frame in track.cond  # a prompt says the object is there, whatever its score
                    visible = prompted or float(output.object_score) > 0
                    absent_run[track.obj_id] = 0 if visible else absent_run[track.obj_id] + 1
                if self.pipeline and i + 1 < len(order):
                    ahead_frame = order[i + 1]
                    ahead_stopped = stopped_on(ahead_frame)
                    future = self.compute.submit(self._compute_frame, ahead_frame, reverse,
                                                 order[i + 2 : i + 2 + 8], ahead_stopped)
                    self._ahead = _Ahead(ahead_frame, ahead_stopped, self._edits, future)
                yield result
        finally:
            self._drop_ahead()
            self.pass_direction_reverse = None

    def _frame_outputs(
        self, frame: int, reverse: bool, upcoming: Sequence[int], stopped: set[int]
    ) -> dict[int, FrameOutput]:
        """The new outputs of ``frame``: computed ahead, or now. Where the device runs out of memory the session
        first gives up its device caches (``_go_lean``: slower, equal up to rounding), then computes half as many
        objects together each time (objects are computed independently: equal up to rounding), and computes the
        frame again; where one object at a time does not fit either, it raises a one-line
        :class:`DeviceMemoryError` (every earlier frame is kept). Both changes stay for the rest of the session."""
        try:
            new = self._take_ahead(frame, stopped)
            return new if new is not None else self.compute.run(self._compute_frame, frame, reverse, upcoming,
                                                                 stopped)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        while True:
            self._use_less_device_memory(frame)
            try:
                return self.compute.run(self._compute_frame, frame, reverse, upcoming, stopped)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise

    def _use_less_device_memory(self, frame: int) -> None:
        """One step down after running out of memory on ``frame``: the caches first, then half the objects per
        pass; none left: :class:`DeviceMemoryError`."""
        device = self.device.type.upper()
        together = self.objects_per_pass or len(self._tracks)
        if not self.lean:
            self.compute.run(self._go_lean)
            log.warning("out of %s memory on frame %d with %d objects: continuing without the step graphs and the "
                        "memories' key/value cache (slower)", device, frame, len(self._tracks))
        elif together > 1:
            self.objects_per_pass = max(1, together // 2)
            self.compute.run(release_cached_device_memory, self.device)
            count = self.objects_per_pass
            log.warning("out of %s memory on frame %d: computing %d object%s at a time (slower)", device, frame,
                        count, "" if count == 1 else "s")
        else:
            raise self._memory_error(frame) from None

    def _memory_error(self, frame: int) -> DeviceMemoryError:
        return DeviceMemoryError(
            f"out of {self.device.type.upper()} memory on frame {frame} with {len(self._tracks)} objects, even "
            "one object at a time without the session's device caches; use a smaller model or a larger GPU "
            "(every earlier frame is kept)")

    def _go_lean(self) -> None:
        """After running out of device memory: no step graphs, no key/value cache, no frame computed ahead,
        half the image-feature cache; cached allocator blocks go back to the device. Runs on the compute thread."""
        self.lean = True
        self.pipeline = False
        self.tracker.go_lean()
        self.features.clear()
        self.features.max_bytes //= 2
        release_cached_device_memory(self.device)

    def _take_ahead(self, frame: int, stopped: set[int]) -> dict[int, FrameOutput] | None:
        """The outputs computed ahead for ``frame`` if nothing changed the session since (else dropped): None
        when there are none to use. An error of that computation is raised here, at its frame."""
        ahead = self._ahead
        if ahead is not None and (ahead.frame, ahead.stopped, ahead.edits) == (frame, stopped, self._edits):
            self._ahead = None
            try:
                return ahead.future.result()
            except CancelledError:  # another thread changed the session before it started
                return None
        self._drop_ahead()
        return None

    def _drop_ahead(self) -> None:
        """Forget the frame computed ahead: cancelled if it has not started (also safe from the compute thread,
        which never waits for a job queued behind itself), else its outputs discarded once done."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead.future.cancel():
            return
        if ahead.future.exception() is None:
            self.compute.run(self._discard_outputs, ahead.future.result())

    def _discard_outputs(self, new: dict[int, FrameOutput]) -> None:
        for output in new.values():
            self.tracker.discard(output)

    def _settle(self, edit: bool = True) -> None:
        """Before the session is read or changed from outside: the frame being computed ahead (if any) is
        cancelled if it has not started, else waited for; a change counts as an edit, which makes the propagation
        recompute that frame instead of using it."""
        ahead = self._ahead
        if ahead is not None:
            if ahead.future.cancel():
                self._ahead = None
            else:
                ahead.future.exception()
        self._edits += edit

    def _absent_counts_for(self, start: int, reverse: bool) -> dict[int, int]:
        """Per object, how many frames in a row it was absent: zero at a pass's start, or the counts a loaded
        state saved for continuing this very pass at ``start`` (so lost_patience resumes exactly)."""
        counts = {obj_id: 0 for obj_id in self._tracks}
        saved, self.resume_absent_counts = self.resume_absent_counts, None
        if saved is not None and saved[:2] == (start, reverse):
            counts.update({o: n for o, n in saved[2].items() if o in counts})
        self.absent_counts = counts
        return counts

    def _size_device_window(self) -> None:
        """Room on the device for what the next frames read: prompted frames and the recent-memory and
        pointer window of every object (two tensors each), so the window never goes back to the host."""
        cfg = self.model.config
        window = max(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder) + 2
        per_object = max((len(t.cond) for t in self._tracks.values()), default=0) + window
        self.vault.device_slots = 0 if self.device.type == "cpu" else 2 * per_object * len(self._tracks)
        if self.tracker.kv_cache is not None:
            self.tracker.kv_cache.max_entries = max(1, (per_object - 8) * len(self._tracks))

    def _compute_frame(
        self, frame: int, reverse: bool, upcoming: Sequence[int], skip: set[int] = frozenset()
    ) -> dict[int, FrameOutput]:
        """Compute every object not prompted on ``frame`` (nor in ``skip``), grouped by memory layout (objects
        prompted on different frames share a group once their memories have the same shape); the groups not
        replayed as a graph are computed in one pass (``Tracker.run_tracking_groups``). Changes nothing in the
        session: ``_commit_frame`` does (or ``_discard_outputs`` drops the outputs)."""
        groups: dict[Any, list[tuple[ObjectTrack, Any]]] = {}
        for track in self._tracks.values():
            if frame not in track.cond and track.obj_id not in skip:
                plan = plan_memory(track, frame, reverse=reverse, num_frames=self.num_frames,
                                   config=self.model.config)
                groups.setdefault(plan.layout, []).append((track, plan))
        batches = [([m[0] for m in members], [m[1] for m in members]) for members in groups.values()]
        new: dict[int, FrameOutput] = {}
        try:
            for passing in self._passes_of(batches):
                for (tracks, _), outputs in zip(passing, self.tracker.run_tracking_groups(passing, frame, upcoming),
                                                strict=True):
                    for track, output in zip(tracks, outputs, strict=True):
                        new[track.obj_id] = output
        except BaseException:  # a later pass failed (out of memory): the earlier passes' outputs are not kept
            self._discard_outputs(new)
            raise
        return new

    def _passes_of(self, batches: list[tuple[list, list]]) -> list[list[tuple[list, list]]]:
        """The groups of a frame in one pass, or — with ``objects_per_pass`` (after running out of device memory)
        — cut into passes of at most that many objects."""
        limit = self.objects_per_pass
        if limit is None or sum(len(tracks) for tracks, _ in batches) <= limit:
            return [batches]
        pieces = [(tracks[i : i + limit], plans[i : i + limit])
                  for tracks, plans in batches for i in range(0, len(tracks), limit)]
        passes: list[list[tuple[list, list]]] = [[]]
        for piece in pieces:
            if passes[-1] and sum(len(t) for t, _ in passes[-1]) + len(piece[0]) > limit:
                passes.append([])
            passes[-1].append(piece)
        return passes

    def _commit_frame(
        self, frame: int, reverse: bool, new: dict[int, FrameOutput], skip: set[int] = frozenset()
    ) -> tuple[list[FrameOutput | None], FrameResult]:
        """Store ``new`` outputs of ``frame`` in the objects' tracks (skipped objects lose any older result there);
        returns every object's output and the frame's result, whose masks start their way to the host."""
        for track in self._tracks.values():
            if track.obj_id in skip and frame not in track.cond:
                self.tracker.discard(track.non_cond.pop(frame, None))
                track.tracked.pop(frame, None)
                continue
            if track.obj_id in new:
                self.tracker.discard(track.non_cond.get(frame))
                track.non_cond[frame] = new[track.obj_id]
            track.tracked[frame] = reverse
        outputs = [new.get(t.obj_id) or t.cond.get(frame) for t in self._tracks.values()]
        result = self._frame_result(frame, outputs)
        result.start_host_copy()
        return outputs, result

    def _consolidate_prompts(self) -> None:
        """Encode the memory of prompt outputs and move them into the objects' memory banks
        (``propagate_in_video_preflight``)."""
        if not self._tracks:
            raise RuntimeError("no object has prompts yet: add points, a box or a mask first")
        by_frame: dict[int, list] = {}
        for track in self._tracks.values():
            for is_cond in (False, True):
                for frame, output in track.pending(is_cond).items():
                    if output.memory_id is None:
                        by_frame.setdefault(frame, []).append(output)
        for frame, outputs in sorted(by_frame.items()):
            self.tracker.encode_memory(frame, outputs)
        for track in self._tracks.values():
            for is_cond in (False, True):
                target = track.cond if is_cond else track.non_cond
                for frame, output in track.pending(is_cond).items():
                    if target.get(frame) is not output:
                        self.tracker.discard(target.get(frame))
                    target[frame] = output
                track.pending(is_cond).clear()
            if not track.cond:
                raise RuntimeError(f"object {track.obj_id} has no prompts: add points, a box or a mask first")
            for frame in track.cond:
                self.tracker.discard(track.non_cond.pop(frame, None))

    def _prompt(self, frame: int, obj_id: int, prompt, *, clear: bool) -> FrameResult:
        self._settle()
        check_obj_id(obj_id)
        track = self._tracks.get(obj_id) or ObjectTrack(obj_id)
        if not clear and frame in track.points:
            prompt = track.points[frame].extended(prompt)
        is_first, reverse, is_cond = self._prompt_kind(track, frame)
        previous = track.pending(is_cond).get(frame) or track.cond.get(frame) or track.non_cond.get(frame)

        def run() -> FrameOutput:
            prev_logits = self.tracker.prev_logits(previous) if previous is not None else None
            plan = None if is_first else plan_memory(track, frame, reverse=reverse, num_frames=self.num_frames,
                                                     config=self.model.config)
            return self.tracker.run_prompt(track, frame, is_first_prompt=is_first, reverse=reverse, plan=plan,
                                           points=prompt, prev_logits=prev_logits)

        output = self.compute.run(run)
        self._tracks.setdefault(obj_id, track)  # the object exists once its first prompt gave a result
        track.points[frame] = prompt
        track.masks.pop(frame, None)
        self._set_pending(track, frame, is_cond, output)
        return self._consolidated(frame, is_cond)

    def _prompt_kind(self, track: ObjectTrack, frame: int) -> tuple[bool, bool, bool]:
        """(first prompt on a frame the object was never tracked on, tracked backwards, conditioning frame)."""
        is_first = frame not in track.tracked
        reverse = False if is_first else track.tracked[frame]
        return is_first, reverse, is_first or self.corrections_as_prompts

    def _set_pending(self, track: ObjectTrack, frame: int, is_cond: bool, output: FrameOutput) -> None:
        store = track.pending(is_cond)
        old = store.get(frame)
        if old is not None and old is not track.cond.get(frame) and old is not track.non_cond.get(frame):
            self.tracker.discard(old)
        store[frame] = output

    def _consolidated(self, frame: int, is_cond: bool) -> FrameResult:
        outputs = [t.output_for_display(frame, is_cond) for t in self._tracks.values()]
        return self._frame_result(frame, outputs)

    def _frame_result(self, frame: int, outputs: Sequence[FrameOutput | None]) -> FrameResult:
        obj_ids = self.obj_ids
        if not obj_ids:
            empty = np.zeros((0, self.height, self.width), np.float32)
            return FrameResult(frame, (), empty, np.zeros(0, np.float32))
        size = self.model.image_size // 4
        missing = torch.full((1, 1, size, size), NO_OBJECT_LOGIT, dtype=torch.float32, device=self.device)
        low = torch.cat([self.tracker.logits(o) if o is not None else missing for o in outputs])
        no_score = torch.full((), NO_OBJECT_LOGIT, device=self.device)  # a fill, not an upload (no sync)
        scores = torch.stack([o.object_score.float() if o is not None else no_score for o in outputs])
        return FrameResult(frame, obj_ids, to_frame_resolution(low, self.height, self.width), scores)

    def _track(self, obj_id: int) -> ObjectTrack:
        return known_object(self._tracks, obj_id)

    def _check_frame(self, frame: int) -> None:
        check_frame(frame, self.num_frames)
