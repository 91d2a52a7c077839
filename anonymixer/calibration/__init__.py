"""Calibration data for INT8 export: aligned faces from a folder, or faces the model draws itself.

``folder_faces`` reads a folder of aligned face images; ``synthetic_faces`` samples
``z -> mapping -> generator`` with the FP32 graphs of an export folder; ``stage_feeds`` runs the
FP32 pipeline on either to give every graph its own inputs (the encoder sees faces, the generator
sees the ``w_prot`` codes those faces lead to under random keys).
"""

from .data import CalibrationSet, folder_faces, stage_feeds, synthetic_faces
from .graphs import GraphSet

__all__ = ["CalibrationSet", "GraphSet", "folder_faces", "stage_feeds", "synthetic_faces"]
