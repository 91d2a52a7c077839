"""anonymixer: an edge inference runtime for cancelable face generation (FaceAnonyMixer)."""

__version__ = "0.1.0"
