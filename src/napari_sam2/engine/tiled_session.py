"""Tracking at native resolution in frames larger than the model's input: one session per tile that holds objects.

A :class:`TiledSession` has the public face of :class:`Session` (prompts, propagation, results, automatic masklets,
save/load of the state) over a frame cut into overlapping tiles at the model's input size (``tiles.TileLayout``),
so nothing is resized down: a 20-pixel cell in a 4,096² frame stays 20 pixels wide for the model.

Rules:

- *Where an object lives.* A new object goes to the tile that holds its prompt most centrally
  (``TileLayout.best_tile`` of the prompt's box: the clicks, the box or the mask). A tile's :class:`Session` reads
  lazy crops of the frames and tracks the object in tile coordinates, memory included. Only tiles holding objects
  (or being searched by ``find_objects``) hold a session; each gets an equal share of the feature-cache and host
  budgets (one tile's share per tile of the layout, so all of them together stay within the budgets given, apart
  from the one frame of features a session always keeps).
- *Hand-over.* After each propagated frame, an object whose mask comes within ``handover_margin`` pixels (default
  half the overlap) of an inner border of its tile is handed over to the tile that holds its mask most centrally,
  when that tile holds it more centrally (by a margin, below): the mask (its part inside the new tile) becomes a
  mask prompt there on that frame, and the old tile ends the object's track before that frame (after it, in a
  backward pass). The object keeps its id; its labels continue across the border. A frame where the object has a
  prompt in its tile is never handed over (the prompt stays where it was given). Each stretch of frames an object
  spends in a tile is a *span*; inside a tile each span is its own object (a tile-local id), so an object may come
  back to a tile. The tile must hold the mask more centrally by at least half the hand-over margin (hysteresis: an
  object sitting on the overlap's midline does not go back and forth). A pass that crosses from one span into the
  next against the direction the hand-over was made in (forward over a boundary a backward pass made, or the other
  way) seeds the next span: the mask on the last frame of the span it leaves becomes a mask prompt of the next span
  on its first frame, so the object there is tracked from where it was, not from the far end of that span.
- *Results* are stitched in frame coordinates: each object's logits on a frame come from the tile whose span
  holds that frame, cropped to their positive pixels (``TiledFrameResult``: sparse, never (K, H, W)).
- *Normalisation* is the whole stack's: the intensity range is estimated once over the frames (unless given) and
  used by every tile; ``normalization="minmax"`` or a callable is applied per tile crop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import persistence
from .device import pick_device
from .find_objects import FindSettings
from .frames import describe_frames, estimate_intensity_range
from .prompts import PromptError, check_frame, check_mask, check_obj_id, known_object
from .session import DIRECTIONS, Session
from .tile_frames import SampledFrames, SharedFrames, TileFrames
from .tiled_find import find_in_tiles
from .tiled_result import NO_OBJECT_LOGIT, TiledFrameResult, crop_positive
from .tiles import Box, TileLayout, choose_tiling, mask_box

FORMAT = "napari-sam2 tiled session state 1"
DEFAULT_OVERLAP_FRACTION = 4  # default overlap: a quarter of the tile


@dataclass
class Span:
    """Frames ``first`` … ``last`` of an object, tracked in tile ``tile`` as that tile's object ``local``."""

    tile: int
    local: int
    first: int
    last: int


class TiledSession:
    """:class:`Session`'s public face over overlapping tiles at native resolution (module docstring).

    tile: tile side in frame pixels (default: the model's input size, so a tile is not resized); overlap: pixels
    neighbouring tiles share (default a quarter of the tile; it should exceed twice the largest object diameter for
    hand-overs to find a tile that holds a border-crossing object whole); handover_margin: default overlap // 2.
    Other keywords go to each tile's :class:`Session` (feature_cache_bytes and host_budget_bytes are split).
    """

    def __init__(
        self,
        model: Any,
        frames: Any,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        handover_margin: int | None = None,
        normalization: Any = "auto",
        intensity_range: tuple[float, float] | None = None,
        feature_cache_bytes: int = 1 << 30,
        host_budget_bytes: int = 4 << 30,
        **session_options: Any,
    ) -> None:
        self.model = model
        self.num_frames, self.height, self.width, channels = describe_frames(frames)
        tile = int(tile or model.image_size)
        overlap = int(tile // DEFAULT_OVERLAP_FRACTION if overlap is None else overlap)
        self.layout = TileLayout(self.height, self.width, tile, overlap)
        self.handover_margin = overlap // 2 if handover_margin is None else int(handover_margin)
        self._shared = SharedFrames(frames)
        self._rgb = channels == 3
        if intensity_range is None and normalization in ("auto", "percentile"):
            first = self._shared.frame(0)
            if not (first.dtype == np.uint8 and normalization == "auto"):
                found = estimate_intensity_range(SampledFrames(frames, self.height, self.width))
                intensity_range = (found.low, found.high)
        share = len(self.layout)
        # one frame per encoder call: a tile's share of the feature budget holds a few frames, not a block of 8
        # (a block larger than the share would be encoded again for each of its frames)
        session_options.setdefault("encoder_batch_size", 1)
        self._options = dict(session_options, normalization=normalization, intensity_range=intensity_range,
                             feature_cache_bytes=max(1, feature_cache_bytes // share),
                             host_budget_bytes=max(1, host_budget_bytes // share))
        self._tiles: dict[int, Session] = {}
        self._spans: dict[int, list[Span]] = {}  # global id → its spans, in frame order
        self._next_local = 1
        self.track_ends: dict[int, int] = {}
        self.device = pick_device(session_options.get("device"))

    # -- objects -------------------------------------------------------------------------------------------
    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(self._spans)

    @property
    def active_tiles(self) -> tuple[int, ...]:
        """The tiles that hold a session now."""
        return tuple(sorted(self._tiles))

    def spans(self, obj_id: int) -> list[Span]:
        """Where object ``obj_id`` is tracked: its spans (tile, tile-local id, first and last frame)."""
        return list(self._obj(obj_id))

    def prompted_frames(self, obj_id: int) -> list[int]:
        return sorted({f for s in self._obj(obj_id) for f in self._tiles[s.tile].prompted_frames(s.local)})

    def remove_object(self, obj_id: int) -> None:
        for span in self._obj(obj_id):
            self._tiles[span.tile].remove_object(span.local)
            self._drop_if_empty(span.tile)
        del self._spans[obj_id]
        self.track_ends.pop(obj_id, None)

    def end_object(self, obj_id: int, last_frame: int) -> None:
        """End the object's track after ``last_frame`` (``Session.end_object``), in every tile it visits."""
        self.track_ends[obj_id] = int(last_frame)
        for span in list(self._obj(obj_id)):
            if span.first > last_frame and len(self._spans[obj_id]) > 1:
                self._remove_span(obj_id, span)
            elif span.last > last_frame:
                span.last = int(last_frame)
                self._tiles[span.tile].end_object(span.local, last_frame)

    def reset(self) -> None:
        for obj_id in list(self._spans):
            self.remove_object(obj_id)

    def close(self) -> None:
        for session in self._tiles.values():
            session.close()
        self._tiles.clear()
        self._spans.clear()

    # -- prompts -------------------------------------------------------------------------------------------
    def add_points(self, frame: int, obj_id: int, points: Any, labels: Any, *, clear: bool = False
                   ) -> TiledFrameResult:
        """Clicks (P, 2) (y, x) frame pixels, labels (P,) 1/0, for ``obj_id`` on ``frame`` (``Session.add_points``);
        clicks outside the object's tile there are left out."""
        self._check_frame(frame)
        check_obj_id(obj_id)
        yx = np.asarray(points, dtype=np.float64).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
        lab = np.asarray(labels).reshape(-1) if labels is not None else None
        if lab is None or len(yx) == 0 or len(lab) != len(yx):
            raise PromptError("points and labels must be given together, one label per point, at least one point")
        positive = yx[lab == 1] if (lab == 1).any() else yx
        box = (int(positive[:, 0].min()), int(positive[:, 1].min()),
               int(positive[:, 0].max()) + 1, int(positive[:, 1].max()) + 1)
        span = self._place(frame, obj_id, box)
        ty0, tx0, ty1, tx1 = self.layout.boxes[span.tile]
        inside = ((yx[:, 0] >= ty0 - 0.5) & (yx[:, 0] <= ty1 - 0.5) & (yx[:, 1] >= tx0 - 0.5)
                  & (yx[:, 1] <= tx1 - 0.5))
        with self._keeping_consistent(obj_id, span):
            self._tiles[span.tile].add_points(frame, span.local, yx[inside] - [ty0, tx0], lab[inside], clear=clear)
        return self.result(frame)

    def add_box(self, frame: int, obj_id: int, box: Any, *, points: Any = None, labels: Any = None
                ) -> TiledFrameResult:
        """A box (y0, x0, y1, x1) in frame pixels, optionally with clicks (``Session.add_box``)."""
        self._check_frame(frame)
        check_obj_id(obj_id)
        corners = np.asarray(box, dtype=np.float64).reshape(-1)
        if corners.size != 4:
            raise PromptError(f"a box is (y0, x0, y1, x1), got {np.asarray(box).tolist()}")
        y0, y1 = sorted(corners[[0, 2]])
        x0, x1 = sorted(corners[[1, 3]])
        span = self._place(frame, obj_id, (int(y0), int(x0), int(math.ceil(y1)), int(math.ceil(x1))))
        ty0, tx0, ty1, tx1 = self.layout.boxes[span.tile]
        local_box = (max(y0, ty0) - ty0, max(x0, tx0) - tx0, min(y1, ty1 - 1) - ty0, min(x1, tx1 - 1) - tx0)
        if points is not None:
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2) - [ty0, tx0]
        with self._keeping_consistent(obj_id, span):
            self._tiles[span.tile].add_box(frame, span.local, local_box, points=points, labels=labels)
        return self.result(frame)

    def add_mask(self, frame: int, obj_id: int, mask: Any) -> TiledFrameResult:
        """A (H, W) mask as the object's prompt on ``frame`` (``Session.add_mask``)."""
        self._check_frame(frame)
        check_obj_id(obj_id)
        full = check_mask(mask, self.height, self.width)[0, 0].numpy() > 0
        box = mask_box(full)
        if box is None:
            raise PromptError("the mask is empty: a mask prompt needs at least one pixel inside")
        span = self._place(frame, obj_id, box)
        ty0, tx0, ty1, tx1 = self.layout.boxes[span.tile]
        with self._keeping_consistent(obj_id, span):
            self._tiles[span.tile].add_mask(frame, span.local, full[ty0:ty1, tx0:tx1])
        return self.result(frame)

    def clear_frame(self, frame: int, obj_id: int | None = None) -> TiledFrameResult:
        """Remove the prompts of one object (or of all) on ``frame`` (``Session.clear_frame``)."""
        self._check_frame(frame)
        for oid in [obj_id] if obj_id is not None else list(self._spans):
            span = self._span_at(oid, frame)
            if span is not None:
                self._tiles[span.tile].clear_frame(frame, span.local)
        return self.result(frame)

    def find_objects(self, frame: int, settings: FindSettings | None = None, *, first_id: int | None = None
                     ) -> list[int]:
        """Automatic masklets on ``frame``, tile by tile (``find_objects.find_candidates`` on each tile's cached
        features); candidates touching a tile's inner border are left to the tile that holds them whole, duplicates
        in the overlaps are removed by mask NMS over the frame, and the survivors made disjoint, best first. Each
        becomes a new object (ids ``first_id``, … as in ``Session.find_objects``) in the tile holding it most
        centrally. The default object diameter is the tile's (``FindSettings.diameter`` of the tile's size)."""
        settings = settings or FindSettings()
        self._check_frame(frame)
        covered = None
        if settings.skip_covered and self._spans:
            covered = np.zeros((self.height, self.width), bool)
            current = self.result(frame)
            for k, (y0, x0, y1, x1) in enumerate(current.boxes):
                covered[y0:y1, x0:x1] |= current.crops[k] > 0
        found = find_in_tiles(self.layout, self._session, frame, settings, covered)
        next_id = first_id if first_id is not None else max(self._spans, default=0) + 1
        check_obj_id(next_id)
        ids = []
        for box, mask in found:
            while next_id in self._spans:
                next_id += 1
            tile = self.layout.best_tile(box)
            ty0, tx0, ty1, tx1 = self.layout.boxes[tile]
            local_mask = np.zeros((ty1 - ty0, tx1 - tx0), bool)
            y0, x0, y1, x1 = box
            local_mask[y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0] = mask
            span = self._new_span(next_id, tile)
            self._tiles[tile].add_mask(frame, span.local, local_mask)
            ids.append(next_id)
            next_id += 1
        for index in list(self._tiles):
            self._drop_if_empty(index)
        return ids

    # -- propagation ---------------------------------------------------------------------------------------
    def propagate(
        self,
        *,
        start: int | None = None,
        direction: str = "forward",
        max_frames: int | None = None,
        lost_patience: int | None = None,
    ) -> Iterator[TiledFrameResult]:
        """Track every object through the stack, tiles in step, handing objects over between tiles (module
        docstring); yields each frame's stitched result. Arguments as ``Session.propagate``."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if start is not None:
            self._check_frame(start)
        if lost_patience is not None and lost_patience < 1:
            raise ValueError(f"lost_patience must be at least 1, got {lost_patience}")
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        for reverse in passes:
            yield from self._propagate_pass(start, reverse, max_frames, lost_patience)

    def prepare_frame(self, frame: int) -> None:
        self._check_frame(frame)
        for session in self._tiles.values():
            session.prepare_frame(frame)

    def result(self, frame: int) -> TiledFrameResult:
        """The current result of every object on ``frame``, stitched."""
        self._check_frame(frame)
        return self._stitch(frame, {t: s.result(frame) for t, s in self._tiles.items()})

    # -- state ---------------------------------------------------------------------------------------------
    def save_state(self, path: Any, *, next_frame: int | None = None, reverse: bool = False) -> None:
        """Every tile's session state (``persistence.capture_state``) and the objects' spans, in one file."""
        persistence.write_state(self.capture_state(next_frame=next_frame, reverse=reverse), path)

    def capture_state(self, *, next_frame: int | None = None, reverse: bool = False) -> dict:
        """The state ``save_state`` writes, for writing later (``persistence.write_state``; see ``capture_state``
        there for why it stays valid while work goes on)."""
        return {
            "format": FORMAT,
            "model": self.model.config.name,
            "image_size": self.model.image_size,
            "frames": (self.num_frames, self.height, self.width),
            "layout": (self.layout.tile, self.layout.overlap, self.handover_margin),
            "spans": {o: [(s.tile, s.local, s.first, s.last) for s in spans] for o, spans in self._spans.items()},
            "next_local": self._next_local,
            "track_ends": dict(self.track_ends),
            "tiles": {t: persistence.capture_state(s, next_frame=next_frame, reverse=reverse)
                      for t, s in self._tiles.items()},
        }

    def load_state(self, path: Any) -> None:
        """Replace all objects by those of a tiled state saved over the same stack, model and tiles."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise persistence.SessionStateError(f"{path} is not a readable napari-sam2 tiled state ({err})") from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise persistence.SessionStateError(f"{path} is not a napari-sam2 tiled session state (saved untiled?)")
        expected = (self.model.config.name, self.model.image_size, (self.num_frames, self.height, self.width),
                    (self.layout.tile, self.layout.overlap, self.handover_margin))
        found = (state["model"], state["image_size"], tuple(state["frames"]), tuple(state["layout"]))
        if found != expected:
            raise persistence.SessionStateError(
                f"{path} was saved for model {found[0]} at {found[1]} px over frames {found[2]} with tiles "
                f"(tile, overlap, margin) {found[3]}; this session has {expected}")
        for session in self._tiles.values():
            session.close()
        self._tiles.clear()
        self._spans = {int(o): [Span(*map(int, s)) for s in spans] for o, spans in state["spans"].items()}
        self._next_local = int(state["next_local"])
        self.track_ends = {int(o): int(f) for o, f in state["track_ends"].items()}
        for tile, saved in state["tiles"].items():
            persistence.restore_state(self._session(int(tile)), saved, path)

    # -- internals -----------------------------------------------------------------------------------------
    def _propagate_pass(self, start: int | None, reverse: bool, max_frames: int | None,
                        lost_patience: int | None) -> Iterator[TiledFrameResult]:
        if not self._spans:
            raise RuntimeError("no object has prompts yet: add points, a box or a mask first")
        if start is None:
            start = min(f for o in self._spans for f in self.prompted_frames(o))
        span = self.num_frames if max_frames is None else max_frames
        end = max(start - span, 0) if reverse else min(start + span, self.num_frames - 1)
        step = -1 if reverse else 1
        direction = "backward" if reverse else "forward"
        passes: dict[int, Iterator] = {}

        def open_pass(tile: int, frame: int) -> None:
            old = passes.pop(tile, None)
            if old is not None:
                old.close()
            session = self._tiles.get(tile)
            if session is not None and session.obj_ids:
                passes[tile] = session.propagate(start=frame, direction=direction, max_frames=abs(end - frame),
                                                 lost_patience=lost_patience)

        for tile in list(self._tiles):
            open_pass(tile, start)
        frame = start
        try:
            while True:
                results = {t: next(p) for t, p in passes.items()}
                moved = self._hand_overs(frame, results, reverse)
                if moved:
                    results = {t: s.result(frame) for t, s in self._tiles.items()}
                yield self._stitch(frame, results)
                if frame == end:
                    return
                for tile in moved:
                    session = self._tiles.get(tile)
                    if session is not None:
                        session.resume_absent_counts = (frame + step, reverse, dict(session.absent_counts))
                    open_pass(tile, frame + step)
                frame += step
        finally:
            for p in passes.values():
                p.close()

    def _hand_overs(self, frame: int, results: dict[int, Any], reverse: bool) -> set[int]:
        """Hand over the objects that came near an inner border of their tile on ``frame`` (module rule);
        returns the tiles whose objects changed."""
        moved: set[int] = set()
        for obj_id in list(self._spans):
            span = self._span_at(obj_id, frame)
            if span is None or span.tile not in results:
                continue
            result = results[span.tile]
            k = result.obj_ids.index(span.local)
            if result.object_scores[k] <= 0:
                continue
            mask = result.logits[k] > 0
            box = mask_box(mask)
            if box is None:
                continue
            ty0, tx0, ty1, tx1 = self.layout.boxes[span.tile]
            entered = self._unseeded_next_span(obj_id, span, frame, reverse)
            if entered is not None:  # the pass leaves this span for one made in the other direction: seed it
                ny0, nx0, ny1, nx1 = self.layout.boxes[entered.tile]
                full = np.zeros((self.height, self.width), bool)
                full[ty0:ty1, tx0:tx1] = mask
                self._tiles[entered.tile].add_mask(frame + (-1 if reverse else 1), entered.local,
                                                   full[ny0:ny1, nx0:nx1])
                moved.add(entered.tile)
                continue
            if frame in self._tiles[span.tile].prompted_frames(span.local):
                continue
            frame_box = (box[0] + ty0, box[1] + tx0, box[2] + ty0, box[3] + tx0)
            here = self.layout.margin(span.tile, frame_box)
            if here >= self.handover_margin:
                continue
            best = self.layout.best_tile(frame_box)
            if best == span.tile or self.layout.margin(best, frame_box) < here + self.handover_margin / 2:
                continue  # hysteresis: an object on the overlap's midline does not go back and forth
            by0, bx0, by1, bx1 = self.layout.boxes[best]
            full = np.zeros((self.height, self.width), bool)
            full[ty0:ty1, tx0:tx1] = mask
            self._move(obj_id, span, frame, best, full[by0:by1, bx0:bx1], reverse)
            moved |= {span.tile, best}
        return moved

    def _unseeded_next_span(self, obj_id: int, span: Span, frame: int, reverse: bool) -> Span | None:
        """The object's span on the pass's next frame when it is another span without a prompt there (a span made
        by a hand-over in the other direction: its prompt is at its far end), else None."""
        following = frame + (-1 if reverse else 1)
        if not 0 <= following < self.num_frames:
            return None
        nxt = self._span_at(obj_id, following)
        if nxt is None or nxt is span or following in self._tiles[nxt.tile].prompted_frames(nxt.local):
            return None
        return nxt

    def _move(self, obj_id: int, span: Span, frame: int, tile: int, mask: np.ndarray, reverse: bool) -> None:
        """Hand object ``obj_id`` over from ``span``'s tile to ``tile`` on ``frame``: ``mask`` (tile pixels)
        becomes its prompt there; the old span ends before ``frame`` (begins after it, in a backward pass)."""
        if reverse:
            new = Span(tile, self._take_local(), span.first, frame)
            span.first = frame + 1
        else:
            new = Span(tile, self._take_local(), frame, span.last)
            span.last = frame - 1
        target = self._session(tile)
        target.add_mask(frame, new.local, mask)
        if new.first > 0:
            target.start_object(new.local, new.first)
        if new.last < self.num_frames - 1:
            target.end_object(new.local, new.last)
        spans = self._spans[obj_id]
        spans.append(new)
        if span.first > span.last:
            self._remove_span(obj_id, span)
        elif reverse:
            self._tiles[span.tile].start_object(span.local, span.first)
        else:
            self._tiles[span.tile].end_object(span.local, span.last)
        spans.sort(key=lambda s: s.first)

    def _place(self, frame: int, obj_id: int, box: Box) -> Span:
        """The span that takes a prompt with box ``box`` for ``obj_id`` on ``frame``: a new object goes to the tile
        holding the box most centrally; a known one stays in its tile there unless the box leaves it (then it moves,
        from this frame on, to the tile holding the box best)."""
        if obj_id not in self._spans:
            return self._new_span(obj_id, self.layout.best_tile(box))
        span = self._span_at(obj_id, frame)
        if span is None:  # the frame is outside every span (an ended track): a new span of the best tile
            return self._new_span(obj_id, self.layout.best_tile(box), frame, frame)
        if self.layout.contains(span.tile, box):
            return span
        tile = self.layout.best_tile(box)
        current = self.result(frame)
        k = current.obj_ids.index(obj_id)
        ty0, tx0, ty1, tx1 = self.layout.boxes[tile]
        mask = current.mask(k)[ty0:ty1, tx0:tx1]
        if not mask.any():
            y0, x0, y1, x1 = box
            mask[max(y0 - ty0, 0) : y1 - ty0, max(x0 - tx0, 0) : x1 - tx0] = True
        self._move(obj_id, span, frame, tile, mask, False)
        return self._span_at(obj_id, frame)

    @contextmanager
    def _keeping_consistent(self, obj_id: int, span: Span) -> Iterator[None]:
        """A prompt the tile's session refused leaves no span without its object behind."""
        try:
            yield
        except BaseException:
            if span.local not in self._tiles[span.tile].obj_ids:
                self._spans[obj_id].remove(span)
                if not self._spans[obj_id]:
                    del self._spans[obj_id]
                self._drop_if_empty(span.tile)
            raise

    def _new_span(self, obj_id: int, tile: int, first: int = 0, last: int | None = None) -> Span:
        span = Span(tile, self._take_local(), first, self.num_frames - 1 if last is None else last)
        self._spans.setdefault(obj_id, []).append(span)
        self._spans[obj_id].sort(key=lambda s: s.first)
        self._session(tile)
        return span

    def _take_local(self) -> int:
        local, self._next_local = self._next_local, self._next_local + 1
        return local

    def _remove_span(self, obj_id: int, span: Span) -> None:
        session = self._tiles[span.tile]
        if span.local in session.obj_ids:
            session.remove_object(span.local)
        self._spans[obj_id].remove(span)
        self._drop_if_empty(span.tile)

    def _span_at(self, obj_id: int, frame: int) -> Span | None:
        for span in self._obj(obj_id):
            if span.first <= frame <= span.last:
                return span
        return None

    def _session(self, tile: int) -> Session:
        session = self._tiles.get(tile)
        if session is None:
            frames = TileFrames(self._shared, self.num_frames, self.layout.boxes[tile], self._rgb)
            session = Session(self.model, frames, **self._options)
            self._tiles[tile] = session
        return session

    def _drop_if_empty(self, tile: int) -> None:
        session = self._tiles.get(tile)
        if session is not None and not session.obj_ids:
            session.close()
            del self._tiles[tile]

    def _stitch(self, frame: int, results: dict[int, Any]) -> TiledFrameResult:
        boxes, crops, scores = [], [], []
        for obj_id in self._spans:
            span = self._span_at(obj_id, frame)
            result = results.get(span.tile) if span is not None else None
            if result is None or span.local not in result.obj_ids:
                boxes.append((0, 0, 0, 0))
                crops.append(np.zeros((0, 0), np.float32))
                scores.append(NO_OBJECT_LOGIT)
                continue
            k = result.obj_ids.index(span.local)
            ty0, tx0 = self.layout.boxes[span.tile][:2]
            box, crop = crop_positive(result.logits[k], (ty0, tx0))
            boxes.append(box)
            crops.append(crop)
            scores.append(float(result.object_scores[k]))
        return TiledFrameResult(frame, self.obj_ids, boxes, crops, np.asarray(scores, np.float32),
                                self.height, self.width)

    def _obj(self, obj_id: int) -> list[Span]:
        return known_object(self._spans, obj_id)

    def _check_frame(self, frame: int) -> None:
        check_frame(frame, self.num_frames)


def make_session(
    model: Any,
    frames: Any,
    *,
    tiling: str = "off",
    object_diameter: float | None = None,
    tile_overlap: int | None = None,
    **options: Any,
) -> Session | TiledSession:
    """A :class:`Session`, or a :class:`TiledSession` when ``tiling`` says so ("on"; "auto":
    ``tiles.should_tile`` with ``object_diameter``, the expected object diameter in frame pixels)."""
    _, height, width, _ = describe_frames(frames)
    if choose_tiling(tiling, height, width, model.image_size, object_diameter):
        return TiledSession(model, frames, overlap=tile_overlap, **options)
    return Session(model, frames, **options)
