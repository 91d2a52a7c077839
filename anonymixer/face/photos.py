"""Real photos that ship inside installed packages, found without importing those packages.

No photo is committed to this repository; tests and the demo use these public-domain images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

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


# The face of the astronaut photo (512x512), as (top, bottom, left, right): a fixed, hand-checked box
# that gives a roughly aligned crop without a detector.
ASTRONAUT_FACE_BOX = (20, 200, 140, 320)


def astronaut_face_crop(size: int = 256) -> np.ndarray:
    """``(size, size, 3) uint8 BGR``: the face of the packaged astronaut photo, cropped and resized."""
    import cv2

    from .io import read_image

    top, bottom, left, right = ASTRONAUT_FACE_BOX
    image = read_image(packaged_photo("astronaut"))
    return cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)


def main(argv: list[str] | None = None) -> int:
    """``python -m anonymixer.face.photos --aligned-sample DIR``: write a sample aligned crop."""
    import argparse

    from .io import write_image

    parser = argparse.ArgumentParser(prog="python -m anonymixer.face.photos", description=main.__doc__)
    parser.add_argument("--aligned-sample", required=True, metavar="DIR",
                        help="folder to write astronaut.png (256x256 face crop) into")
    args = parser.parse_args(argv)
    target = Path(args.aligned_sample) / "astronaut.png"
    write_image(target, astronaut_face_crop())
    print(f"wrote {target} (256x256 crop of scikit-image's astronaut photo, public domain)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
