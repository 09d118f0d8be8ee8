"""The ``napari-sam2`` command: segment stacks without a display (scripts, batch jobs, cluster nodes).

``main`` parses the command line and imports nothing heavy; ``segment`` runs a job (prompts → propagation →
label store, resumable after any interruption); ``info`` and ``fetch`` report on and download checkpoints.
The prompt file format lives in :mod:`napari_sam2.io.prompt_file`, shared with the napari widget.
"""
