"""``python -m napari_sam2.cli.batch_child ARGS…``: ``napari-sam2 ARGS…`` as a ``batch`` worker's child process.

The one difference: on Linux the process asks the kernel for SIGTERM when the worker that started it dies (a
worker killed by the OOM killer or by hand), so that it saves its progress, stops and frees the label store's lock
for the worker that takes the stack over, instead of running on as an orphan.
"""

from __future__ import annotations

import os
import signal
import sys

PARENT_ENV = "NAPARI_SAM2_BATCH_PARENT"
PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """SIGTERM to this process when its parent (pid in ``NAPARI_SAM2_BATCH_PARENT``) dies; Linux only."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit() and os.getppid() != int(parent):  # it died before prctl: stop now
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    stop_with_parent()
    from napari_sam2.cli.main import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
