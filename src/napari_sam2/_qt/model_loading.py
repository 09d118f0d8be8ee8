"""Choosing and loading the SAM 2 model, in a background worker: a published model (downloaded on first use, with
progress), a local checkpoint file, or an injected factory (tests, custom models).

Importing this module does not import torch; :func:`load_model_steps` imports it in the worker thread.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The published models (``napari_sam2.model.MODEL_NAMES``, repeated here so that building the widget does not
# import torch; a test checks the two lists agree). Approximate checkpoint sizes, for the download progress bar.
MODEL_NAMES = (
    "sam2.1_hiera_tiny",
    "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus",
    "sam2.1_hiera_large",
    "sam2_hiera_tiny",
    "sam2_hiera_small",
    "sam2_hiera_base_plus",
    "sam2_hiera_large",
)
CHECKPOINT_MB = {"tiny": 156, "small": 184, "base_plus": 324, "large": 898}
# Models whose weights ship inside the package (``napari_sam2.model``'s own configurations, loaded offline by
# name), with where the weights lie relative to the package; offered once the file is there.
SHIPPED_MODELS = {"starter": ("model", "weights", "starter.pt")}
LOCAL_FILE = "local checkpoint file…"
DEVICES = ("auto", "cuda", "mps", "cpu")
IMAGE_SIZES = (256, 512, 1024)

ModelFactory = Callable[..., Any]  # returns a SAM2Model; may take ``image_size``


def shipped_weights(name: str) -> Path:
    import napari_sam2

    return Path(napari_sam2.__file__).parent.joinpath(*SHIPPED_MODELS[name])


def offered_models() -> list[str]:
    """The model menu: the shipped models whose weights are installed (they work offline), then the published."""
    return [name for name in SHIPPED_MODELS if shipped_weights(name).is_file()] + list(MODEL_NAMES)


def what_works_offline(failed: str = "") -> str:
    """One sentence on what loads without the internet, for a failed load's message."""
    shipped = [f"the shipped model “{n}”" for n in offered_models() if n in SHIPPED_MODELS and n != failed]
    local = f"choose “{LOCAL_FILE}” and a SAM 2 .pt file you downloaded (e.g. sam2.1_hiera_tiny.pt)"
    return "What works offline: " + " or ".join([*shipped, local]) + ", then press Start."


def load_failure_message(choice: ModelChoice, err: BaseException) -> str:
    """What failed when ``choice`` did not load, and what works instead (one message for the widget)."""
    kind = type(err).__name__
    if kind == "CheckpointUnavailable":  # not cached and not downloadable (offline, or no huggingface_hub)
        hint = what_works_offline(choice.name)
    elif kind == "CheckpointError":
        hint = "Choose a SAM 2 checkpoint (.pt) or another model, then press Start."
    else:
        hint = "Change the model, the device or the image size, then press Start."
    return f"Could not load {choice.describe()} — {kind}: {err}. The session was stopped. {hint}"


def auto_image_size(device_type: str, frame_shape: tuple[int, int], native: int = 1024) -> int:
    """The image size "auto" stands for: 1024 on a CUDA GPU, 512 elsewhere (on 2 CPU cores a frame took ≈ 4.5 s at
    512 and 12–17 s at 1024); never more than the smallest offered size that holds the frame's larger side
    (enlarging a small frame further costs time and adds nothing), nor than the model's own size."""
    preferred = 1024 if device_type == "cuda" else 512
    larger = max(int(s) for s in frame_shape)
    fits = min((s for s in IMAGE_SIZES if s >= larger), default=IMAGE_SIZES[-1])
    return max(IMAGE_SIZES[0], min(preferred, fits, native))


@dataclass(frozen=True)
class ModelChoice:
    """A model to load: a published or shipped ``name``; or ``checkpoint``, a local file (its model is recognised
    from its keys); or ``factory``, a callable that returns a ``SAM2Model`` (named ``name`` in the widget).
    ``image_size``: the input size (256, 512, 1024); None: :func:`auto_image_size`. ``tiling``: "auto", "on" or
    "off" — track at native resolution in tiles of the input size (``engine.tiles.choose_tiling``; "auto" knows no
    object size when the session starts, so it tiles frames at least 4 × the input)."""

    name: str
    checkpoint: Path | None = None
    factory: ModelFactory | None = None
    image_size: int | None = None
    tiling: str = "off"

    def describe(self) -> str:
        if self.checkpoint is not None:
            return f"checkpoint {self.checkpoint}"
        return self.name


@dataclass(frozen=True)
class LoadProgress:
    """A step of loading: ``done``/``total`` (total 0: unknown) and a message for the activity dock."""

    message: str
    done: int = 0
    total: int = 0


def expected_megabytes(name: str) -> int:
    for size, mb in CHECKPOINT_MB.items():
        if name.endswith(size):
            return mb
    return 0


def _downloaded_bytes(folder: Path, since: float) -> int:
    """Bytes written under ``folder`` since ``since`` (huggingface_hub writes ``*.incomplete`` files there)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            if stat.st_mtime >= since:
                total += stat.st_size
    return total


def _fetch_with_progress(name: str, cache_dir: Path | None) -> Iterator[LoadProgress | Path]:
    """Yield download progress while ``fetch_checkpoint`` runs in a helper thread; finally yield the path."""
    from napari_sam2.model import fetch_checkpoint
    from napari_sam2.model.hub import cached_checkpoint, default_cache_dir

    folder = Path(cache_dir or default_cache_dir())
    found = cached_checkpoint(name, folder)
    if found is not None:
        yield found
        return
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["path"] = fetch_checkpoint(name, folder)
        except BaseException as err:  # re-raised in the worker thread below
            outcome["error"] = err

    start = time.time() - 1.0
    thread = threading.Thread(target=fetch, name="napari-sam2-download", daemon=True)
    thread.start()
    total = expected_megabytes(name)
    while thread.is_alive():
        done = _downloaded_bytes(folder, start) // (1 << 20) if folder.exists() else 0
        yield LoadProgress(f"downloading {name} ({done} of ~{total} MB)", min(done, total), total)
        thread.join(0.25)
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["path"]


def _factory_takes_image_size(factory: ModelFactory) -> bool:
    try:
        return "image_size" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def load_model_steps(
    choice: ModelChoice, cache_dir: Path | None = None, device_type: str = "cpu", frame_shape: tuple[int, int] = (0, 0)
) -> Iterator[LoadProgress | Any]:
    """Load ``choice``, yielding :class:`LoadProgress` steps and finally the model (a ``SAM2Model``), at
    ``choice.image_size`` or the automatic size for ``device_type`` and frames of ``frame_shape`` (H, W).

    Raises ``CheckpointUnavailable`` (not cached and not downloadable: the message says what to do) or
    ``CheckpointError`` (a file that is not a SAM 2 checkpoint).
    """
    yield LoadProgress("importing torch and SAM 2")
    if choice.factory is not None:
        yield LoadProgress(f"building {choice.name}")
        if _factory_takes_image_size(choice.factory):
            yield choice.factory(image_size=choice.image_size or auto_image_size(device_type, frame_shape))
        else:  # a model of fixed size
            yield choice.factory()
        return
    from napari_sam2.model import CheckpointError, build_sam2, get_config
    from napari_sam2.model.build import guess_model_name
    from napari_sam2.model.checkpoint import read_state_dict

    if choice.checkpoint is not None:
        yield LoadProgress(f"reading {choice.checkpoint.name}")
        name = guess_model_name(read_state_dict(choice.checkpoint))
        if name is None:
            known = ", ".join(MODEL_NAMES)
            raise CheckpointError(f"{choice.checkpoint} does not match any of the SAM 2 models {known}")
        path = choice.checkpoint
    else:
        name, path = choice.name, None
        for step in _fetch_with_progress(name, cache_dir):
            if isinstance(step, LoadProgress):
                yield step
            else:
                path = step
    size = choice.image_size or auto_image_size(device_type, frame_shape, get_config(name).image_size)
    yield LoadProgress(f"loading {name} at image size {size}")
    yield build_sam2(name, path, image_size=size)


def session_steps(choice: ModelChoice, frames: Any, device: str = "auto") -> Iterator[LoadProgress]:
    """Load ``choice`` (yielding progress) and return an engine ``Session`` over ``frames`` on ``device``."""
    from napari_sam2.engine.device import pick_device

    target = pick_device(None if device == "auto" else device)
    model = None
    for step in load_model_steps(choice, device_type=target.type, frame_shape=tuple(frames.shape2d)):
        if isinstance(step, LoadProgress):
            yield step
        else:
            model = step
    from napari_sam2.engine.tiled_session import make_session

    session = make_session(model, frames, tiling=choice.tiling, device=target)
    tiles = getattr(session, "layout", None)
    where = f" in {len(tiles)} tiles at native resolution" if tiles is not None else ""
    yield LoadProgress(f"starting the session on {target}{where}")
    if getattr(session, "preparing", False):
        yield LoadProgress("compiling the image encoder for this GPU (the first time on a machine about a minute, "
                           "then seconds)")
        session.wait_until_ready()
    return session


def random_weights_factory(name: str = "sam2.1_hiera_tiny", seed: int = 0) -> ModelFactory:
    """A factory of a randomly initialised model at the image size asked for (for tests and UI demos: its masks
    mean nothing)."""

    def build(image_size: int | None = None) -> Any:
        import torch

        from napari_sam2.model import build_sam2

        torch.manual_seed(seed)
        return build_sam2(name, image_size=image_size)

    return build
