"""Running Meta's video predictor and our Session side by side on the same frames and weights."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from napari_sam2.engine import Session
from napari_sam2.model import build_sam2
from tests.reference import relative_error
from tests.synthetic import moving_blobs

SIZE = 512  # frames already at image_size: the reference's PIL resize is then the identity


def with_objects_present(model: torch.nn.Module, score_bias: float = 8.0) -> torch.nn.Module:
    """``model`` (ours or Meta's) with a large bias on its object-score head's output. Random weights call most
    objects absent (score < 0), and an absent object's logits are all -1024, so comparing two runs' logits or
    masks compares constants; with the bias the objects stay present and their logits depend on everything."""
    head = model.sam_mask_decoder.pred_obj_score_head
    with torch.no_grad():
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(score_bias)
    return model


def blob_frames(num_frames: int, size: int = SIZE, seed: int = 0, vanish: tuple[int, ...] = ()) -> np.ndarray:
    """(N, size, size, 3) uint8 frames of three bright moving blobs on a textured background;
    the first blob is missing on the frames listed in ``vanish``."""
    img = moving_blobs(num_frames, size, seed=seed, vanish=vanish)
    rgb = np.stack([img, img * 0.8 + 20, img * 0.6 + 40], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def decoded_jpeg_frames(frames: np.ndarray, folder: Path) -> np.ndarray:
    """Write frames as the JPEG folder the reference reads, and return what PIL decodes from it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    decoded = []
    for i, frame in enumerate(frames):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(frame).save(path, quality=95)
        decoded.append(np.array(Image.open(path).convert("RGB")))
    return np.stack(decoded)


@contextmanager
def float32_memory(predictor):
    """On the CPU the reference fails when a memory bank holds only bfloat16 tensors (e.g. right after a mask
    prompt); cast its memories to float32, as torch.cat's type promotion does on its other paths."""
    attention = predictor.memory_attention
    original = attention.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return original(curr=curr, memory=memory.float(), curr_pos=curr_pos, memory_pos=memory_pos.float(),
                        num_obj_ptr_tokens=num_obj_ptr_tokens)

    attention.forward = forward
    try:
        yield predictor
    finally:
        attention.forward = original


class SideBySide:
    """The reference predictor and our session on the same frames; every call goes to both."""

    def __init__(self, predictor, frames_folder: Path, frames: np.ndarray, *, corrections_as_prompts: bool = False):
        self.ref = predictor
        self.ref.fill_hole_area = 0
        self.ref.add_all_frames_to_correct_as_cond = corrections_as_prompts
        self.state = predictor.init_state(video_path=str(frames_folder))
        model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE)
        model.load_state_dict(predictor.state_dict(), strict=True)
        self.session = Session(model, frames, fill_hole_area=0, device="cpu",
                               corrections_as_prompts=corrections_as_prompts)
        self.compared = 0

    def points(self, frame, obj_id, yx, labels, clear=False):
        yx = np.asarray(yx, np.float32)
        ours = self.session.add_points(frame, obj_id, yx, labels, clear=clear)
        theirs = self.ref.add_new_points_or_box(self.state, frame, obj_id, points=yx[:, ::-1].copy(),
                                                labels=np.asarray(labels, np.int32), clear_old_points=clear)
        self.check(ours, theirs)
        return ours

    def box(self, frame, obj_id, box_yxyx):
        y0, x0, y1, x1 = box_yxyx
        ours = self.session.add_box(frame, obj_id, box_yxyx)
        theirs = self.ref.add_new_points_or_box(self.state, frame, obj_id, box=np.array([x0, y0, x1, y1], np.float32))
        self.check(ours, theirs)
        return ours

    def mask(self, frame, obj_id, mask):
        ours = self.session.add_mask(frame, obj_id, mask)
        theirs = self.ref.add_new_mask(self.state, frame, obj_id, mask)
        self.check(ours, theirs)
        return ours

    def propagate(self, reverse=False, start=None):
        ours = list(self.session.propagate(start=start, direction="backward" if reverse else "forward"))
        with float32_memory(self.ref):
            theirs = list(self.ref.propagate_in_video(self.state, start_frame_idx=start, reverse=reverse))
        assert [r.frame for r in ours] == [t[0] for t in theirs]
        for o, t in zip(ours, theirs, strict=True):
            self.check(o, t)
        return ours

    def check(self, ours, theirs):
        frame, obj_ids, masks = theirs
        assert ours.frame == frame
        assert ours.obj_ids == tuple(obj_ids)
        ref_logits = masks[:, 0].float()
        got = torch.from_numpy(ours.logits)
        for k in range(len(obj_ids)):
            err = relative_error(got[k], ref_logits[k])
            assert err <= 1e-4, f"frame {frame}, object {obj_ids[k]}: relative error {err:.2e}"
            agree = ((got[k] > 0) == (ref_logits[k] > 0)).float().mean().item()
            assert agree >= 0.999, f"frame {frame}, object {obj_ids[k]}: only {agree:.4%} of mask pixels agree"
        self.compared += 1

    def reference_scores(self, obj_id):
        """The reference's object-score logit per tracked frame of one object."""
        idx = self.state["obj_id_to_idx"][obj_id]
        outs = self.state["output_dict_per_obj"][idx]
        merged = {**outs["non_cond_frame_outputs"], **outs["cond_frame_outputs"]}
        return {t: float(o["object_score_logits"].item()) for t, o in sorted(merged.items())}
