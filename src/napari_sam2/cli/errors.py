"""What the command reports to its user: problems with the input (one line, no traceback) and interruptions."""

from __future__ import annotations

import sys

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class CliError(Exception):
    """A problem with the command's input or environment; printed as ``napari-sam2: error: <message>``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    """A bad option or option value (exit status 2, as argparse's own errors)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class Interrupted(Exception):
    """The run stopped on a signal after saving its progress; ``code`` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def out_of_device_memory(error: BaseException) -> bool:
    """Whether ``error`` is the engine's ``DeviceMemoryError`` (a frame did not fit on the GPU even one object at a
    time without the session's caches). Looked up, not imported: the engine (torch) is loaded only once a run
    computes."""
    device = sys.modules.get("napari_sam2.engine.device")
    return device is not None and isinstance(error, device.DeviceMemoryError)
