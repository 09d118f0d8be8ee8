"""tifffile logs what it finds wrong in a file (``invalid page offset …``) to stderr, before our own one-line error
says the same in words: :func:`quiet_tifffile` keeps those lines out of the terminal while napari-sam2 reads a
file, and hands them over for the message. Other users of tifffile in the process (napari, other plugins) still
see them: only the calling thread's records are taken, and only inside the ``with`` block.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOGGER = "tifffile"
_local = threading.local()
_install_lock = threading.Lock()
_OBJECT_PREFIX = re.compile(r"^<[^>]*>\s*")  # tifffile starts its messages with the repr of the object at fault


class _TakeRecords(logging.Filter):
    """Drops the records of threads inside :func:`quiet_tifffile`, keeping their messages there."""

    def filter(self, record: logging.LogRecord) -> bool:
        taken = getattr(_local, "messages", None)
        if taken is None:
            return True
        taken.append(_OBJECT_PREFIX.sub("", record.getMessage()))
        return False


_FILTER = _TakeRecords()


@contextmanager
def quiet_tifffile() -> Iterator[list[str]]:
    """Within the block, tifffile's log records of this thread are not printed; yields the list of their messages
    (without tifffile's ``<TiffFile 'x.tif'>`` prefix), filled as they come."""
    logger = logging.getLogger(_LOGGER)
    with _install_lock:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    outer = getattr(_local, "messages", None)
    messages: list[str] = []
    _local.messages = messages
    try:
        yield messages
    finally:
        _local.messages = outer
        if outer is not None:
            outer.extend(messages)
