"""The training loop on the CPU: the loss falls, every module learns, a resumed run equals an uninterrupted one, and
the written checkpoint loads strictly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.model import build_sam2
from napari_sam2.train import ClipSampler, synthetic_stack
from napari_sam2.train.clips import collate_clips
from napari_sam2.train.interaction import InteractionRecipe, PromptSchedule
from napari_sam2.train.loop import Trainer, TrainSettings, state_path_for, to_model_input, write_checkpoint
from napari_sam2.train.optim import OptimiserSettings, parameter_groups

SIZE = 256


@pytest.fixture(scope="module")
def stacks():
    rng = np.random.default_rng(0)
    return [synthetic_stack(rng, kind="nuclei", num_frames=8, size=96, dtype=np.uint16) for _ in range(3)]


def _trainer(stacks, out, steps, *, clip_len=2, lr=1e-3, seed=0, save_every=0, batch_size=1, max_objects=1):
    """A trainer of the (small) starter architecture at 256 px on tiny clips, so that a step takes seconds."""
    torch.manual_seed(0)
    model = build_sam2("starter", image_size=SIZE)
    settings = TrainSettings(steps=steps, batch_size=batch_size, clip_len=clip_len, max_objects=max_objects,
                             crop_size=96, seed=seed, log_every=1, val_every=0, save_every=save_every)
    sampler = ClipSampler(stacks, clip_len=clip_len, max_objects=max_objects, crop_size=96, seed=seed)
    optimiser = OptimiserSettings(lr=lr, vision_lr=lr, total_steps=steps, warmup_steps=0)
    return Trainer(model, sampler, settings, optimiser, out, device=torch.device("cpu"))


def test_layerwise_decay_and_no_weight_decay_on_biases_and_norms():
    model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE)
    groups = parameter_groups(model, OptimiserSettings(lr=1e-3, vision_lr=1e-3, total_steps=10, layer_decay=0.5))
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    trunk = model.image_encoder.trunk
    assert lr_of[id(trunk.blocks[0].attn.qkv.weight)][0] < lr_of[id(trunk.blocks[-1].attn.qkv.weight)][0]
    assert lr_of[id(trunk.blocks[-1].attn.qkv.weight)][0] < lr_of[id(model.sam_mask_decoder.conv_s0.weight)][0]
    assert lr_of[id(trunk.blocks[3].attn.qkv.bias)][1] == 0.0
    assert lr_of[id(trunk.blocks[3].norm1.weight)][1] == 0.0
    assert lr_of[id(trunk.blocks[3].attn.qkv.weight)][1] == pytest.approx(0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_loss_falls_over_a_few_steps(stacks, tmp_path):
    trainer = _trainer(stacks, tmp_path / "m.pt", steps=6, lr=3e-4)
    batch = collate_clips([trainer.sampler.clip(0)])
    losses = []
    for _ in range(6):  # the same batch and interaction every step: the loss must go down
        losses.append(float(trainer.train_step(0, batch).total(trainer.loss_weights).detach()))
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2]), losses


def test_gradients_reach_every_trainable_module(stacks, tmp_path):
    trainer = _trainer(stacks, tmp_path / "m.pt", steps=1, clip_len=3, batch_size=2, max_objects=2)
    model = trainer.model
    frames, masks, valid = collate_clips([trainer.sampler.clip(i) for i in range(2)])
    images, masks = to_model_input(frames, masks, SIZE)
    masks[:, 1, 1] = False  # an object absent on a prompted frame: the no-object pointer and memory embedding
    from napari_sam2.train.forward import SimulatedUser, forward_clips

    reached: set[str] = set()
    recipe = InteractionRecipe()
    for schedule in (PromptSchedule((0, 1), False, False, (), 0),  # mask prompts (one empty)
                     PromptSchedule((0, 2), True, True, (0, 1), 2),  # box, corrections on a tracked frame
                     PromptSchedule((0,), True, False, (0,), 1)):  # one click
        model.zero_grad(set_to_none=True)
        user = SimulatedUser(schedule, torch.Generator().manual_seed(1), recipe)
        model.train()
        results = forward_clips(model, images, masks, schedule, user)
        trainer._loss(results, masks, valid).total(trainer.loss_weights).backward()
        reached |= {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # A candidate mask's hypernetwork learns when its candidate has the lowest loss (Meta's rule), so with random
    # weights not every candidate wins in three passes; no_mem_pos_enc is unused by SAM 2.1's design (the learned
    # no-memory embedding is added directly), at inference too.
    candidates = [n for n, _ in model.named_parameters() if ".output_hypernetworks_mlps." in n]
    assert {n.split(".")[2] for n in reached & set(candidates)} >= {"0"}
    assert len({n.split(".")[2] for n in reached & set(candidates)}) >= 2
    missing = sorted(n for n, _ in model.named_parameters()
                     if n not in reached and n not in candidates and n != "no_mem_pos_enc")
    assert not missing, missing


def test_resumed_run_equals_uninterrupted_run(stacks, tmp_path):
    whole = _trainer(stacks, tmp_path / "whole.pt", steps=3)
    whole.run()
    first = _trainer(stacks, tmp_path / "split.pt", steps=3)
    first.run(should_stop=lambda: first.run_state.step >= 2)  # stops (and saves) after step 2
    assert state_path_for(tmp_path / "split.pt").is_file()
    second = _trainer(stacks, tmp_path / "split.pt", steps=3)
    assert second.try_resume() and second.run_state.step == 2
    second.run()
    a = torch.load(tmp_path / "whole.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    initial = build_sam2("starter", image_size=SIZE).state_dict()
    assert not all(torch.equal(a[k], initial[k]) for k in a)  # training changed the weights


def test_written_checkpoint_loads_strictly_into_build_sam2(tmp_path):
    model = build_sam2("starter", image_size=SIZE)
    write_checkpoint(model, tmp_path / "m.pt", "float16")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert list(payload) == ["model"] and payload["model"]["no_mem_embed"].dtype == torch.float16
    loaded = build_sam2("starter", tmp_path / "m.pt", image_size=SIZE)
    ours = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == ours[k].dtype
        assert torch.allclose(v, ours[k], atol=1e-3, rtol=1e-3), k


def test_written_checkpoint_of_a_published_model_loads_strictly_into_metas_model(tmp_path):
    from tests.reference import build_reference_predictor

    torch.manual_seed(5)
    model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE)
    write_checkpoint(model, tmp_path / "tuned.pt")
    reference = build_reference_predictor(image_size=SIZE, seed=0)
    reference.load_state_dict(torch.load(tmp_path / "tuned.pt", weights_only=True)["model"], strict=True)
    for key in ("sam_mask_decoder.iou_token.weight", "image_encoder.trunk.blocks.3.attn.qkv.weight"):
        assert torch.equal(reference.state_dict()[key], model.state_dict()[key])
