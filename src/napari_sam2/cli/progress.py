"""A small progress bar on stderr: redrawn in place on a terminal, a line every 10 % (or 30 s) in a log file.

``NAPARI_SAM2_LOG_STEP`` (a fraction, e.g. ``0``: every frame) sets how often a line goes to a log file; ``batch``
reads its ``segment`` runs' progress from these lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
LOG_SECONDS = 30.0
LOG_STEP = 0.1


def format_duration(seconds: float) -> str:
    """``1:05`` or ``2:03:07``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _log_step() -> float:
    try:
        return float(os.environ.get("NAPARI_SAM2_LOG_STEP", LOG_STEP))
    except ValueError:
        return LOG_STEP


class Progress:
    """Frames done out of ``total``, with the time per frame and the time left (measured in this process).

    ``done``: frames already done before this process started (a resumed run). ``enabled=False`` prints nothing.
    """

    def __init__(self, total: int, *, done: int = 0, label: str = "", stream: TextIO | None = None,
                 enabled: bool = True, unit: str = "frame") -> None:
        self.total = max(1, total)
        self.done = done
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.unit = unit
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start = time.monotonic()
        self._counted = 0
        self._last_draw = 0.0
        self._last_logged = (done / self.total, self._start)
        self.log_step = _log_step()
        self._open = False

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw(force=True)

    def advance(self, frames: int = 1) -> None:
        """``frames`` more frames are done."""
        self.done = min(self.total, self.done + frames)
        self._counted += frames
        self._draw()

    def update(self, done: int, total: int, counted: int = 0) -> None:
        """Set ``done`` of ``total`` frames, ``counted`` of them newly computed here (they set the speed)."""
        self.total = max(1, total)
        self.done = min(self.total, done)
        self._counted += counted
        self._draw(force=counted == 0 and self.interactive)

    def seconds_per_frame(self) -> float | None:
        return (time.monotonic() - self._start) / self._counted if self._counted else None

    def line(self) -> str:
        fraction = self.done / self.total
        filled = int(round(fraction * BAR_WIDTH))
        text = f"{self.label} {self.done}/{self.total} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"
        rate = self.seconds_per_frame()
        if rate is not None:
            text += f" {rate:.2f} s/{self.unit}, {format_duration(rate * (self.total - self.done))} left"
        return text

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.interactive:
            if force or now - self._last_draw >= REDRAW_SECONDS or self.done == self.total:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self._last_draw, self._open = now, True
            return
        fraction, logged_at = self._last_logged
        if force or self.done / self.total - fraction >= self.log_step or now - logged_at >= LOG_SECONDS:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_logged = (self.done / self.total, now)

    def message(self, text: str) -> None:
        """Print ``text`` on its own line without breaking the bar."""
        if not self.enabled:
            return
        if self._open:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self._open:
            self._draw(force=True)

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
