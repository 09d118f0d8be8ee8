"""The tracking engine: a session over a stack, its memory bank, caches and post-processing.

torch + numpy; no napari, no Qt.
"""

from .frames import FrameError, FramePreparer
from .prompts import PromptError
from .result import FrameResult
from .session import Session

__all__ = ["FrameError", "FramePreparer", "FrameResult", "PromptError", "Session"]
