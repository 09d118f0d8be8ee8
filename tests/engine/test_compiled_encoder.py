"""The image encoder's blocks run compiled (``CompiledBlocks``): one graph per block kind, the same features as the
plain blocks, one static shape (a stack's last block padded), the compile paid when a session opens.

On the CPU the blocks are traced by dynamo with a backend that counts the graphs and runs them as traced (no C
compiler needed); ``tests/engine/test_cuda_fast_path.py`` checks Inductor's kernels on the GPU.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.engine import session as session_module
from napari_sam2.engine.features import FeatureCache
from napari_sam2.engine.frames import FramePreparer
from napari_sam2.model import build_sam2
from napari_sam2.model.compiled_blocks import CompiledBlocks, compile_wanted
from tests.engine.reference_session import blob_frames, with_objects_present

SIZE = 256


class CountingBackend:
    """A ``torch.compile`` backend that records each graph dynamo hands it and runs the graph as traced."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("no compiler here")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(11)
    return with_objects_present(build_sam2("sam2.1_hiera_tiny", image_size=SIZE)).eval()


@pytest.fixture(scope="module")
def frames():
    return blob_frames(14, size=96)


def distinct_block_kinds(model) -> int:
    """Kinds of blocks, read off the trunk's configuration (sizes, heads, window, pooling): blocks of one kind see
    tokens of one shape."""
    blocks = model.image_encoder.trunk.blocks
    return len({(b.dim, b.dim_out, b.attn.num_heads, b.window_size, b.q_stride) for b in blocks})


def test_compiled_blocks_give_the_plain_blocks_features_with_one_graph_per_block_kind(model):
    backend = CountingBackend()
    runner = CompiledBlocks(backend=backend)
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = model.encode_image(images)
        compiled = model.encode_image(images, runner)
        again = model.encode_image(images, runner)
    kinds = distinct_block_kinds(model)
    assert 1 < kinds < len(model.image_encoder.trunk.blocks)  # the test means something: blocks share kinds
    assert backend.graphs == kinds and len(runner.compiled_kinds) == kinds and not runner.failed
    for got in (compiled, again):
        for a, b in zip((plain.vision, plain.vision_pos, *plain.high_res),
                        (got.vision, got.vision_pos, *got.high_res), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_a_new_token_shape_compiles_again_and_keeps_the_first_graphs(model):
    backend = CountingBackend()
    runner = CompiledBlocks(backend=backend)
    with torch.inference_mode():
        model.encode_image(torch.zeros(2, 3, SIZE, SIZE), runner)
        first = backend.graphs
        model.encode_image(torch.zeros(1, 3, SIZE, SIZE), runner)
        model.encode_image(torch.zeros(2, 3, SIZE, SIZE), runner)
    assert backend.graphs == 2 * first


def test_blocks_that_fail_to_compile_run_plain_with_one_warning(model, caplog):
    runner = CompiledBlocks(backend=failing_backend)
    images = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), caplog.at_level(logging.WARNING):
        plain = model.encode_image(images)
        got = model.encode_image(images, runner)
        model.encode_image(images, runner)
    assert runner.failed
    warnings = [r for r in caplog.records if "image encoder's blocks" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler here" in warnings[0].getMessage()
    assert torch.equal(got.vision, plain.vision) and torch.equal(got.high_res[0], plain.high_res[0])


def test_with_compiled_blocks_the_last_short_block_is_padded_with_blank_images_whichever_frame_asks(model, frames):
    """14 frames in blocks of 4: the last block (12, 13) is encoded as 4 images — the two frames, then two blank
    ones — so every encoder call has one shape; frame 13's features are the same whether 12 or 13 asked."""
    shapes = []

    def cache():
        runner = CompiledBlocks(backend=CountingBackend())
        cache = FeatureCache(model, FramePreparer(frames, SIZE), torch.device("cpu"), batch_size=4, run_block=runner)
        encode = cache.model.encode_image
        cache.model = type("Spy", (), {"encode_image": lambda self, images, run: (shapes.append(images.shape[0]),
                                                                                 encode(images, run))[1],
                                       "image_size": SIZE})()
        return cache

    with torch.inference_mode():
        by_12, by_13 = cache().get(12), cache()
        got_13 = by_13.get(13)
        first = cache().get(1)
        preparer = FramePreparer(frames, SIZE)
        loaded = torch.stack([preparer.load(12), preparer.load(13)])
        padded = torch.cat([preparer.finish(loaded), torch.zeros(2, 3, SIZE, SIZE)])
        want = model.encode_image(padded)
    assert shapes == [4, 4, 4]
    assert 12 in by_13 and by_13.encoded_frames == 2
    torch.testing.assert_close(got_13.vision, want.vision[1:2], rtol=1e-5, atol=1e-5)
    assert torch.equal(by_13.get(12).vision, by_12.vision)
    assert first.vision.shape[0] == 1


def test_a_session_compiling_its_encoder_compiles_when_it_opens_and_tracks_like_the_plain_one(model, frames,
                                                                                            monkeypatch):
    backend = CountingBackend()
    monkeypatch.setattr(session_module, "CompiledBlocks", functools.partial(CompiledBlocks, backend=backend))

    def run(compile_encoder):
        session = Session(model, frames, device="cpu", encoder_batch_size=4, compile_encoder=compile_encoder)
        session.wait_until_ready()
        assert not session.preparing
        opened = (backend.graphs, session.features.encoded_frames)
        session.add_points(5, 1, [[40, 40]], [1])
        session.add_points(13, 2, [[60, 55]], [1])
        results = {r.frame: r for r in session.propagate(start=0)}
        session.close()
        return opened, results

    (graphs_at_open, encoded_at_open), compiled = run(True)
    assert graphs_at_open == distinct_block_kinds(model) and encoded_at_open == 0
    graphs_after = backend.graphs
    _, plain = run(False)
    assert backend.graphs == graphs_after
    assert compiled.keys() == plain.keys() == set(range(len(frames)))
    for frame in plain:
        a, b = plain[frame].masks, compiled[frame].masks
        assert a.any(), frame  # both objects are found: the comparison is not of empty masks
        assert np.mean(a != b) < 1e-3, frame


def test_sessions_compile_their_encoder_by_default_on_cuda_only(monkeypatch):
    monkeypatch.delenv("NAPARI_SAM2_COMPILE", raising=False)
    assert compile_wanted(torch.device("cuda")) and not compile_wanted(torch.device("cpu"))
    monkeypatch.setenv("NAPARI_SAM2_COMPILE", "0")
    assert not compile_wanted(torch.device("cuda"))


def test_the_encoder_graphs_static_input_gives_the_encoders_features_and_is_shared_per_model(model):
    """Without CUDA the encoder graph runs its static-input code uncaptured: each frame's features equal the
    encoder's, in memory of their own; one graph per model and block shape; another shape is refused."""
    from napari_sam2.engine.encoder_graph import shared_encoder_graph

    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        graph = shared_encoder_graph(model, None, images, capture=False)
        assert shared_encoder_graph(model, None, images.clone(), capture=False) is graph
        graph.encode(torch.zeros_like(images))
        rows = graph.encode(images)
        want = model.encode_image(images)
        with pytest.raises(ValueError, match="encoder graph"):
            graph.encode(images[:1])
    assert len(rows) == 2 and not graph.captured
    for i, row in enumerate(rows):
        assert torch.equal(row.vision, want.vision[i : i + 1])
        assert torch.equal(row.high_res[1], want.high_res[1][i : i + 1])
        assert row.vision.untyped_storage().data_ptr() != rows[1 - i].vision.untyped_storage().data_ptr()


def test_a_model_no_longer_used_is_freed_with_its_encoder_graph():
    """The registry of encoder graphs does not keep a model (and a graph's memory pool) alive: once the sessions and
    the caller drop the model, it is collected."""
    import gc
    import weakref

    from napari_sam2.engine import encoder_graph

    torch.manual_seed(2)
    small = build_sam2("sam2.1_hiera_tiny", image_size=SIZE).eval()
    with torch.inference_mode():
        graph = encoder_graph.shared_encoder_graph(small, None, torch.zeros(1, 3, SIZE, SIZE), capture=False)
        graph.encode(torch.zeros(1, 3, SIZE, SIZE))
    gone = weakref.ref(small)
    assert small in encoder_graph._GRAPHS
    del small, graph
    gc.collect()
    assert gone() is None


def test_an_encoder_graph_is_shared_only_by_runners_that_compute_the_same(model):
    """The process's encoder graph keeps the runner it was made with: a runner whose compile failed (plain blocks)
    must not hand its graph to a runner that compiles, nor two backends share one; a failed runner and no runner
    do (both run the blocks plain)."""
    from napari_sam2.engine.encoder_graph import shared_encoder_graph

    images = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    failed = CompiledBlocks(backend=failing_backend)
    with torch.inference_mode():
        failed_graph = shared_encoder_graph(model, failed, images, capture=False)
        failed_graph.encode(images)
        assert failed.failed
        backend = CountingBackend()
        working = CompiledBlocks(backend=backend)
        graph = shared_encoder_graph(model, working, images, capture=False)
        graph.encode(images)
        other = shared_encoder_graph(model, CompiledBlocks(backend=CountingBackend()), images, capture=False)
        plain = shared_encoder_graph(model, None, images, capture=False)
    assert graph is not failed_graph and working.compiled_kinds and backend.graphs == distinct_block_kinds(model)
    assert other is not graph
    assert plain is shared_encoder_graph(model, failed, images, capture=False)
