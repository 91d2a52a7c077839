"""Backends behind one small protocol, and the Protector that chains them."""

from .base import STAGE_IO, Backend, ModelInfo, StageRunner
from .protector import Protector, open_backend

__all__ = ["STAGE_IO", "Backend", "ModelInfo", "StageRunner", "Protector", "open_backend"]
