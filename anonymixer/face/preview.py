"""On-screen preview: the protected frame with an FPS and per-stage latency overlay.

The overlay is drawn on a copy (outputs never carry it). ``cv2.imshow`` is used only where a
display exists: the headless OpenCV wheel has no GUI, and a server has no screen; then the preview
is switched off with one note and the run goes on.
"""

from __future__ import annotations

import os
import re
import sys

import cv2
import numpy as np

from .pipeline import FrameResult

WINDOW = "anonymixer (q or Esc to stop)"


def draw_overlay(frame: np.ndarray, result: FrameResult, fps: float) -> np.ndarray:
    """A copy of ``frame`` ``(H, W, 3) uint8 BGR`` with FPS, per-stage ms and face boxes drawn."""
    canvas = frame.copy()
    for face in result.faces:
        x, y, w, h = (int(round(float(v))) for v in face.box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), 1)
    lines = [f"{fps:5.1f} FPS  faces {len(result.faces)}  masked {result.masked}"]
    lines += [f"{stage:9s} {ms:7.1f} ms" for stage, ms in result.timings_ms.items()]
    for row, text in enumerate(lines):
        origin = (8, 20 + 18 * row)
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def display_problem() -> str | None:
    """Why no preview window can be shown here, or ``None`` if one can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if gui and gui.group(1) == "NONE":
        return "this OpenCV build has no GUI (opencv-python-headless); install opencv-python for --preview"
    return None


class Preview:
    """Shows frames in a window while ``active``; ``show`` returns False when the user asks to stop."""

    def __init__(self, enabled: bool) -> None:
        self.note: str | None = None
        self.active = enabled
        if enabled:
            problem = display_problem()
            if problem:
                self.active = False
                self.note = f"--preview is off: {problem}"

    def show(self, frame: np.ndarray, result: FrameResult, fps: float) -> bool:
        if not self.active:
            return True
        try:
            cv2.imshow(WINDOW, draw_overlay(frame, result, fps))
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            self.active = False
            self.note = f"--preview is off: {str(exc).strip().splitlines()[-1]}"
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.active:
            try:
                cv2.destroyWindow(WINDOW)
            except cv2.error:
                pass
