"""SAM 2 in plain PyTorch: configurations, components, the tracking step, checkpoint loading.

Pure torch: no I/O beyond checkpoint files, no napari or Qt.
"""

from .build import build_sam2
from .checkpoint import CheckpointError
from .config import ALL_MODEL_NAMES, MODEL_NAMES, STARTER_NAME, SAM2Config, get_config
from .hub import CheckpointUnavailable, fetch_checkpoint
from .memory_tokens import PointerMemory, SpatialMemory
from .sam2 import FrameFeatures, HeadOutput, SAM2Model, TrackStepOutput

__all__ = [
    "ALL_MODEL_NAMES",
    "STARTER_NAME",
    "MODEL_NAMES",
    "CheckpointError",
    "CheckpointUnavailable",
    "FrameFeatures",
    "HeadOutput",
    "PointerMemory",
    "SAM2Config",
    "SAM2Model",
    "SpatialMemory",
    "TrackStepOutput",
    "build_sam2",
    "fetch_checkpoint",
    "get_config",
]
