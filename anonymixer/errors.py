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


class DetectorError(AnonymixerError):
    """No face detector model can be found or opened."""


class InputVideoError(AnonymixerError):
    """A video file, camera or stream cannot be opened, read or written."""


class ExportError(AnonymixerError):
    """An ONNX export, conversion or calibration cannot be done, or an export folder is unusable."""


class EngineError(BackendError):
    """A TensorRT engine is missing, corrupt, or was built for another GPU or TensorRT version."""


class CudaError(BackendError):
    """A CUDA call returned an error (no driver, no device, out of memory, a failed kernel...)."""


class EvaluationError(AnonymixerError):
    """A biometric evaluation cannot run: no usable faces, empty score lists, a bad data folder."""


class RecognizerError(AnonymixerError):
    """A face recognition model for evaluation is missing, not installed or cannot be loaded."""


class BenchError(AnonymixerError):
    """A benchmark cannot run as asked: bad settings, no usable backend, a failed export."""


class OutputError(AnonymixerError):
    """An output cannot be written: folder not writable, disk full, a writer failed, or it would
    overwrite an input or another output of the same run."""


class ResolutionError(AnonymixerError, ValueError):
    """An output resolution that is not a power of two within the model's range."""


class IntegrityError(AnonymixerError):
    """A file of an export folder, engine folder or bundle is unlisted, lacks its digest, or does not match it."""


class ExportIntegrityError(ExportError, IntegrityError):
    """A file of an export folder is unlisted in ``manifest.json``, lacks its sha256, or does not match it."""


class EngineIntegrityError(EngineError, IntegrityError):
    """An engine or sidecar is unlisted in the engine folder's ``manifest.json`` or does not match it."""


class BundleIntegrityError(CheckpointError, IntegrityError):
    """A bundle's tensors or config do not match the digest written with them."""


class SignatureError(IntegrityError):
    """Under a trusted key: a model folder, bundle or detector file is unsigned, signed by another key,
    or altered since it was signed; or signatures cannot be made or checked here."""


class TerminalError(AnonymixerError):
    """The access terminal cannot do what was asked (``anonymixer.terminal``)."""


class UnknownSubject(TerminalError):
    """No subject of that name is enrolled."""


class FaceCountError(TerminalError):
    """An enrolment photo shows no face or several faces (or a probe shows none)."""


class StoreMismatch(TerminalError):
    """A template store was made under another key, model, recogniser or template kind."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` so that both are handled the same way."""

    signal_number = 15


def printable(text: str) -> str:
    """``text`` as one report line: control characters (newlines, escapes...) written as ``\\n``,
    ``\\x1b``..., so that a file name cannot forge or hide report lines."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)
