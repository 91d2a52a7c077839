"""Real photos that ship inside installed packages, found without importing those packages.

No photo is committed to this repository; tests and the demo use these public-domain images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import AnonymixerError

# name -> (package, path inside the package, how to get it)
PACKAGED_PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png", "pip install scikit-image"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "pip install matplotlib"),
}


def packaged_photo(name: str) -> Path:
    """Path of a photo shipped inside an installed package (``astronaut``, ``grace_hopper``)."""
    if name not in PACKAGED_PHOTOS:
        raise AnonymixerError(f"unknown packaged photo {name!r}: choose one of {', '.join(PACKAGED_PHOTOS)}")
    package, inner, install = PACKAGED_PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise AnonymixerError(f"photo {name!r} ships with the {package} package, which is not installed: {install}")
    path = Path(spec.origin).parent / inner
    if not path.is_file():
        raise AnonymixerError(f"photo {name!r} not found at {path}; reinstall {package}")
    return path
