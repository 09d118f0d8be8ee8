"""napari-sam2: SAM 2 for microscopy stacks in napari.

Layers, each importing only the ones below it: ``model`` (pure torch) → ``engine`` (session, memory bank,
caches) → ``io`` (frame sources, label store, exports; no torch) → ``cli`` and ``_qt`` (napari / Qt).
Importing this package imports none of torch, napari or Qt.
"""

__version__ = "0.1.0"
