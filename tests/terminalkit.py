"""Shared helpers for the access-terminal tests: packaged photos, a probe of the same person, and
template makers built once per session (models load once; every test gets its own store)."""

import cv2
import numpy as np
import pytest

import anonymixer.terminal.terminal as terminal_module
from anonymixer.terminal.templates import TemplateMaker

_MAKERS: dict = {}


def cached_maker(key, *, kind, fr, model, detector=None, salt=None, rank=None):
    """``TemplateMaker`` built once per (key, settings) for the whole session."""
    signature = (key.fingerprint, kind, fr, model, detector, salt, rank)
    if signature not in _MAKERS:
        _MAKERS[signature] = TemplateMaker(key, kind=kind, fr=fr, model=model, detector=detector, salt=salt, rank=rank)
    maker = _MAKERS[signature]
    return _Shared(maker)


class _Shared:
    """A cached maker whose ``close`` does nothing (the next test reuses it)."""

    def __init__(self, maker):
        self._maker = maker

    def __getattr__(self, name):
        return getattr(self._maker, name)

    def close(self):
        pass


@pytest.fixture
def shared_models(monkeypatch):
    """Terminal.open reuses the session's template makers instead of loading the models again."""
    monkeypatch.setattr(terminal_module, "TemplateMaker", cached_maker)


def same_person(image):
    """Another 'photo' of the person in ``image`` (BGR): mirrored, a little darker, slightly smaller."""
    h, w = image.shape[:2]
    out = cv2.resize(image[:, ::-1], (int(w * 0.9), int(h * 0.9)), interpolation=cv2.INTER_AREA)
    return np.clip(out.astype(np.float32) * 0.9, 0, 255).astype(np.uint8)


def blank(side=256):
    """A photo with no face."""
    return np.full((side, side, 3), 128, np.uint8)
