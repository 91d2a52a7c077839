"""Faces in and out of frames: image I/O, (later) detection, alignment and paste-back."""
