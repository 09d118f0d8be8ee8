"""Exceptions of the I/O layer: every message names the problem and the path it concerns."""

from __future__ import annotations

import errno
from pathlib import Path


class StackError(ValueError):
    """A source cannot be read as a stack of 2D frames (not a stack, corrupt, unsupported axes, bad selection)."""


class LabelStoreError(ValueError):
    """A label store is missing, malformed, or does not fit the image or the data given to it."""


class UnfinishedStoreError(LabelStoreError):
    """A label store whose creation was cut short (a kill between its first files): it holds no labels and no
    records yet, and ``LabelStore.for_source`` completes it."""


class StoreWriteError(LabelStoreError):
    """Writing to disk failed (read-only location, full disk, ...). What was stored before the call is intact.

    ``path`` is the file or store that could not be written; ``__cause__`` is the original ``OSError``.
    """

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


_OS_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit was reached",
    errno.EROFS: "the location is read-only",
    errno.EACCES: "permission denied (read-only location?)",
    errno.EPERM: "permission denied (read-only location?)",
}


def describe_os_error(exc: OSError) -> str:
    """A short human reason for an ``OSError``, e.g. ``"the disk is full"``."""
    reason = _OS_REASONS.get(exc.errno or -1)
    detail = exc.strerror or str(exc)
    return f"{reason} ({detail})" if reason else detail


def write_error(action: str, path: Path | str, exc: OSError) -> StoreWriteError:
    """A :class:`StoreWriteError` for ``action`` on ``path`` that failed with ``exc``; raise it ``from exc``."""
    return StoreWriteError(f"cannot {action} {path}: {describe_os_error(exc)}; what was stored before is intact", path)
