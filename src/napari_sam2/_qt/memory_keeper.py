"""The engine's tracking memory of a widget session, saved into its label store and restored on reopening, so that a
reopened session answers a correction exactly as the live session would have (replaying the prompts alone would
not: the engine would no longer know which frames it had tracked, nor their memories).

A snapshot is captured in the task worker — the only thread that touches the engine session — which is cheap: it
refers to the session's tensors. One background thread per label-store view serialises and writes the newest
snapshot (a burst of clicks costs one write; the interface never waits for the disk). The saved state records what
it belongs to (model, image size, image, channel, the prompts it holds); a reopened session loads it only if all of
that matches, and otherwise replays the prompts and says why. Torch is imported in worker threads only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam2._qt.prompts import FramePrompt, Key
from napari_sam2.io.session_memory import SavedMemory

_KEEPERS: dict[tuple[Path, str], MemoryKeeper] = {}
_KEEPERS_LOCK = threading.Lock()
FLUSH_TIMEOUT = 300.0  # seconds a reopened session waits for the last session's final save
SAVE_COST_RATIO = 20  # during propagation: save when the time since the last save is ≥ 20 × what a save costs
_ABOUT_NAMES = {"model": "model", "image_size": "image size", "weights": "model weights", "image": "image",
                "channel": "channel", "prompts": "prompts"}


def prompts_digest(prompts: Iterable[tuple[Key, FramePrompt]]) -> str:
    """A fingerprint of every (object, frame) prompt: equal exactly when the prompts are."""
    digest = hashlib.sha1()
    for (obj_id, frame), prompt in sorted(prompts, key=lambda item: item[0]):
        digest.update(f"{int(obj_id)},{int(frame)}:".encode())
        digest.update(np.ascontiguousarray(prompt.points, np.float64).tobytes())
        digest.update(np.ascontiguousarray(prompt.labels, np.int8).tobytes())
        digest.update(repr(None if prompt.box is None else tuple(float(v) for v in prompt.box)).encode())
        if prompt.mask is not None:
            mask = np.asarray(prompt.mask, bool)
            digest.update(repr(mask.shape).encode() + np.packbits(mask).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def image_fingerprint(source: Any) -> str:
    """A cheap fingerprint of the frames a session tracks: their number and the CRC of the first and last frame."""
    import zlib

    first, last = (np.ascontiguousarray(source[i]) for i in (0, len(source) - 1))
    return f"{len(source)}:{zlib.crc32(first.tobytes()):08x}:{zlib.crc32(last.tobytes()):08x}"


def weights_identity(choice: Any) -> str:
    """Which weights a ``ModelChoice`` loads: its name (random-weight and published models of one configuration
    differ by name), or a checkpoint file with its size and modification time."""
    path = getattr(choice, "checkpoint", None)
    if path is None:
        return str(choice.describe())
    try:
        stat = Path(path).stat()
    except OSError:
        return str(path)
    return f"{path} ({stat.st_size} bytes, modified {stat.st_mtime_ns})"


@dataclass(frozen=True)
class Restored:
    """What restoring found: ``loaded`` (the memory is back) and a note for the user (empty if nothing to say)."""

    loaded: bool
    note: str


def keeper_for(store_path: Path | str, view: str) -> MemoryKeeper:
    """The one keeper of a label-store view in this process (so a reopened session waits for the last writes)."""
    key = (Path(store_path).resolve(), view)
    with _KEEPERS_LOCK:
        if key not in _KEEPERS:
            _KEEPERS[key] = MemoryKeeper(SavedMemory(store_path, view))
        return _KEEPERS[key]


class MemoryKeeper:
    """Writes snapshots of an engine session's state into ``saved`` in a background thread, newest first."""

    def __init__(self, saved: SavedMemory) -> None:
        self.saved = saved
        self.on_error: Callable[[str], None] | None = None
        self.last_cost = 0.0  # seconds the last write took (serialising and writing)
        self.last_bytes = 0
        self.writes = 0
        self._cond = threading.Condition()
        self._pending: tuple[dict, dict[str, Any]] | None = None
        self._writing = False
        self._held = 0

    @property
    def idle(self) -> bool:
        """Whether no snapshot waits or is being written."""
        with self._cond:
            return self._pending is None and not self._writing

    def capture(self, session: Any, about: dict[str, Any]) -> None:
        """Snapshot ``session`` now (call it where nothing else uses the session) and write it in the background,
        replacing a snapshot still waiting. ``about``: JSON values saying what the state belongs to."""
        from napari_sam2.engine.persistence import capture_state

        own = getattr(session, "capture_state", None)  # a tiled session captures its tiles' states itself
        state = own() if own is not None else capture_state(session)
        snapshot = (state, {"model": session.model.config.name, "image_size": int(session.model.image_size), **about})
        with self._cond:
            start = self._pending is None and not self._writing
            self._pending = snapshot
            if start:
                self._writing = True
                threading.Thread(target=self._write_all, name="napari-sam2-memory", daemon=True).start()

    def hold(self) -> None:
        """A closing session will capture a last snapshot: :meth:`flush` waits for it (until :meth:`release`)."""
        with self._cond:
            self._held += 1

    def release(self) -> None:
        with self._cond:
            self._held -= 1
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every snapshot is captured (see :meth:`hold`) and written; returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._held and self._pending is None and not self._writing,
                                       timeout)

    def restore(self, session: Any, about: dict[str, Any]) -> Restored:
        """Load the saved state into ``session`` if it belongs to ``about`` (and the session's model and image
        size); otherwise leave the session as it is and say why."""
        self.flush(timeout=FLUSH_TIMEOUT)
        saved = self.saved.about()
        if saved is None:
            return Restored(False, "")
        expected = {"model": session.model.config.name, "image_size": int(session.model.image_size), **about}
        differs = [_ABOUT_NAMES.get(k, k) for k, v in expected.items() if saved.get(k) != v]
        if differs:
            return Restored(False, f"the saved tracking memory is for other {' and '.join(differs)}")
        try:
            session.load_state(io.BytesIO(self.saved.read()))
        except ValueError as err:
            return Restored(False, str(err))
        return Restored(True, "tracking memory restored")

    def _write_all(self) -> None:
        from napari_sam2.engine.persistence import write_state

        while True:
            with self._cond:
                if self._pending is None:
                    self._writing = False
                    self._cond.notify_all()
                    return
                (state, about), self._pending = self._pending, None
            began = time.monotonic()
            try:
                buffer = io.BytesIO()
                write_state(state, buffer)
                del state
                self.saved.write(buffer.getbuffer(), about)
                self.last_bytes = buffer.getbuffer().nbytes
                self.writes += 1
            except Exception as err:  # reported; the previous saved state stays valid
                self._report(f"the tracking memory was not saved: {err}")
            self.last_cost = time.monotonic() - began

    def _report(self, message: str) -> None:
        with contextlib.suppress(Exception):  # the session that asked may be gone
            if self.on_error is not None:
                self.on_error(message)


class EngineMemory:
    """One widget session's side of its engine's memory: which prompts the engine holds, whether it changed since
    the last snapshot, and what it belongs to. Its methods run in the task worker, where the engine session lives
    (:meth:`hold` and :meth:`changed`, which only count and flag, may run anywhere)."""

    def __init__(self, keeper: MemoryKeeper) -> None:
        self.keeper = keeper
        self.applied: dict[Key, FramePrompt] = {}
        self.about: dict[str, str] | None = None  # weights, image and channel; set when the session is restored
        self.dirty = False
        self._saved_at = time.monotonic()

    def restore(self, session: Any, prompts: list[tuple[Key, FramePrompt]], about: dict[str, str]) -> Restored:
        """The saved memory of a reopened session, loaded into ``session`` if it fits ``about`` and ``prompts``
        (which the caller replays otherwise)."""
        self.about = dict(about)
        self.applied = dict(prompts)
        if not prompts:
            return Restored(False, "")
        restored = self.keeper.restore(session, {**about, "prompts": prompts_digest(prompts)})
        self.dirty = not restored.loaded  # replayed prompts: a memory to save
        return restored

    def prompt_applied(self, key: Key, prompt: FramePrompt | None) -> None:
        """The engine now holds ``prompt`` (None: no prompt) for (object, frame) ``key``."""
        if prompt is None:
            self.applied.pop(key, None)
        else:
            self.applied[key] = prompt
        self.dirty = True

    def object_removed(self, obj_id: int) -> None:
        self.applied = {k: p for k, p in self.applied.items() if k[0] != obj_id}
        self.dirty = True

    def changed(self) -> None:
        """The engine's memory changed otherwise (a propagated frame)."""
        self.dirty = True

    def save(self, session: Any) -> None:
        """Snapshot ``session`` (written in the background) if it changed since the last snapshot."""
        if self.dirty:
            self._capture(session)

    def checkpoint(self, session: Any) -> None:
        """Between two propagated frames: snapshot if the last write is done and the time since it is large against
        what a write costs (so saving never slows a run much)."""
        since = time.monotonic() - self._saved_at
        if self.keeper.idle and since >= SAVE_COST_RATIO * self.keeper.last_cost:
            self._capture(session)

    def hold(self) -> None:
        """The session is closing: a reopened one waits for its last snapshot (see ``MemoryKeeper.hold``)."""
        self.keeper.hold()

    def release(self) -> None:
        self.keeper.release()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every snapshot is written."""
        return self.keeper.flush(timeout)

    def _capture(self, session: Any) -> None:
        if self.about is None:  # never restored (the model did not load): nothing to describe the state by
            return
        self.keeper.capture(session, {**self.about, "prompts": prompts_digest(self.applied.items())})
        self.dirty = False
        self._saved_at = time.monotonic()
