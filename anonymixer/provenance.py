"""Which software produced a report: Python, platform, anonymixer and installed package versions."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

from . import __version__


def versions(distributions: Iterable[str]) -> dict[str, str]:
    """Python, platform, anonymixer, and the version of each installed distribution named (absent ones left out)."""
    found = {"python": platform.python_version(), "platform": platform.platform(), "anonymixer": __version__}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
