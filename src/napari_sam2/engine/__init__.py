"""The tracking engine: a session over a stack, its memory bank, caches and post-processing; automatic masklets
(``find_objects``), tracking of everything with re-detection (``auto_track``) and the division rule (``divisions``).

torch + numpy; no napari, no Qt.
"""

from .auto_track import AutoStep, AutoTrackSettings, AutoTrackState, track_all
from .divisions import Division, DivisionRule
from .find_objects import FindSettings
from .frames import FrameError, FramePreparer
from .prompts import PromptError
from .result import FrameResult
from .session import Session

__all__ = [
    "AutoStep",
    "AutoTrackSettings",
    "AutoTrackState",
    "Division",
    "DivisionRule",
    "FindSettings",
    "FrameError",
    "FramePreparer",
    "FrameResult",
    "PromptError",
    "Session",
    "track_all",
]
