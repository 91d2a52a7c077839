"""Typed errors. Every message says what went wrong and what the user can do about it."""


class AnonymixerError(Exception):
    """Base class of every error anonymixer raises on purpose."""


class KeyFileError(AnonymixerError):
    """A key file is missing, unreadable, empty or malformed."""


class CheckpointError(AnonymixerError):
    """A checkpoint or model bundle cannot be read or does not match the expected layout."""


class ModelSpecError(AnonymixerError):
    """A model SPEC (bundle path or ``random:NAME[@seed]``) cannot be resolved."""


class InputImageError(AnonymixerError):
    """An input image cannot be used (unreadable, wrong size, wrong channel count)."""


class BackendError(AnonymixerError):
    """A backend is unavailable or failed to run."""
