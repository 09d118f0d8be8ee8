"""Stacks in, labels out: lazy microscopy I/O and a crash-safe zarr label store. No torch, napari or Qt here.

- :func:`open_stack` → :class:`FrameSource`: lazy 2D frames of a TIFF / OME-TIFF, zarr / OME-Zarr, folder of TIFFs,
  or numpy / dask / zarr array, along one axis; ``intensity_range()`` from a sample of frames.
- :class:`LabelStore`: uint32 labels in a zarr v3 group, one chunk per frame, written atomically frame by frame,
  with the session's objects, prompts and provenance; :class:`FrameView` addresses frames along any axis.
  Merge rule ("user edits win"): see :mod:`napari_sam2.io.merge`.
- Exports: :func:`export_ome_zarr`, :func:`export_tiff`, :func:`export_ctc` (with parents), :func:`export_geff`.
- Lineage: :func:`lineage` (track spans and parents), :func:`tracks_layer_data` (napari Tracks layer).
- napari contributions: :mod:`napari_sam2.io.napari_readers`, :mod:`napari_sam2.io.napari_writers`.
"""

from napari_sam2.io.atomic_store import AtomicLocalStore
from napari_sam2.io.errors import LabelStoreError, StackError, StoreWriteError, UnfinishedStoreError
from napari_sam2.io.exports import export_ctc, export_geff, export_tiff
from napari_sam2.io.frame_view import FrameView
from napari_sam2.io.intensity import normalize, robust_range
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.lineage import TrackSpan, lineage, tracks_from_labels, tracks_layer_data
from napari_sam2.io.merge import MANUAL, PROMPT, PROPAGATION
from napari_sam2.io.ome_zarr_export import export_ome_zarr
from napari_sam2.io.session_records import OBJECT_STATUSES, ObjectInfo, Prompt
from napari_sam2.io.sources import FrameSource, open_stack

__all__ = [
    "MANUAL",
    "OBJECT_STATUSES",
    "PROMPT",
    "PROPAGATION",
    "AtomicLocalStore",
    "FrameSource",
    "FrameView",
    "LabelStore",
    "LabelStoreError",
    "ObjectInfo",
    "Prompt",
    "StackError",
    "StoreWriteError",
    "UnfinishedStoreError",
    "TrackSpan",
    "export_ctc",
    "export_geff",
    "export_ome_zarr",
    "export_tiff",
    "lineage",
    "normalize",
    "open_stack",
    "robust_range",
    "tracks_from_labels",
    "tracks_layer_data",
]
