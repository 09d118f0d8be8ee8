"""The napari plugin: the SAM 2 dock widget, its layers, background workers and the objects list.

The only part of napari-sam2 that imports napari and Qt. Importing it does not import torch: the model and the
engine are imported in background workers when first needed.
"""
