"""The memory-bank rule: which stored memories a frame attends to.

Same selection as ``SAM2Base._prepare_memory_conditioned_features`` (sam2/modeling/sam2_base.py):
all conditioning frames (or the ``max_cond_frames_in_attn`` closest), the ``num_maskmem - 1`` frames just
before the current one in the tracking direction, and object pointers of conditioning frames in the past
plus of up to ``max_obj_ptrs_in_encoder - 1`` previous frames. A plan names frames only; objects whose plans
have the same ``layout`` (temporal slots and number of pointers, whatever frames they name) are computed in one
batch, each attending to its own memories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_sam2.model import SAM2Config

from .state import FrameOutput, ObjectTrack

COND, NON_COND = "cond", "non_cond"


@dataclass(frozen=True)
class MemoryPlan:
    """spatial: (frame, temporal slot, store) per spatial memory; pointers: (frame, signed distance, store);
    store is "cond" or "non_cond" (an unselected conditioning frame used as a recent frame counts as cond)."""

    spatial: tuple[tuple[int, int, str], ...]
    pointers: tuple[tuple[int, int, str], ...]
    full: bool = field(default=False, compare=False)  # every recent-memory slot and recent pointer present

    @property
    def layout(self) -> tuple[tuple[int, ...], int]:
        """(temporal slot of each spatial memory, number of pointers): what fixes the shapes of a tracking step."""
        return tuple(slot for _, slot, _ in self.spatial), len(self.pointers)

    def lookup(self, track: ObjectTrack, frame: int, store: str) -> FrameOutput:
        return (track.cond if store == COND else track.non_cond)[frame]


def select_closest_cond_frames(frame: int, cond_frames: list[int], max_num: int) -> tuple[list[int], list[int]]:
    """(selected, unselected) conditioning frames: all if ``max_num`` is -1, else the closest before, the
    closest after, then the temporally nearest (``select_closest_cond_frames`` in sam2/modeling/sam2_utils.py)."""
    if max_num == -1 or len(cond_frames) <= max_num:
        return list(cond_frames), []
    selected: list[int] = []
    before = max((t for t in cond_frames if t < frame), default=None)
    after = min((t for t in cond_frames if t >= frame), default=None)
    selected += [t for t in (before, after) if t is not None]
    rest = sorted((t for t in cond_frames if t not in selected), key=lambda t: abs(t - frame))
    selected += rest[: max_num - len(selected)]
    chosen = set(selected)
    return [t for t in cond_frames if t in chosen], [t for t in cond_frames if t not in chosen]


def plan_memory(track: ObjectTrack, frame: int, *, reverse: bool, num_frames: int, config: SAM2Config) -> MemoryPlan:
    """The memories ``track`` attends to on ``frame`` (a frame that is not one of its first prompts)."""
    if not track.cond:
        raise RuntimeError(f"object {track.obj_id} has no prompted frame to track from")
    selected, unselected = select_closest_cond_frames(frame, list(track.cond), config.max_cond_frames_in_attn)
    unselected_set = set(unselected)

    def recent(t: int) -> str | None:
        if t in track.non_cond:
            return NON_COND
        if t in unselected_set:
            return COND
        return None

    spatial = [(t, 0, COND) for t in selected]
    stride, step = config.memory_temporal_stride_for_eval, (-1 if not reverse else 1)
    for slot in range(1, config.num_maskmem):
        distance = config.num_maskmem - slot  # frames before the current one
        if distance == 1:
            prev = frame + step
        elif not reverse:
            prev = ((frame - 2) // stride) * stride - (distance - 2) * stride
        else:
            prev = -(-(frame + 2) // stride) * stride + (distance - 2) * stride
        store = recent(prev)
        if store is not None:
            spatial.append((prev, slot, store))

    pointers: list[tuple[int, int, str]] = []
    recent_pointers = 0
    if config.use_obj_ptrs_in_encoder:
        sign = -1 if reverse else 1
        for t in selected:
            in_past = t >= frame if reverse else t <= frame
            if in_past or not config.only_obj_ptrs_in_the_past_for_eval:
                distance = (frame - t) * sign if config.use_signed_tpos_enc_to_obj_ptrs else abs(frame - t)
                pointers.append((t, distance, COND))
        for distance in range(1, min(num_frames, config.max_obj_ptrs_in_encoder)):
            t = frame + distance if reverse else frame - distance
            if t < 0 or t >= num_frames:
                break
            store = recent(t)
            if store is not None:
                pointers.append((t, distance, store))
                recent_pointers += 1
    full = (len(spatial) - len(selected) == config.num_maskmem - 1
            and recent_pointers == (min(num_frames, config.max_obj_ptrs_in_encoder) - 1
                                    if config.use_obj_ptrs_in_encoder else 0))
    return MemoryPlan(tuple(spatial), tuple(pointers), full)
