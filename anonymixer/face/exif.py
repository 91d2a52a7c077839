"""EXIF orientation applied to pixels (the tag itself is read by Pillow, ``face.imageheader``).

A phone stores a photo's pixels as the sensor saw them and says in EXIF tag 274 (Orientation)
how to turn them upright. A decoder that ignores the tag (OpenCV's ``IMREAD_UNCHANGED`` does)
hands over a sideways or mirrored picture, in which a face detector finds nothing: the photo
would then leave unprotected.

Orientation values (EXIF 2.3, section 4.6.4), as the transform that makes the stored pixels upright:
1 as stored, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose (mirror along the
main diagonal), 6 rotate 90 clockwise, 7 transverse (mirror along the other diagonal), 8 rotate
90 counter-clockwise.
"""

from __future__ import annotations

import cv2
import numpy as np


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` ``(H, W[, C])`` turned upright for an EXIF ``orientation`` (1-8); a new array
    for 2-8 (``(W, H[, C])`` for 5-8), the same array for 1."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image
