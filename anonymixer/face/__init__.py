"""Faces in and out of frames: detection, FFHQ alignment, paste-back, photo/video/camera I/O.

The data path of one frame, in the order of the files: ``detect`` -> ``align`` -> (``runtime``
Protector) -> ``paste``, composed by ``pipeline.FaceProtector``; ``sources`` and ``app`` feed it
frames from photos, videos, cameras and streams; ``io`` reads and writes images.
"""

import os

import cv2

# Decoders print their own warnings for broken files and devices; we report those inputs
# ourselves, once, in one line. FFmpeg reads its level when the first video is opened.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:  # older OpenCV builds without the logging module
    pass
