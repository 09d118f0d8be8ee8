"""Objects in 3D over time: a stack (T, Z, H, W) segmented through z at each t and followed over t as 3D objects.

Design (and why). SAM 2 tracks through a sequence of 2D frames, so a 3D object over time is two sequences:

- **Along t, one plane per object**: each object has its own t-session (a :class:`Session`) whose frame t is the
  plane ``volume[t, z_c(t)]`` — the object's *central plane*, re-centred at every t on the plane where the object's
  3D mask at t − 1 was largest. The object keeps SAM 2's memory of how it looked (its largest section) and follows
  it when it drifts in z, which a fixed plane would lose. The frames are a lazy array filled as t advances (a
  plane is known only once the previous 3D mask is), stepped one t at a time, so nothing is read ahead; the
  plane's image features are taken from the z-session of that t, which encodes every plane anyway.
- **Along z, all objects at once**: at each t one z-session over ``volume[t]`` gets every object's central-plane
  mask as a mask prompt on its plane z_c(t) and propagates both ways along z → the 3D masks of all objects at t.
  The planes of ``volume[t]`` are encoded once for all objects. Each 3D mask is then cut to what is connected to
  the planes it was prompted on (``connected_to``): past an object's end in z, SAM 2 often goes on confidently on
  a neighbouring nucleus.

The alternative — every plane tracked along t and the stacks reconciled by a z pass — costs Z t-sessions per
object and needs a rule for disagreeing planes; the central-plane design costs one extra 2D frame per object and t.

Prompts (points, box, mask) go on any (t, z) plane. An object starts at the t of its first prompt (its plane is the
central plane there). A prompt on the object's central plane at t also corrects its t-session; on another plane it
joins the z pass at t only (and moves the re-centring through the 3D mask it changes). A prompt on a t already
computed re-runs what depends on it: that object's z pass at t and its t-tracking from t on (other objects keep
their results; the steps yielded carry only the re-run object). Tracking runs forward in t from each object's
start; divisions are not followed (an object keeps one track).

Memory stays bounded: a z-session lives for one t, a t-session keeps only the results its next frame's memory can
read (unless ``keep_history`` is set, needed to correct a t further back than that window). ``save_state`` after a
step and ``load_state`` in a new tracker continue bit-identically to an uninterrupted run.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from napari_sam2.model import SAM2Model

from .frames import estimate_intensity_range
from .persistence import write_state
from .prompts import PromptError, box_to_points, check_mask, check_obj_id, clicks_to_points
from .session import NO_OBJECT_LOGIT, Session
from .volume_frames import AllPlanes, CentralPlanes, PlanesAt

FORMAT = "napari-sam2 volume-time state 1"


class VolumeStateError(ValueError):
    """A volume state file that does not belong to this stack or model."""


@dataclass(frozen=True)
class PlanePrompt:
    """One prompt of one object on the plane (t, z): clicks (P, 2) as (y, x) pixels with labels (P,) 1/0, a box
    (y0, x0, y1, x1), or a mask (H, W)."""

    t: int
    z: int
    obj_id: int
    points: tuple[tuple[float, float], ...] | None = None
    labels: tuple[int, ...] | None = None
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None

    def apply(self, session: Session, frame: int, *, first: bool) -> None:
        """Give this prompt to ``session`` on ``frame`` (points add to the object's earlier clicks there)."""
        if self.mask is not None:
            session.add_mask(frame, self.obj_id, self.mask)
        elif self.box is not None:
            session.add_box(frame, self.obj_id, self.box, points=self.points, labels=self.labels)
        else:
            session.add_points(frame, self.obj_id, self.points, self.labels, clear=first)

    def to_record(self) -> dict:
        return {"t": self.t, "z": self.z, "obj_id": self.obj_id,
                "points": None if self.points is None else [list(p) for p in self.points],
                "labels": None if self.labels is None else list(self.labels),
                "box": None if self.box is None else list(self.box),
                "mask": None if self.mask is None else torch.from_numpy(np.asarray(self.mask, bool))}

    @classmethod
    def from_record(cls, r: dict) -> PlanePrompt:
        return cls(int(r["t"]), int(r["z"]), int(r["obj_id"]),
                   None if r["points"] is None else tuple(tuple(float(v) for v in p) for p in r["points"]),
                   None if r["labels"] is None else tuple(int(v) for v in r["labels"]),
                   None if r["box"] is None else tuple(float(v) for v in r["box"]),
                   None if r["mask"] is None else r["mask"].numpy())


@dataclass
class VolumeStep:
    """The 3D result at one t: ``logits`` (len(obj_ids), Z, H, W) float32 (> 0: inside; objects missing at t are
    filled with a large negative logit); ``central_planes`` the z each object was followed on at t."""

    t: int
    obj_ids: tuple[int, ...]
    logits: np.ndarray
    central_planes: dict[int, int]

    @property
    def masks(self) -> np.ndarray:
        """(len(obj_ids), Z, H, W) bool."""
        return self.logits > 0

    def plane_logits(self, z: int) -> np.ndarray:
        """(len(obj_ids), H, W) logits of plane z, as ``FrameView.write_result`` takes them."""
        return self.logits[:, z]


def connected_to(mask: np.ndarray, planes: set[int]) -> np.ndarray:
    """The parts of a 3D mask (Z, H, W) bool connected (6-connectivity) to its pixels on ``planes``.

    SAM 2 along z keeps finding "its" object on planes past the object's end — often a neighbouring nucleus, with a
    confident object score — so a 3D object is cut to what is connected, plane to plane, to where it was prompted."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    ids = np.unique(labels[sorted(planes)])
    return np.isin(labels, ids[ids > 0])


@dataclass
class _Object:
    obj_id: int
    start: int
    session: Session
    planes: dict[int, int]
    done_until: int  # last t whose 3D mask is computed

    @property
    def next_t(self) -> int:
        return self.done_until + 1


@dataclass
class VolumeTimeTracker:
    """Objects prompted on (t, z) planes of ``volume`` — an array-like (T, Z, H, W) (grayscale; ``volume[t, z]``
    reads one plane lazily) — segmented through z at each t and followed over t.

    ``session_options`` go to every :class:`Session` (device, precision, fill_hole_area, …); one intensity range
    for the whole stack (``intensity_range``, default robust percentiles of a sample of planes) keeps the planes of
    all sessions comparable.
    """

    model: SAM2Model
    volume: Any
    intensity_range: tuple[float, float] | None = None
    keep_history: bool = False
    session_options: dict = field(default_factory=dict)
    prompts: list[PlanePrompt] = field(default_factory=list, init=False)
    _objects: dict[int, _Object] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.volume.shape)
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"the volume must be shaped (T, Z, H, W), got shape {shape}")
        self.shape = shape
        if self.intensity_range is None and np.dtype(getattr(self.volume, "dtype", np.float32)) != np.uint8:
            found = estimate_intensity_range(AllPlanes(self.volume), sample=32)
            self.intensity_range = (found.low, found.high)

    # -- objects and prompts ------------------------------------------------------------------------------
    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(self._objects)

    def start_of(self, obj_id: int) -> int:
        return self._objects[obj_id].start

    def central_planes(self, obj_id: int) -> dict[int, int]:
        """{t: z} of the planes object ``obj_id`` was (or will next be) followed on."""
        return dict(self._objects[obj_id].planes)

    @property
    def next_t(self) -> int:
        """The first t some object still has to be computed on (T when all are done)."""
        return min((o.next_t for o in self._objects.values()), default=self.shape[0])

    def add_prompt(self, prompt: PlanePrompt) -> None:
        """Add a prompt; on an object's first prompt (or one before its start) the object starts there, on a t
        already computed the object is re-run from that t on the next ``propagate``."""
        t, z = self._check_plane(prompt.t, prompt.z)
        self._check_prompt(prompt)
        obj = self._objects.get(prompt.obj_id)
        self.prompts.append(prompt)
        if obj is None or t < obj.start:
            if obj is not None:
                obj.session.close()
            self._objects[prompt.obj_id] = self._new_object(prompt.obj_id, t, {t: z}, done_until=t - 1)
        elif t <= obj.done_until:
            self._rewind(obj, t)

    def add_points(self, t: int, z: int, obj_id: int, points: Any, labels: Any) -> None:
        pts = tuple(tuple(float(v) for v in p) for p in np.asarray(points, float).reshape(-1, 2))
        self.add_prompt(PlanePrompt(t, z, obj_id, pts, tuple(int(v) for v in np.asarray(labels).ravel())))

    def add_box(self, t: int, z: int, obj_id: int, box: Any) -> None:
        self.add_prompt(PlanePrompt(t, z, obj_id, box=tuple(float(v) for v in box)))

    def add_mask(self, t: int, z: int, obj_id: int, mask: Any) -> None:
        self.add_prompt(PlanePrompt(t, z, obj_id, mask=np.asarray(mask, bool)))

    def close(self) -> None:
        for obj in self._objects.values():
            obj.session.close()
        self._objects.clear()

    # -- propagation ---------------------------------------------------------------------------------------
    def propagate(self, *, stop: int | None = None) -> Iterator[VolumeStep]:
        """Compute t after t (up to ``stop`` inclusive, default the last t), yielding each t's 3D result of the
        objects computed there. Stopping between steps leaves the tracker consistent (``save_state`` then)."""
        last = self.shape[0] - 1 if stop is None else min(stop, self.shape[0] - 1)
        while self._objects and self.next_t <= last:
            t = self.next_t
            active = [o for o in self._objects.values() if o.start <= t and o.next_t == t]
            yield self._step(t, active)

    def _step(self, t: int, active: list[_Object]) -> VolumeStep:
        depth, height, width = self.shape[1:]
        logits = np.full((len(active), depth, height, width), NO_OBJECT_LOGIT, np.float32)
        z_session = self._session(PlanesAt(self.volume, t), encoder_batch_size="auto")
        try:
            central = self._central_masks(t, active, z_session)
            prompts = [p for p in self.prompts if p.t == t]
            for obj in active:
                if central[obj.obj_id] is not None:
                    z_session.add_mask(obj.planes[t], obj.obj_id, central[obj.obj_id])
                first = True
                for p in prompts:
                    if p.obj_id == obj.obj_id and p.z != obj.planes[t]:
                        p.apply(z_session, p.z, first=first)
                        first = False
            if z_session.obj_ids:
                for _ in z_session.propagate(direction="both"):
                    pass
                rows = {o: i for i, o in enumerate(o.obj_id for o in active)}
                for z in range(depth):
                    result = z_session.result(z)
                    for k, obj_id in enumerate(result.obj_ids):
                        logits[rows[obj_id], z] = result.logits[k]
        finally:
            z_session.close()
        return self._finish_step(t, active, logits)

    def _central_masks(self, t: int, active: list[_Object], z_session: Session) -> dict[int, np.ndarray | None]:
        """Step each object's t-session to t (its plane's features taken from the z-session, which encodes every plane
        of ``volume[t]`` anyway) and apply its prompts on its central plane; its (H, W) mask there, None if empty."""
        central: dict[int, np.ndarray | None] = {}
        for obj in active:
            z_c = obj.planes[t]
            obj.session.features.adopt(t, z_session.compute.run(z_session.features.get, z_c))
            if t > obj.start:  # the first t has only prompts, the tracked ones a memory step first
                for _ in obj.session.propagate(start=t, max_frames=0):
                    pass
            mine = [p for p in self.prompts if p.t == t and p.obj_id == obj.obj_id and p.z == z_c]
            for i, p in enumerate(mine):
                p.apply(obj.session, t, first=(i == 0 and t == obj.start))
            if mine:
                obj.session.consolidate_prompts()  # with this plane's features, before the next t's replace them
            mask = obj.session.result(t).masks[0]
            central[obj.obj_id] = mask if mask.any() else None
        return central

    def _finish_step(self, t: int, active: list[_Object], logits: np.ndarray) -> VolumeStep:
        """Cut each 3D mask to its connected object, re-centre, release memory; the step's result."""
        prompts = [p for p in self.prompts if p.t == t]
        planes = {obj.obj_id: obj.planes[t] for obj in active}
        for i, obj in enumerate(active):
            seeds = {obj.planes[t]} | {p.z for p in prompts if p.obj_id == obj.obj_id}
            logits[i][~connected_to(logits[i] > 0, seeds)] = NO_OBJECT_LOGIT
        for i, obj in enumerate(active):
            areas = (logits[i] > 0).sum(axis=(1, 2))
            if t + 1 < self.shape[0]:
                obj.planes[t + 1] = int(np.argmax(areas)) if areas.any() else obj.planes[t]
            obj.done_until = t
            if not self.keep_history:
                obj.session.keep_memory_window(t + 1)
        return VolumeStep(t, tuple(o.obj_id for o in active), logits, planes)

    def _rewind(self, obj: _Object, t: int) -> None:
        """Forget what object ``obj`` computed from ``t`` on, so the next propagation re-runs it from ``t``."""
        if t == obj.start:
            obj.session.close()
            self._objects[obj.obj_id] = self._new_object(obj.obj_id, t, {t: obj.planes[t]}, done_until=t - 1)
            return
        window_start = obj.done_until + 1 - self.model.config.num_maskmem
        if not self.keep_history and t < window_start:
            raise ValueError(f"t={t} is before the memory this tracker keeps for object {obj.obj_id} "
                             f"(from t={window_start}); correct further back with keep_history=True")
        obj.session.forget_after(obj.obj_id, t - 1)
        obj.session.features.clear()  # later frames may move to other planes
        for later in [u for u in obj.planes if u > t]:
            del obj.planes[later]
        obj.done_until = t - 1

    def _new_object(self, obj_id: int, start: int, planes: dict[int, int], *, done_until: int) -> _Object:
        session = self._session(CentralPlanes(self.volume, planes), encoder_batch_size=1, feature_cache_bytes=1)
        return _Object(obj_id, start, session, planes, done_until)

    def _session(self, frames: Any, **options: Any) -> Session:
        return Session(self.model, frames, intensity_range=self.intensity_range, **{**self.session_options, **options})

    def _check_prompt(self, prompt: PlanePrompt) -> None:
        """Raise :class:`PromptError` for a prompt its sessions could not take (checked now, used later)."""
        check_obj_id(prompt.obj_id)
        height, width, size = self.shape[2], self.shape[3], self.model.image_size
        if prompt.mask is not None:
            if prompt.points is not None or prompt.box is not None:
                raise PromptError("a mask prompt cannot be combined with points or a box")
            check_mask(prompt.mask, height, width)
        elif prompt.box is not None:
            box_to_points(prompt.box, height, width, size)
            if prompt.points is not None:
                clicks_to_points(prompt.points, prompt.labels, height, width, size)
        elif prompt.points is not None:
            clicks_to_points(prompt.points, prompt.labels, height, width, size)
        else:
            raise PromptError("a prompt has points, a box or a mask")

    def _check_plane(self, t: int, z: int) -> tuple[int, int]:
        T, Z = self.shape[:2]
        if not (0 <= int(t) < T and 0 <= int(z) < Z):
            raise IndexError(f"plane (t={t}, z={z}) is outside the stack (t 0…{T - 1}, z 0…{Z - 1})")
        return int(t), int(z)

    # -- state ---------------------------------------------------------------------------------------------
    def save_state(self, path: str | Path | BinaryIO) -> None:
        """Write prompts, central planes and every object's t-session memory (what its next t reads), so a new
        tracker over the same stack and model continues exactly (``load_state``). Written atomically."""
        objects = []
        for obj in self._objects.values():
            buffer = io.BytesIO()
            next_frame = None if self.keep_history else obj.next_t
            obj.session.save_state(buffer, next_frame=next_frame)
            objects.append({"obj_id": obj.obj_id, "start": obj.start, "done_until": obj.done_until,
                            "planes": dict(obj.planes), "session": torch.frombuffer(bytearray(buffer.getvalue()),
                                                                                   dtype=torch.uint8)})
        write_state({"format": FORMAT, "model": self.model.config.name, "image_size": self.model.image_size,
                     "shape": self.shape, "intensity_range": self.intensity_range,
                     "prompts": [p.to_record() for p in self.prompts], "objects": objects}, path)

    def load_state(self, path: str | Path | BinaryIO) -> None:
        """Replace every object and prompt by those of a state file saved over the same stack and model."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise VolumeStateError(f"{path} is not a readable napari-sam2 volume state ({err})") from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise VolumeStateError(f"{path} is not a napari-sam2 volume state file")
        found = (state["model"], state["image_size"], tuple(state["shape"]))
        expected = (self.model.config.name, self.model.image_size, self.shape)
        if found != expected:
            raise VolumeStateError(f"{path} was saved for model {found[0]} at {found[1]} px over a stack {found[2]}; "
                                   f"this one is {expected[0]} at {expected[1]} px over {expected[2]}")
        self.close()
        self.intensity_range = None if state["intensity_range"] is None else tuple(state["intensity_range"])
        self.prompts = [PlanePrompt.from_record(r) for r in state["prompts"]]
        for saved in state["objects"]:
            planes = {int(t): int(z) for t, z in saved["planes"].items()}
            obj = self._new_object(int(saved["obj_id"]), int(saved["start"]), planes,
                                   done_until=int(saved["done_until"]))
            obj.session.load_state(io.BytesIO(saved["session"].numpy().tobytes()))
            self._objects[obj.obj_id] = obj
