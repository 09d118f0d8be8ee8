"""The propagation loop of a ``segment`` run: write each frame's labels, save the resume state, stop cleanly.

Resume rule. After a frame's labels are written, the engine's state is saved now and then with ``next_frame`` set
to the frame after it (``Session.save_state``: prompts, conditioning frames and the memories that frame reads);
a re-run loads it and propagates on from there in the same pass. Frames written after the last saved state are
computed again and written with the same values. A "both" run's backward pass starts at the first prompted frame
and reads memories of the forward pass's first frames after it: that "seed" state is saved once, when the forward
pass has computed them, and the backward pass always starts from it (reloaded, also in a process that ran the
whole forward pass, so that every run takes the same path). A pass continued at frame ``k`` computes ``k`` first —
frame 0 of a backward pass included — and the runner checks that each pass yields its frames in order up to its
last one, so a pass that ends early stops the run instead of leaving frames unwritten.

How often: every frame while a save costs under 1/20 of the computing time since the previous save, less often
otherwise (``--save-every N`` fixes it); on SIGINT or SIGTERM the state is saved at the next frame boundary.
"""

from __future__ import annotations

import io
import queue
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any

from napari_sam2.cli.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted
from napari_sam2.cli.progress import Progress
from napari_sam2.cli.run_record import RunRecord

SAVE_COST_RATIO = 20  # adaptive saving: compute time between saves ≥ 20 × the cost of one save


class SaveCadence:
    """When to save the resume state: every ``every`` frames, or adaptively (``every=None``)."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self.last_cost = 0.0
        self.frames = 0
        self.compute_seconds = 0.0

    def frame_done(self, seconds: float) -> None:
        self.frames += 1
        self.compute_seconds += seconds

    def due(self) -> bool:
        if self.every is not None:
            return self.frames >= self.every
        return self.compute_seconds >= SAVE_COST_RATIO * self.last_cost

    def saved(self, cost: float) -> None:
        self.last_cost, self.frames, self.compute_seconds = cost, 0, 0.0


class BackgroundWriter:
    """Merges frame results into the label store in a thread, in order, while the next frames compute.

    A write error is raised by the next ``put`` or ``flush``. A result is queued as it is: the thread reads its
    owner map (``FrameResult.owners``: 2 bytes a pixel, copied off the GPU while the next frame computes), and its
    float logits only where the merge needs them (an object painted by hand on that frame).
    """

    def __init__(self, view: Any, depth: int = 2) -> None:
        self.view = view
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="napari-sam2-labels", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    write = self.view.write_sparse_result if len(item) == 4 else self.view.write_result
                    write(*item)
            except BaseException as exc:  # handed to the main thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, result: Any) -> None:
        self._raise()
        if hasattr(result, "crops"):  # a tiled session's result: crops in boxes, never (K, H, W)
            self._queue.put((result.frame, result.obj_ids, result.boxes, result.crops))
        else:
            self._queue.put((result.frame, result.obj_ids, result))

    def flush(self) -> None:
        """Wait until every queued frame is written."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def pass_steps(direction: str, start: int, num_frames: int) -> int:
    """How many frames a pass from ``start`` yields."""
    return num_frames - start if direction == "forward" else start + 1


class Runner:
    """Runs the passes of ``record`` over ``session``, writing results through ``view`` (a label-store FrameView)."""

    def __init__(
        self,
        session: Any,
        view: Any,
        record: RunRecord,
        progress: Progress,
        cadence: SaveCadence,
        *,
        lost_patience: int | None = None,
        auto: Any = None,
    ) -> None:
        self.session = session
        self.auto = auto  # an AutoRun for --auto: frames come from its track_all
        self.lost_patience = lost_patience
        self.view = view
        self.record = record
        self.progress = progress
        self.cadence = cadence
        self.stop_signal: int | None = None
        self.writer = BackgroundWriter(view)

    # ------------------------------------------------------------------------------------------ progress
    @property
    def passes(self) -> list[str]:
        return self.record.data["passes"]

    def steps_done(self) -> int:
        """Frames yielded so far over all passes, as of the record."""
        data, n = self.record.data, self.session.num_frames
        start = data["start"]
        done = sum(pass_steps(d, start, n) for d in self.passes[: data["pass"]])
        if data["pass"] < len(self.passes) and data["next_frame"] is not None:
            done += abs(data["next_frame"] - start)
        return done

    def total_steps(self) -> int:
        return sum(pass_steps(d, self.record.data["start"], self.session.num_frames) for d in self.passes)

    # ------------------------------------------------------------------------------------------ signals
    @contextmanager
    def _graceful_stop(self):
        """SIGINT / SIGTERM: finish the frame, save, stop. A second signal acts at once (the default)."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, _frame):
            self.stop_signal = signum
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.progress.message("napari-sam2: stopping after this frame and saving progress "
                                  "(press Ctrl-C again to stop at once)")

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------------------------------ states
    def _save(self, field: str, next_frame: int, reverse: bool) -> dict[str, Any]:
        state = io.BytesIO()  # straight into the store: no temporary file elsewhere that could fill another disk
        self.session.save_state(state, next_frame=next_frame, reverse=reverse)
        return self.record.write_blob(f"{field}_", state.getvalue())

    def save_state(self, next_frame: int, reverse: bool) -> None:
        """Save the state for continuing this pass at ``next_frame`` and point the record at it."""
        self.writer.flush()  # the labels of every frame before next_frame are on disk before the state says so
        began = time.monotonic()
        ref = self._save("state", next_frame, reverse)
        cost = time.monotonic() - began
        data = self.record.data
        old = data["state"]
        data.update(state=ref, next_frame=next_frame, state_bytes=ref["size"], saves=data.get("saves", 0) + 1,
                    save_seconds=round(data.get("save_seconds", 0.0) + cost, 4))
        if self.auto is not None:
            self.auto.save_into(data)
        data["frames_written"] = self.steps_done()
        self.record.save()
        if old and old != data["seed"]:
            self.record.drop_blob(old)
        self.cadence.saved(time.monotonic() - began)

    def _save_seed(self) -> None:
        start = self.record.data["start"]
        self.record.data["seed"] = self._save("seed", start, True)
        self.record.save()

    def _seed_frame(self) -> int | None:
        """The forward-pass frame after which the backward pass's seed can be saved (None: no seed needed)."""
        if self.passes != ["forward", "backward"] or self.record.data["seed"] is not None:
            return None
        from napari_sam2.engine.persistence import memory_window

        start, last = self.record.data["start"], self.session.num_frames - 1
        return min(max(memory_window(self.session, start, True), default=start), last)

    # ------------------------------------------------------------------------------------------ passes
    def run(self) -> None:
        """Run the remaining passes; raises :class:`Interrupted` after saving when a signal asked to stop."""
        try:
            with self._graceful_stop():
                while self.record.data["pass"] < len(self.passes):
                    self._run_pass()
        finally:
            self.writer.close()
            self.progress.close()
        self.record.data.update(complete=True, state=None, seed=None, next_frame=None,
                                frames_written=self.total_steps())
        self.record.data.pop("auto_state", None)
        self.record.save()
        self.record.remove_unreferenced()

    def _run_pass(self) -> None:
        data = self.record.data
        direction = self.passes[data["pass"]]
        reverse = direction == "backward"
        begin = data["next_frame"] if data["next_frame"] is not None else data["start"]
        last = 0 if reverse else self.session.num_frames - 1
        seed_at = None if reverse else self._seed_frame()
        self.progress.set_label(f"{direction:>8}")
        step = -1 if reverse else 1
        began = time.monotonic()
        frame = None
        if self.auto is not None:
            results = self.auto.steps(self.session, begin)
        else:
            results = self.session.propagate(start=begin, direction=direction, lost_patience=self.lost_patience)
        for result in results:
            expected = begin if frame is None else frame + step
            if result.frame != expected:
                raise RuntimeError(f"the engine's {direction} pass gave frame {result.frame} where frame {expected} "
                                   "was due (a bug); the labels written so far are kept")
            self.writer.put(result)
            frame = result.frame
            self.cadence.frame_done(time.monotonic() - began)
            self.progress.advance()
            if frame == seed_at:
                self._save_seed()
            if frame == last:
                break
            if self.stop_signal is not None or self.cadence.due():
                self.save_state(frame + step, reverse)
            if self.stop_signal is not None:
                self._stop(frame)
            began = time.monotonic()
        if frame != last:  # a pass that ends early would leave frames unwritten and still say "done"
            raise RuntimeError(f"the engine's {direction} pass from frame {begin} ended at frame {frame}, before frame "
                               f"{last} (a bug); the labels written so far are kept")
        self._next_pass()

    def _next_pass(self) -> None:
        self.writer.flush()
        data = self.record.data
        data["pass"] += 1
        old = data["state"]
        if data["pass"] < len(self.passes):  # the backward pass of "both" continues from the seed
            data.update(state=data["seed"], next_frame=data["start"])
            # reloaded even when this process ran the whole forward pass: a resumed process holds only the
            # memories near where it resumed, and both must go on from the same state
            self.session.load_state(self.record.read_blob(data["seed"]))
        else:
            data.update(state=None, next_frame=None)
        data["frames_written"] = self.steps_done()
        self.record.save()
        if old and old != data["seed"] and old != data["state"]:
            self.record.drop_blob(old)
        if self.stop_signal is not None and data["pass"] < len(self.passes):
            self._stop(data["start"])

    def _stop(self, frame: int) -> None:
        self.progress.close()
        code = EXIT_SIGTERM if self.stop_signal == signal.SIGTERM else EXIT_SIGINT
        name = "SIGTERM" if code == EXIT_SIGTERM else "Ctrl-C"
        raise Interrupted(
            f"stopped by {name} after frame {frame} ({self.steps_done()} of {self.total_steps()} frames done); "
            "progress is saved — run the same command again to continue", code)
