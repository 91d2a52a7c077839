"""The access terminal: cancelable templates enrolled, matched and revoked on a SQLite store.

``templates`` (photo -> template, two kinds), ``store`` (SQLite), ``thresholds`` (measured
defaults, calibration) and ``terminal`` (the facade below). Nothing outside the CLI and the
service imports this package.
"""

from ..errors import FaceCountError, StoreMismatch, TerminalError, UnknownSubject
from .templates import KINDS, read_image_bytes
from .terminal import AuditRow, Decision, Enrolment, Subject, Terminal
from .thresholds import Calibration

__all__ = ["AuditRow", "Calibration", "Decision", "Enrolment", "FaceCountError", "KINDS", "StoreMismatch", "Subject",
           "Terminal", "TerminalError", "UnknownSubject", "read_image_bytes"]
